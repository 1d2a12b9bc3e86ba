"""Announcements, delivered exactly once.

A use case writes OutboxMessage rows in the same transaction as the change they announce
(`bot.usecases.announcing.queue`). A worker (`deliver_due`) claims due rows, posts them and records the result.
Exactly once per (rollout, milestone, channel):

- the dedupe key is unique, so replaying a change never queues a second row;
- a row is claimed by a lease (`locked_until`), taken with `FOR UPDATE SKIP LOCKED` on
  Postgres (SQLite serialises writers), so two replicas never hold the same row;
- a worker marks the attempt (under its lease) before it posts, and posts only if that mark
  still found its lease: a worker whose lease ran out never posts over the one that took over;
- each post carries the dedupe key in Slack message metadata. A row whose lease ran out
  after an attempt (the process died between posting and recording) is first looked up in the
  channel's recent history (or the status thread), and only posted if it is not there.

A rollout's announcements wait (up to THREAD_WAIT) until its status message exists: the thread
ones go into its thread, and a start whose status message cannot be posted (and is undone)
never told the stakeholder channels about it.

In order, per (rollout, channel): a rollout's announcements reach each channel in the order
they were queued (row id), so "advanced to 25%" never lands above "started". A row is only
claimed when every earlier pending row of its rollout and channel is claimed with it (they are
then posted in id order), and is only posted while no earlier one of them is still pending.
An earlier row that waits (for the status message, a backoff, another worker's lease) holds
back the later ones; one that failed for good does not. Before this, a "started" row waiting
a second for its status message let a "step" row queued meanwhile go first.

Failures: 429, 5xx and lost connections wait (honouring Retry-After) and try again; permanent errors
(`channel_not_found`, `is_archived`, a private channel the bot is not in...) stop at once and
are reported to the owner once, in the status thread.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.delivery import outbox_queries, status_link
from bot.delivery.outbox_queries import WAITING_BEFORE, Pending, Recipient
from bot.delivery.status_link import TRANSPORT_ERRORS
from bot.errors import NotInChannel
from bot.observe import logs, telemetry
from bot.services import Services
from bot.slackweb.client import PERMANENT_ERRORS, error_code, post_joining
from bot.usecases.announcing import WAIT_FOR_STATUS, Announcement, queue
from bot.usecases.view_reads import MessageRef
from messages.announcements import STATUS_LINK
from messages.blocks import Message
from storage.enums import EventKind, OutboxState
from storage.models import Event

log = logging.getLogger(__name__)

METADATA_EVENT = "rollout_announcement"
LEASE = timedelta(seconds=60)
MAX_BACKOFF = timedelta(minutes=15)
GIVE_UP = timedelta(hours=24)
# A rollout's announcements wait this long for its status message to exist (checking again
# every THREAD_RECHECK); after that they are posted in the channel itself rather than not at all.
THREAD_WAIT = WAIT_FOR_STATUS
THREAD_RECHECK = timedelta(seconds=1)
BATCH = 50
# Looking for a message an unrecorded attempt may have posted: pages of history (newest first)
# or of the status thread, and how far before the row was queued a message may still be it
# (Slack's clock and ours need not agree to the second).
LOOKUP_PAGES = 5
LOOKUP_PAGE_SIZE = 200
CLOCK_SKEW = timedelta(minutes=5)


class _LookupFailed(Exception):
    """Slack could not say (rate limit, 5xx, timeout) whether the message is already there."""

    def __init__(self, code: str, retry_after: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after


def _claim(svc: Services, now: datetime, limit: int) -> list[tuple[int, datetime]]:
    """Leases the first due rows, up to `limit`, of one rollout and channel (see
    `outbox_queries.claim`). Returns (id, lease) pairs in id order; the lease is the claim token."""
    return outbox_queries.claim(svc, now, now + LEASE, limit)


def deliver_due(svc: Services, *, limit: int = BATCH) -> int:
    """Delivers what is due, up to `limit` rows, queue by queue. Returns how many were sent.

    Every row claimed is sent, fails for good, or waits (a later attempt, another worker's
    lease), so it is not claimed again in this call and the loop ends."""
    sent = claimed = 0
    while claimed < limit:
        batch = _claim(svc, svc.clock(), limit - claimed)
        if not batch:
            break
        claimed += len(batch)
        for row_id, lease in batch:
            with logs.scope(job="outbox", outbox_id=row_id):
                try:
                    if _deliver(svc, row_id, lease):
                        sent += 1
                except Exception:
                    # One bad row must not stop the others; it is retried after its lease.
                    log.exception("outbox row %s failed unexpectedly", row_id)
    return sent


def _load(svc: Services, row_id: int) -> tuple[Pending, Recipient | None, MessageRef | None] | None:
    with svc.db.connected() as conn:
        return outbox_queries.delivery(conn, row_id)


def _deliver(svc: Services, row_id: int, lease: datetime) -> bool:
    loaded = _load(svc, row_id)
    if loaded is None:
        return False
    row, rollout, status = loaded
    status_ts = status.ts if status else None
    if rollout is not None:
        logs.bind_rollout(rollout)
    now = svc.clock()
    in_thread = row.in_status_thread and rollout is not None and row.channel_id == rollout.channel_id
    thread_ts = status_ts if in_thread else None
    if rollout is not None and status_ts is None and now - row.created_at < THREAD_WAIT:
        _finish(svc, row_id, lease, next_attempt_at=now + THREAD_RECHECK)
        return False
    if row.attempts > 0:
        try:
            found = _find_posted(svc, row, thread_ts)
        except _LookupFailed as exc:
            _retry_later(svc, row, lease, row.attempts, exc.code, exc.retry_after)
            return False
        if found is not None:
            telemetry.OUTBOX_DELIVERED.inc()
            return _finish(svc, row_id, lease, state=OutboxState.SENT, sent_ts=found, sent_at=now)
    if not _mark_attempt(svc, row, lease):
        # Another worker holds an earlier row of this rollout and channel (post after it), or
        # this worker's lease ran out.
        waits = _waits_its_turn(svc, row)
        if not _finish(svc, row_id, lease, next_attempt_at=now + THREAD_RECHECK if waits else now):
            log.info("outbox row %s: lease lost before posting; another worker has it", row_id)
        return False
    kwargs: dict[str, Any] = {
        "text": row.payload.get("text", ""),
        "blocks": row.payload.get("blocks") or None,
        "metadata": {"event_type": METADATA_EVENT, "event_payload": {"key": row.dedupe_key}},
        "unfurl_links": False,
    }
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
        if row.payload.get("reply_broadcast"):
            kwargs["reply_broadcast"] = True  # one alert, in the thread and in the channel
    if rollout is not None and STATUS_LINK in kwargs["text"] + json.dumps(kwargs["blocks"] or []):
        link = _status_link(svc, rollout, status)
        kwargs["text"] = kwargs["text"].replace(STATUS_LINK, link)
        kwargs["blocks"] = json.loads(json.dumps(kwargs["blocks"]).replace(STATUS_LINK, link))
    try:
        ts = post_joining(svc.delivery_client, channel=row.channel_id, **kwargs)
    except NotInChannel:
        _fail(svc, row, lease, rollout, "not_in_channel")
        return False
    except SlackApiError as exc:
        code = error_code(exc)
        if code in PERMANENT_ERRORS:
            _fail(svc, row, lease, rollout, code)
        else:
            _retry_later(svc, row, lease, row.attempts + 1, code, _retry_after(exc))
        return False
    except TRANSPORT_ERRORS as exc:
        # The post may have reached Slack: the next attempt looks for it before posting again.
        _retry_later(svc, row, lease, row.attempts + 1, type(exc).__name__, None)
        return False
    _finish(svc, row_id, lease, state=OutboxState.SENT, sent_ts=ts, sent_at=svc.clock())
    telemetry.OUTBOX_DELIVERED.inc()
    return True


def _status_link(svc: Services, rollout: Recipient, status: MessageRef | None) -> str:
    """What stands for STATUS_LINK: the status message's permalink (its thread), kept on its row
    once Slack has said it (`status_link.message_link`, asked with the outbox's client); the
    channel when Slack will not say, so a stakeholder post always leads somewhere."""
    link = status_link.message_link(svc, rollout.id, status, client=svc.delivery_client)
    return f"<{link}|status thread>" if link else f"<#{rollout.channel_id}>"


def _waits_its_turn(svc: Services, row: Pending) -> bool:
    """Is an earlier row of the same rollout and channel still pending? (Claims keep the order
    within one worker; this keeps it across workers whose claims crossed.)"""
    if row.rollout_id is None:
        return False
    params = {"rollout_id": row.rollout_id, "channel_id": row.channel_id, "row_id": row.id}
    with svc.db.connected() as conn:
        return conn.execute(WAITING_BEFORE, params).scalar() is not None


def _mark_attempt(svc: Services, row: Pending, lease: datetime) -> bool:
    """Counts the attempt about to be made, only while the lease holds and no earlier row of
    the same rollout and channel is pending (claims keep the order within one worker; this
    keeps it across workers whose claims crossed). Returns whether it did: only then may the
    row be posted."""
    params = {
        "row_id": row.id,
        "lease": lease,
        "q_rollout_id": row.rollout_id,
        "q_channel_id": row.channel_id,
        "next_attempts": row.attempts + 1,
    }
    with svc.db.writing() as conn:
        return outbox_queries.mark_attempt(conn, params)


def _finish(svc: Services, row_id: int, lease: datetime, *, keep_lease: bool = False, **values: Any) -> bool:
    """Records an outcome, only while our lease holds: a slower replica cannot overwrite.
    Returns whether it did (False: the lease ran out and the row is someone else's now)."""
    if not keep_lease:
        values["locked_until"] = None
    with svc.db.writing() as conn:
        return outbox_queries.finish(conn, row_id, lease, values)


def _retry_after(exc: SlackApiError) -> str | None:
    headers = exc.response.headers if exc.response is not None else None
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            return str(value)
    return None


def _retry_later(
    svc: Services, row: Pending, lease: datetime, attempts: int, code: str, retry_after: str | None
) -> None:
    """Backoff doubles with each attempt (2, 4, 8 s ... at most MAX_BACKOFF), and is never
    shorter than Slack's Retry-After. After GIVE_UP of failures the row fails and the owner
    is told, rather than it retrying for ever."""
    if svc.clock() - row.created_at > GIVE_UP:
        rollout = _rollout_of(svc, row)
        _fail(
            svc, row, lease, rollout, f"{code}, still failing after {int(GIVE_UP.total_seconds() // 3600)} h"
        )
        return
    telemetry.OUTBOX_RETRIED.labels(telemetry.error_label(code)).inc()
    wait = timedelta(seconds=min(2 ** max(attempts, 1), MAX_BACKOFF.total_seconds()))
    if retry_after and retry_after.strip().isdigit():
        wait = max(wait, timedelta(seconds=int(retry_after.strip())))
    log.warning("outbox row %s: %s, next try in %ss", row.id, code, int(wait.total_seconds()))
    _finish(svc, row.id, lease, next_attempt_at=svc.clock() + wait, last_error=code)


def _rollout_of(svc: Services, row: Pending) -> Recipient | None:
    if row.rollout_id is None:
        return None
    with svc.db.connected() as conn:
        return outbox_queries.recipient(conn, row.rollout_id)


def _fail(svc: Services, row: Pending, lease: datetime, rollout: Recipient | None, code: str) -> None:
    """A permanent error: stop retrying, and tell the owner once."""
    telemetry.OUTBOX_FAILED.labels(telemetry.error_label(code)).inc()
    log.warning("outbox row %s to %s failed for good: %s", row.id, row.channel_id, code)
    now = svc.clock()
    with svc.db.transaction() as session:
        outbox_queries.finish(
            session.connection(),
            row.id,
            lease,
            {"state": OutboxState.FAILED, "last_error": code, "locked_until": None},
        )
        if rollout is None or row.channel_id == rollout.channel_id:
            return  # nowhere better to report it than the log
        session.add(
            Event(
                rollout_id=rollout.id,
                kind=EventKind.DELIVERY_FAILED,
                actor_id=None,
                at=now,
                data={"channel": row.channel_id, "error": code},
            )
        )
        text = (
            f"<@{rollout.owner_id}> I could not post an update to <#{row.channel_id}> "
            f"({code.replace('_', ' ')}). Invite me there or change the stakeholders."
        )
        queue(session, rollout, Announcement(f"delivery_failed:{row.channel_id}", Message(text=text)), now)


def _find_posted(svc: Services, row: Pending, thread_ts: str | None) -> str | None:
    """After an attempt whose outcome was never recorded, is the message already there?

    Returns its ts, or None if it is not (or Slack will not let us look: then posting is all
    we can do). Raises _LookupFailed when Slack could not answer now.

    No `oldest` is sent: the clocks of Slack and of this host need not agree, so the newest
    history is read page by page until it is older than the row (with CLOCK_SKEW to spare)."""
    since = (row.created_at - CLOCK_SKEW).timestamp()
    cursor: str | None = None
    for _ in range(LOOKUP_PAGES):
        try:
            if thread_ts:
                page = svc.delivery_client.conversations_replies(
                    channel=row.channel_id,
                    ts=thread_ts,
                    include_all_metadata=True,
                    limit=LOOKUP_PAGE_SIZE,
                    cursor=cursor,
                )
            else:
                page = svc.delivery_client.conversations_history(
                    channel=row.channel_id, include_all_metadata=True, limit=LOOKUP_PAGE_SIZE, cursor=cursor
                )
        except SlackApiError as exc:
            code = error_code(exc)
            if code == "ratelimited" or (exc.response is not None and exc.response.status_code >= 500):
                raise _LookupFailed(code, _retry_after(exc)) from exc
            log.info("cannot check history of %s: %s", row.channel_id, code)
            return None
        except TRANSPORT_ERRORS as exc:
            raise _LookupFailed(type(exc).__name__) from exc
        messages = page.get("messages") or []
        for message in messages:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key") == row.dedupe_key:
                return str(message.get("ts"))
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return None
        if not thread_ts and messages and _ts(messages[-1]) < since:
            return None  # history is newest first: older pages predate the row
    return None


def _ts(message: dict[str, Any]) -> float:
    try:
        return float(message.get("ts") or 0)
    except ValueError:
        return 0.0
