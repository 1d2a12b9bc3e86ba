"""Announcements, queued: what each milestone says, written as outbox rows in the transaction of the
change they announce, so the state change and its announcement are committed together or not
at all. Delivery (posting, retries, exactly once) is `bot.delivery.outbox`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Insert, Table
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.usecases.views import rollout_view
from messages.announcements import milestone, milestone_thread
from messages.blocks import Message
from messages.views import RolloutView
from storage.dbapi_statements import Fixed
from storage.enums import OutboxState
from storage.models import OutboxMessage, Rollout
from storage.rows import insert_new, plain

QUEUED = "outbox_queued"


# A new rollout's announcements wait for its status message (the thread ones go into its
# thread; a start that cannot post it is undone and tells nobody): queued due this long after,
# when they go anyway (in the channel itself), and made due at once by the commit that records
# the message (`bot.delivery.status_board.post`). Not due before: a drain would claim each one
# again every few seconds until then, which in a burst of starts (status messages posted a
# minute or more after their commits) cost more CPU than the starts themselves.
WAIT_FOR_STATUS = timedelta(minutes=5)


def announce(
    session: Session,
    rollout: Rollout,
    kind: str,
    key: str,
    now: datetime,
    *,
    in_thread: bool = True,
    before_status: bool = False,
    **extra: Any,
) -> None:
    """Queues the milestone `kind` under the dedupe key `key` (unique per rollout).
    `in_thread=False` tells only the stakeholders: the thread has heard of the event already
    (a fired trigger's alert says it paused), and one event is one message per channel.
    `before_status`: the rollout's status message is not posted yet (a start): the rows wait
    for it (WAIT_FOR_STATUS)."""
    thread, line = _messages(kind, rollout_view(rollout), extra)
    due_at = now + WAIT_FOR_STATUS if before_status else None
    queue(session, rollout, Announcement(key, thread if in_thread else None, line), now, due_at=due_at)


def _messages(kind: str, view: RolloutView, extra: dict[str, Any]) -> tuple[Message, Message | None]:
    """The milestone's thread message, and its stakeholder line only if a stakeholder channel
    other than the rollout's own will get it (`_rows`): a start without stakeholders rendered
    the line for nobody (half of its milestone: 103 -> 54 us)."""
    if any(c != view.channel_id for c in view.stakeholder_channels):
        return milestone(kind, view, **extra)
    return milestone_thread(kind, view, **extra), None


def step_key(rollout: Rollout) -> str:
    """Reaching a step happens once per rollout, so its position is its key."""
    return f"step:{rollout.phase_index}:{rollout.step_index}"


@dataclass(frozen=True)
class Announcement:
    """One milestone: details for the status thread, one line for each stakeholder channel,
    and, for alarms, a message at the top of the rollout's own channel. `broadcast` posts the
    thread message with `reply_broadcast` (in the thread and shown in the channel too: one
    message, not a second copy at the top)."""

    milestone: str
    thread: Message | None
    stakeholders: Message | None = None
    channel: Message | None = None
    broadcast: bool = False


def _payload(message: Message, *, broadcast: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": message.text, "blocks": message.blocks}
    if broadcast:
        payload["reply_broadcast"] = True
    return payload


def dedupe_key(rollout_id: int, milestone: str, channel_id: str) -> str:
    return f"{rollout_id}:{milestone}:{channel_id}"


class Addressed(Protocol):
    """Where a rollout's announcements go: a `Rollout` row or its `RolloutView` alike."""

    @property
    def id(self) -> int: ...
    @property
    def channel_id(self) -> str: ...
    @property
    def stakeholder_channels(self) -> Sequence[str]: ...


# Built once per dialect and reused (the compiled form is cached): a row whose dedupe key is
# already there (a replay, or another transaction that queued it first) is skipped by the
# database itself, where a SELECT first and an INSERT in a savepoint took four statements.
_INSERTS: dict[str, Insert] = {}


def _insert_new(dialect: str) -> Insert:
    stmt = _INSERTS.get(dialect)
    if stmt is None:
        build = postgres_insert if dialect == "postgresql" else sqlite_insert
        table = cast("Table", OutboxMessage.__table__)
        stmt = build(table).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(table.c.id)
        _INSERTS[dialect] = stmt
    return stmt


# `queue`'s insert, run on the DBAPI connection of the caller's transaction: the ORM's execute
# path cost several times the statement, once per row a reminder or a change queues.
_QUEUE_COLUMNS = (
    "rollout_id",
    "dedupe_key",
    "channel_id",
    "in_status_thread",
    "payload",
    "state",
    "attempts",
    "next_attempt_at",
    "created_at",
)
_QUEUE = {dialect: Fixed(_insert_new(dialect), _QUEUE_COLUMNS) for dialect in ("postgresql", "sqlite")}


def _rows(rollout: Addressed, announcement: Announcement) -> list[tuple[str, str, bool, Message]]:
    """(milestone of the key, channel, in the status thread, message) of each row to queue."""
    milestone = announcement.milestone
    rows: list[tuple[str, str, bool, Message]] = []
    if announcement.thread is not None:
        rows.append((milestone, rollout.channel_id, True, announcement.thread))
    if announcement.channel is not None:
        rows.append((f"{milestone}:top", rollout.channel_id, False, announcement.channel))
    if announcement.stakeholders is not None:
        rows += [
            (milestone, c, False, announcement.stakeholders)
            for c in rollout.stakeholder_channels
            if c != rollout.channel_id
        ]
    return rows


def _values(
    rollout: Addressed,
    announcement: Announcement,
    row: tuple[str, str, bool, Message],
    now: datetime,
    due_at: datetime | None = None,
) -> dict[str, Any]:
    key_milestone, channel_id, in_thread, message = row
    return {
        "rollout_id": rollout.id,
        "dedupe_key": dedupe_key(rollout.id, key_milestone, channel_id),
        "channel_id": channel_id,
        "in_status_thread": in_thread,
        "payload": _payload(message, broadcast=announcement.broadcast and in_thread),
        "state": OutboxState.PENDING,
        "attempts": 0,
        "next_attempt_at": due_at or now,
        "created_at": now,
    }


def queue(
    session: Session,
    rollout: Addressed,
    announcement: Announcement,
    now: datetime,
    *,
    due_at: datetime | None = None,
) -> int:
    """Queues the announcement in the caller's transaction (and marks the session so the
    outbox is woken after commit). Returns how many rows were new:
    a milestone already queued (a replayed change) adds nothing. `due_at`: not before (now)."""
    stmt = _QUEUE[session.get_bind().dialect.name]
    session.flush()  # rows the caller added first keep their place (the outbox posts in id order)
    added = 0
    for row in _rows(rollout, announcement):
        # Still exactly once: ON CONFLICT DO NOTHING on the unique key; on Postgres a row
        # another transaction is inserting is waited for, then skipped.
        added += stmt.first(session, _values(rollout, announcement, row, now, due_at)) is not None
    if added:
        session.info[QUEUED] = True
    return added


def announce_new(
    session: Session,
    rollout: Rollout,
    kind: str,
    key: str,
    now: datetime,
    *,
    view: RolloutView | None = None,
    **extra: Any,
) -> None:
    """`announce` for a rollout created in this very transaction: nothing can be queued under its
    keys yet, so its rows are written in one statement, without looking for earlier ones. The
    outbox is not woken: every row of a rollout waits for its status message (WAIT_FOR_STATUS),
    and the commit that records that message makes them due and wakes it
    (`bot.delivery.status_board.post`)."""
    # Without the checklist items: a milestone tells who, what, the step it is at and the next
    # one (`messages.announcements`), never a checklist, and the items are most of a plan's
    # rows (the announcement is the one the whole view gives: tests/usecases/test_start_rows.py).
    # A caller holding the whole view already (`view`) passes it instead.
    thread, line = _messages(kind, rollout_view(rollout, items=False) if view is None else view, extra)
    announcement = Announcement(key, thread, line)
    due_at = now + WAIT_FOR_STATUS
    rows = [
        plain(OutboxMessage, _values(rollout, announcement, row, now, due_at))
        for row in _rows(rollout, announcement)
    ]
    insert_new(session, rows, ids=False)
