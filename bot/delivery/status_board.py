"""The status message: one per rollout, posted once and then edited in place.

Edits are coalesced per message, in the database so replicas agree. Whoever asks for an edit
(a tick, an advance, the watch) first tries to take the message's `refresh` row of `due_job`
(`bot.domain.schedule.Kind.REFRESH`), a lease whose `due_at` is its token:

- nobody holds it: the asker holds it now, renders the newest committed state and sends one
  `chat.update`; then it lets go only if nothing changed meanwhile (the revision is the one it
  showed, and nobody asked again), else it renders once more;
- somebody holds it: the asker marks the row (`again` in its data: "once more, please", a
  count) and is done; the holder sees the mark when it lets go and renders the newest state
  once more, for all of them. While Slack refuses, each asker still gets a try of its own.

So a burst of ticks on one rollout is two or three edits, not one per tick, and edits of one
message never overlap, so the last edit Slack sees is the newest revision. A holder that dies
leaves its lease to run out and the due-work tick takes the row (`jobs._refresh`). An edit
Slack refuses turns the row into a retry, backing off (`schedule.refresh_retry`); an asker
finding a retry waiting takes it at once, as a person's click deserves an answer.

A click's tick takes the row in its own write transaction, as its last statement
(`refreshing`): the tick and the ask commit together, and the first round shows the state that
transaction committed. Everything else asks in a transaction of its own (`refresh`). The row's
statements run on bare connections (`Database.writing`): they are bookkeeping, no Event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, cast

from slack_sdk.errors import SlackApiError
from sqlalchemy import (
    BindParameter,
    Connection,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.delivery.status_link import permalink as permalink  # where callers have always found it
from bot.domain.schedule import Kind, refresh_retry
from bot.services import Services
from bot.slackweb.client import error_code, post_joining
from bot.usecases import view_reads
from bot.usecases.announcing import QUEUED
from messages.blocks import status_message
from messages.views import RolloutView
from storage import queries
from storage.dbapi_statements import Fixed
from storage.enums import OutboxState
from storage.models import DueJob, OutboxMessage, Rollout, SlackMessage

if TYPE_CHECKING:
    from sqlalchemy import Table

log = logging.getLogger(__name__)

# Longer than any edit takes (the client's retries included); a holder that died frees the
# message after this, for the due-work tick to finish its edit.
LEASE = timedelta(seconds=60)
# Rounds one holder renders before it hands the rest to the next asker (or the due-work tick):
# a storm of ticks on one rollout costs a bounded stretch of one work thread.
MAX_ROUNDS = 8
ERROR = "error"  # in the row's data: Slack refused the last edit, a retry is waiting
AGAIN = "again"  # in the row's data: how many asked while it was held (render once more)

# Every statement of an edit is built once, here, on the tables: a click's refresh is as
# common as the click, and building statements (and an ORM session around them) cost more than
# running them.
_due = cast("Table", DueJob.__table__)
_messages = cast("Table", SlackMessage.__table__)
_rollouts = cast("Table", Rollout.__table__)
_ROLLOUT_ID: BindParameter[int] = bindparam("of_rollout")
_LEASE = bindparam("lease", type_=_due.c.due_at.type)
_NOW = bindparam("now", type_=_due.c.due_at.type)
_MINE = and_(_due.c.rollout_id == _ROLLOUT_ID, _due.c.kind == Kind.REFRESH.value)
_TOKEN = bindparam("token", type_=_due.c.due_at.type)
_HELD_WITH = and_(_MINE, _due.c.due_at == _TOKEN)
# From the rollout's row: a rollout that is gone (or never was) gets no row.
_NEW_ROW = select(
    _rollouts.c.id,
    literal(Kind.REFRESH.value, _due.c.kind.type),
    _LEASE,
    literal({}, _due.c.data.type),
).where(_rollouts.c.id == _ROLLOUT_ID)
_TAKE = {
    dialect: make(_due)
    .from_select(["rollout_id", "kind", "due_at", "data"], _NEW_ROW)
    .on_conflict_do_nothing(index_elements=["rollout_id", "kind"])
    .returning(_due.c.id)
    for dialect, make in (("postgresql", postgres_insert), ("sqlite", sqlite_insert))
}
# FOR UPDATE is Postgres's row lock; SQLite's compiler leaves it out (its write transactions
# are serialised already: storage.db).
_HELD = select(_due.c.due_at, _due.c.data).where(_MINE).with_for_update()
_SET_ROW = (
    update(_due).where(_HELD_WITH).values(due_at=_LEASE, data=bindparam("new_data", type_=_due.c.data.type))
)
# Slack refused: the row waits for its retry, also when its lease ran out meanwhile.
_RETRY = (
    update(_due)
    .where(_MINE, or_(_due.c.due_at == _TOKEN, _due.c.due_at <= _NOW))
    .values(due_at=_LEASE, data=bindparam("new_data", type_=_due.c.data.type))
)
_HELD_DATA = select(_due.c.data).where(_HELD_WITH).with_for_update()
_HAND_ON = update(_due).where(_HELD_WITH).values(due_at=_LEASE)
_DROP_ROW = delete(_due).where(_HELD_WITH)
_SHOWN: BindParameter[int] = bindparam("shown")
# Letting go in the usual case, in one statement: the row goes when it is still the holder's,
# nobody asked again, and the message shows the newest revision. When it stays (RETURNING no
# row), the holder reads why (`_ROW_AND_REVISION`). On Postgres the DELETE waits for an asker's
# mark on the row and evaluates the WHERE again on the marked row, as the locked read did.
_LET_GO = (
    delete(_due)
    .where(
        _HELD_WITH,
        func.coalesce(_due.c.data[AGAIN].as_integer(), 0) == 0,
        select(_rollouts.c.revision).where(_rollouts.c.id == _ROLLOUT_ID).scalar_subquery() == _SHOWN,
    )
    .returning(_due.c.id)
)
# The holder's row (if still its own) and the newest revision, in one round trip.
_ROW_AND_REVISION = (
    select(
        _due.c.data,
        select(_rollouts.c.revision).where(_rollouts.c.id == _ROLLOUT_ID).scalar_subquery(),
    )
    .where(_HELD_WITH)
    .with_for_update(of=_due)
)
_POSTED = insert(_messages)
_outbox = cast("Table", OutboxMessage.__table__)
_WAKE_THREAD = (
    update(_outbox)
    .where(
        _outbox.c.rollout_id == _ROLLOUT_ID,
        _outbox.c.state == OutboxState.PENDING,
        _outbox.c.attempts == 0,
        _outbox.c.next_attempt_at > _NOW,
    )
    .values(next_attempt_at=_NOW)
)
_REVISION = select(_rollouts.c.revision).where(_rollouts.c.id == _ROLLOUT_ID)
# The first post's three statements run on the DBAPI connection, compiled once
# (`storage.dbapi_statements.Fixed`): SQLAlchemy's execution path around them cost more CPU
# than SQLite took to run them.
_POSTED_RUN = Fixed(_POSTED, ("rollout_id", "purpose", "channel_id", "ts", "rendered_revision"))
_WAKE_THREAD_RUN = Fixed(_WAKE_THREAD)
_REVISION_RUN = Fixed(_REVISION)
_RECORD_SHOWN = (
    update(_messages)
    .where(
        _messages.c.rollout_id == _ROLLOUT_ID,
        _messages.c.purpose == queries.STATUS_PURPOSE,
        _messages.c.rendered_revision < _SHOWN,
    )
    .values(rendered_revision=_SHOWN)
)


def post(svc: Services, rollout_id: int, shown: RolloutView | None = None) -> str:
    """Posts the status message and remembers its ts. Raises NotInChannel when the bot cannot
    get into the channel.

    `shown`: the view its creating transaction committed (`start.opened`), for a rollout that
    has no status message yet; it is not read back then. A change committed since is caught up
    below as one that lands while the message is on its way."""
    if shown is not None:
        rollout, existing = shown, None
    else:
        with svc.db.connected() as conn:
            found = view_reads.load_with_message(session=conn, rollout_id=rollout_id)
        assert found is not None
        rollout, existing = found
    if existing is not None:
        refresh(svc, rollout_id)
        return existing.ts
    message = status_message(rollout, now=svc.clock())
    ts = post_joining(svc.client, channel=rollout.channel_id, **message.as_kwargs())
    now = svc.clock()
    with svc.db.transaction() as session:
        # Announcements waiting for this message (its thread) can go now: wake the outbox.
        session.info[QUEUED] = True
        conn = session.connection()
        row = {"rollout_id": rollout_id, "purpose": queries.STATUS_PURPOSE, "channel_id": rollout.channel_id}
        _POSTED_RUN.run(conn, {**row, "ts": ts, "rendered_revision": rollout.revision})
        # A drain that found them before this message existed set them to look again a little
        # later (bot/delivery/outbox.py, THREAD_RECHECK): they need not wait for that.
        _WAKE_THREAD_RUN.run(conn, {"of_rollout": rollout_id, "now": now})
    # A tick that landed while the message was on its way found nothing to edit: catch up.
    # (Read after the commit: a tick committed later sees the message and edits it itself.)
    with svc.db.connected() as conn:
        (latest,) = _REVISION_RUN.first(conn, {"of_rollout": rollout_id}) or (None,)
    if latest is not None and latest != rollout.revision:
        refresh(svc, rollout_id)
    return ts


def refresh(svc: Services, rollout_id: int) -> str | None:
    """Has the status message show the committed state. Returns None, or Slack's error when
    the edit failed after the client's retries: the change itself is committed either way, and
    the `refresh` row tries again (backing off) until the message shows it. None also when
    another edit of the message is under way: that one shows this change too."""
    return _refresh_from(svc, rollout_id, _ask(svc, rollout_id))


class Refreshing:
    """`refreshing`'s handle: called with the session of a write transaction, as its last
    statement, it asks for the edit in that transaction (`_ask`)."""

    def __init__(self, svc: Services, rollout_id: int) -> None:
        self._svc, self._rollout_id = svc, rollout_id
        self.asked: tuple[datetime, _Target | _Unread | None] | _Unread | None = _Unread.UNREAD
        self.error: str | None = None

    def __call__(self, session: Session) -> None:
        self.asked = _ask_on(session, self._svc.clock(), self._rollout_id, in_change=True)


@contextmanager
def refreshing(svc: Services, rollout_id: int) -> Iterator[Refreshing]:
    """`refresh` after the block, also when it raises. A change that asks for the edit in its
    own write transaction (`Refreshing`) spares the edit a transaction; if the block raises after
    the ask, its token is looked for (the ask may have been committed). Slack's error, if the
    edit failed, is the handle's `error`."""
    handle = Refreshing(svc, rollout_id)
    try:
        yield handle
    except BaseException:
        ours = handle.asked[0] if isinstance(handle.asked, tuple) else None
        _refresh_from(svc, rollout_id, _ask(svc, rollout_id, ours=ours))
        raise
    asked = _ask(svc, rollout_id) if handle.asked is _Unread.UNREAD else handle.asked
    handle.error = _refresh_from(svc, rollout_id, asked)


def _refresh_from(
    svc: Services, rollout_id: int, held: tuple[datetime, _Target | _Unread | None] | None
) -> str | None:
    if held is None:
        return None
    token, target = held
    # A person is waiting on this one: it starts from the first back-off step, not where the
    # retries left off.
    return hold(svc, rollout_id, token, first=target)


class _Unread(Enum):
    UNREAD = "unread"


@dataclass(frozen=True)
class _Target:
    """What one round edits: the message, and the view of the committed state it is to show."""

    channel: str
    ts: str
    view: RolloutView


def hold(
    svc: Services,
    rollout_id: int,
    token: datetime,
    attempt: int = 0,
    *,
    first: _Target | _Unread | None = _Unread.UNREAD,
) -> str | None:
    """Edits the message while holding its `refresh` row (`due_at == token`) until it shows the
    newest state, then lets go. Returns None, or Slack's error (the row then waits to retry).
    `first`: what the first round shows, when it was read as the row was taken."""
    for _ in range(MAX_ROUNDS):
        target = _read_target(svc, rollout_id) if first is _Unread.UNREAD else first
        first = _Unread.UNREAD  # later rounds read the newest state themselves
        try:
            shown = _edit_once(svc, target)
        except SlackApiError as exc:
            error = error_code(exc)
            log.warning("status message of rollout %s not updated: %s", rollout_id, error)
            retry_now = _back_off(svc, rollout_id, token, attempt, error)
            if retry_now is None:
                return error
            token = retry_now
            continue
        next_token = _let_go(svc, rollout_id, token, shown)
        if next_token is None:
            return None
        token = next_token
    # Still changing: the next asker, or the due-work tick, carries on from here.
    with svc.db.writing() as conn:
        conn.execute(_HAND_ON, {"of_rollout": rollout_id, "token": token, "lease": svc.clock()})
    return None


def _ask(
    svc: Services, rollout_id: int, ours: datetime | None = None
) -> tuple[datetime, _Target | _Unread | None] | None:
    """`_ask_on` in a write transaction of its own: the message's row is bookkeeping, no
    Event, so a bare connection does (`Database.writing`)."""
    with svc.db.writing() as conn:
        return _ask_on(conn, svc.clock(), rollout_id, ours)


def _ask_on(
    session: Session | Connection,
    now: datetime,
    rollout_id: int,
    ours: datetime | None = None,
    *,
    in_change: bool = False,
) -> tuple[datetime, _Target | _Unread | None] | None:
    """Takes the message's `refresh` row (returns its token, and what the first round is to
    show, read in the same transaction: the state committed once the row is ours, so any change
    after it asks the holder again), or asks its holder for one more round (returns None). One
    statement to take the row when nobody holds it. `ours`: a token this asker may already hold
    (an ask whose transaction may have been committed): the row is still its own then.
    `in_change`: the transaction is a change's (a tick's): a view that cannot be built there must
    not undo the change, so the first round reads it after the commit instead."""
    lease = now + LEASE
    target = _target_after_change if in_change else _target
    conn = session if isinstance(session, Connection) else session.connection()
    take = _TAKE[conn.dialect.name]
    for _ in range(2):  # a second look when its holder let go between the two statements
        if conn.execute(take, {"of_rollout": rollout_id, "lease": lease}).scalar() is not None:
            return lease, target(session, rollout_id)
        row = conn.execute(_HELD, {"of_rollout": rollout_id}).first()
        if row is None:
            continue
        due_at, data = row[0], dict(row[1] or {})
        mine = {"of_rollout": rollout_id, "token": due_at}
        if due_at == ours:
            return due_at, target(session, rollout_id)
        if due_at <= now or ERROR in data:  # lease over or handed on, or a retry waiting: free
            attempt = int(data.get("attempt", 0))
            conn.execute(_SET_ROW, {**mine, "lease": lease, "new_data": {"attempt": attempt}})
            return lease, target(session, rollout_id)
        # Held: ask its holder for one more round; the row stays its holder's.
        again = {**data, AGAIN: int(data.get(AGAIN, 0)) + 1}
        conn.execute(_SET_ROW, {**mine, "lease": due_at, "new_data": again})
        return None
    return None  # no rollout of that id: nothing to show


def _target(session: Session | Connection, rollout_id: int) -> _Target | None:
    """The message and the view it is to show; None when there is nothing to edit (no rollout,
    or no message yet: `post` catches up when it has one)."""
    view, ref = view_reads.load_with_message(session=session, rollout_id=rollout_id) or (None, None)
    return None if view is None or ref is None else _Target(ref.channel_id, ref.ts, view)


def _target_after_change(session: Session | Connection, rollout_id: int) -> _Target | _Unread | None:
    """`_target`, or, when the view cannot be built in the change's transaction (a bug, a row the
    view does not expect), UNREAD: the edit is decoration on the change, and the holder's first
    round reads the view again after the commit. A database error still fails the transaction:
    it is the change's too."""
    try:
        return _target(session, rollout_id)
    except SQLAlchemyError:
        raise
    except Exception:
        log.exception("status view of rollout %s not read with its change; read after it", rollout_id)
        return _Unread.UNREAD


def _read_target(svc: Services, rollout_id: int) -> _Target | None:
    with svc.db.connected() as conn:
        return _target(conn, rollout_id)


def _edit_once(svc: Services, target: _Target | None) -> int | None:
    """Renders the view into the message; the revision shown, or None when there was nothing
    to edit."""
    if target is None:
        return None
    message = status_message(target.view, now=svc.clock())
    svc.client.chat_update(channel=target.channel, ts=target.ts, **message.as_kwargs())
    return target.view.revision


def _let_go(svc: Services, rollout_id: int, token: datetime, shown: int | None) -> datetime | None:
    """Records what the message shows and lets go of the row; or, when the message is already
    behind or somebody asked again meanwhile, keeps it (returns the new token). One write
    transaction: two statements in the usual case (`_LET_GO`), four when the row stays."""
    lease = svc.clock() + LEASE
    mine = {"of_rollout": rollout_id, "token": token}
    with svc.db.writing() as conn:
        if shown is not None:
            conn.execute(_RECORD_SHOWN, {"of_rollout": rollout_id, "shown": shown})
            if conn.execute(_LET_GO, {**mine, "shown": shown}).first() is not None:
                return None
        row = conn.execute(_ROW_AND_REVISION, mine).first()
        if row is None:  # the lease ran out and the due-work tick took the row: its turn
            return None
        data, latest = dict(row[0] or {}), row[1]
        again = bool(data.pop(AGAIN, False))
        if shown is not None and (again or (latest is not None and latest != shown)):
            conn.execute(_SET_ROW, {**mine, "lease": lease, "new_data": data})
            return lease
        conn.execute(_DROP_ROW, mine)
        return None


def _back_off(svc: Services, rollout_id: int, token: datetime, attempt: int, error: str) -> datetime | None:
    """Slack refused: the row waits, 2 s, 4 s, 8 s … (asking again while it waits takes it).
    While askers are counted in the row, one more try at once instead, one per asker, as each
    click had its own try before edits were coalesced: returns the new token then."""
    now = svc.clock()
    mine = {"of_rollout": rollout_id, "token": token}
    with svc.db.writing() as conn:
        row = conn.execute(_HELD_DATA, mine).first()
        asked = int(dict(row[0] or {}).get(AGAIN, 0)) if row is not None else 0
        if asked:
            data: dict[str, int] = {"attempt": attempt} | ({AGAIN: asked - 1} if asked > 1 else {})
            conn.execute(_SET_ROW, {**mine, "lease": now + LEASE, "new_data": data})
            return now + LEASE
        retry = {"lease": now + refresh_retry(attempt), "new_data": {"attempt": attempt + 1, ERROR: error}}
        conn.execute(_RETRY, {**mine, "now": now, **retry})
        return None
