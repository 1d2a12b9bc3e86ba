"""Work due at a time: the stakeholder digest, reminders to the owner, the rollback-trigger watch.

What is due lives in `due_job`, one row per (rollout, kind), so a restart loses nothing and
replicas share the work:

- `reschedule` runs in the transaction of every change to a rollout and sets its rows from its
  new state. A row whose inputs did not change (same step, same digest settings...) is left as
  it is, so a re-check planned for later or a claim in progress survives an unrelated change.
- `run_due` claims due rows in one short transaction (`FOR UPDATE SKIP LOCKED` on Postgres;
  SQLite serialises writers) by moving their `due_at` a lease ahead: the new `due_at` is the
  claim's token. A crashed run is retried once the lease runs out; another replica never
  takes a leased row. Each job then runs on its own, outside that transaction, and its row
  gets its next time (or goes) only while the token still holds, so a change meanwhile wins;
  a job that writes (a reminder, the digest, the ready check) does that in its own
  transaction, so what it queued and when it runs again commit together.
- Each job loads what it decides from: the rollout's row (`queries.rollout_row`) for its
  columns, the whole plan only where it renders a message or plans from the current step.
- Every message goes through the outbox under a dedupe key, so a job replayed after a crash
  never posts twice.
- A tick draws nothing: a digest commits its text to the outbox and, in the same transaction,
  a `chart` row for its progress chart, which `bot.delivery.charts.run_due` claims, draws and
  uploads afterwards (matplotlib takes a tenth of a second or more per chart). `run_due` runs
  every kind but that one; `run` is the claim-and-run loop both use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from bot.delivery import autopilot, status_board, triggers
from bot.domain import flagging as flag_rules
from bot.domain import rollouts
from bot.domain.schedule import (
    FLAG_RETRY,
    STALE_BUSINESS_DAYS,
    Due,
    Kind,
    iso_utc,
    planned,
    planned_digest,
    planned_end,
)
from bot.domain.soak import soak_status
from bot.observe import logs, telemetry
from bot.services import Services
from bot.usecases import announcing, flagging, measure, views
from messages import digest as texts
from messages.blocks import Message
from storage import queries
from storage.enums import RolloutStatus, SnapshotKind
from storage.models import DueJob, Rollout

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
READY_RECHECK = timedelta(hours=1)
READY_FIRST = timedelta(minutes=10)  # an overdue reminder waits this long for a ready check due with it


@dataclass(frozen=True)
class Claimed:
    id: int
    rollout_id: int
    kind: str
    data: dict[str, Any]
    last_run_at: datetime | None
    now: datetime  # the tick's time: what was due then is what this run covers
    lease: datetime  # the claim's token: the row's due_at while this run holds it
    # Set when the job wrote its row's next time in its own transaction (`_in_transaction`):
    # then there is no separate `_finish`.
    settled: list[bool] = field(default_factory=list, compare=False)


Job = Callable[[Services, Claimed], Due | None]


# --- the tick --------------------------------------------------------------------------------


def _claim(svc: Services, now: datetime, limit: int, kinds: Collection[str]) -> list[Claimed]:
    lease = now + LEASE
    with svc.db.transaction() as session:
        rows = queries.due_jobs(session=session, now=now, limit=limit, kinds=kinds)
        for r in rows:
            telemetry.DUE_JOB_LAG.labels(r.kind).observe(max(0.0, (now - r.due_at).total_seconds()))
        claimed = [Claimed(r.id, r.rollout_id, r.kind, dict(r.data), r.last_run_at, now, lease) for r in rows]
        if claimed:
            session.execute(update(DueJob).where(DueJob.id.in_([c.id for c in claimed])).values(due_at=lease))
    return claimed


def _finish(svc: Services, job: Claimed, nxt: Due | None) -> None:
    with svc.db.transaction() as session:
        _settle(session, job, nxt)


def _settle(session: Session, job: Claimed, nxt: Due | None) -> None:
    """The row's next time (or its end), only while the claim's token still holds."""
    session.execute(update(DueJob).where(DueJob.id == job.id).values(last_run_at=job.now))
    mine = (DueJob.id == job.id, DueJob.due_at == job.lease)
    if nxt is None:
        session.execute(delete(DueJob).where(*mine))
    else:
        session.execute(update(DueJob).where(*mine).values(due_at=nxt.at, data=nxt.data))


def _in_transaction(svc: Services, job: Claimed, decide: Callable[[Session], Due | None]) -> Due | None:
    """Runs `decide` and records the row's next time in one transaction: what the job queued
    and when it runs again commit together (and one commit, not two)."""
    with svc.db.transaction() as session:
        nxt = decide(session)
        _settle(session, job, nxt)
    job.settled.append(True)
    return nxt


def mark(svc: Services, job: Claimed, data: dict[str, Any]) -> bool:
    """Writes `data` into the claimed row while the claim holds (its token is unchanged);
    False when it does not, and the row is someone else's now."""
    with svc.db.transaction() as session:
        done = session.execute(
            update(DueJob).where(DueJob.id == job.id, DueJob.due_at == job.lease).values(data=data)
        )
    return bool(cast("CursorResult[Any]", done).rowcount)


def run_due(svc: Services, *, limit: int = 100) -> int:
    """Runs the work due now, but the charts (`bot.delivery.charts.run_due`). Returns how many
    jobs ran to the end; one that fails is logged and retried after its lease, and the others
    carry on."""
    return run(svc, JOBS, limit=limit)


def run(svc: Services, table: Mapping[str, Job], *, limit: int) -> int:
    """Claims the due rows of the kinds in `table` and runs each with its job."""
    ran = 0
    for job in _claim(svc, svc.clock(), limit, tuple(table)):
        with logs.scope(job=job.kind, rollout_id=job.rollout_id):
            try:
                nxt = table[job.kind](svc, job)
                if not job.settled:
                    _finish(svc, job, nxt)
                ran += 1
                telemetry.DUE_JOBS.labels(job.kind, "ok").inc()
            except Exception:
                telemetry.DUE_JOBS.labels(job.kind, "failed").inc()
                log.exception(
                    "%s job of rollout %s failed; it is retried after its lease", job.kind, job.rollout_id
                )
    return ran


# --- the jobs --------------------------------------------------------------------------------
# A job gets its claimed row and returns the row's next time, or None when it is done.


# What each job loads: the rollout's own row (`queries.rollout_row`: status, step, metrics,
# flag columns) for what it decides from; the whole plan (`get_rollout`, `lock_rollout`) only
# where it renders a message about the rollout or plans rows that need the current step.


def _load(svc: Services, rollout_id: int) -> Rollout | None:
    """The rollout's row alone, without its plan: its relationships must not be read."""
    with svc.db.reading() as session:
        rollout = queries.rollout_row(session=session, rollout_id=rollout_id)
    if rollout is not None:
        logs.bind_rollout(rollout)
    return rollout


def _replan(svc: Services, rollout_id: int, kind: str, now: datetime) -> Due | None:
    """The row `kind` as the rollout's state plans it now (which needs its current step)."""
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    return None if rollout is None else planned(rollout, now).get(kind)


def _at_step(job: Claimed, rollout: Rollout) -> bool:
    return (job.data.get("phase"), job.data.get("step")) == (rollout.phase_index, rollout.step_index)


def _queued(session: Session, rollout: Rollout, milestone: str) -> bool:
    key = announcing.dedupe_key(rollout.id, milestone, rollout.channel_id)
    return queries.outbox_key_exists(session=session, dedupe_key=key)


def _queue(
    session: Session,
    rollout: Rollout,
    milestone: str,
    now: datetime,
    thread: Message,
    line: Message | None = None,
    channel: Message | None = None,
) -> None:
    announcing.queue(session, rollout, announcing.Announcement(milestone, thread, line, channel), now)


def _digest(svc: Services, job: Claimed) -> Due | None:
    """The digest of what happened since the last run; none at all (thread, stakeholders,
    chart) when nothing did: a daily "nothing happened" teaches people to skip digests.
    Its progress chart is queued, not drawn: it follows the text into the status thread."""
    scheduled = datetime.fromisoformat(job.data["at"])  # the slot, not the (maybe late) run
    with svc.db.reading() as session:
        rollout = queries.rollout_row(session=session, rollout_id=job.rollout_id)
        if rollout is None or not rollout.status.is_open:
            return None
        news = texts.has_news(
            views.event_views(
                queries.events_between(
                    session=session, rollout_id=rollout.id, after=job.last_run_at, until=job.now
                )
            )
        )
    if not news:
        return planned_digest(rollout, job.now)
    return _in_transaction(svc, job, lambda session: _digest_in(session, job, scheduled))


def _digest_in(session: Session, job: Claimed, scheduled: datetime) -> Due | None:
    rollout = queries.get_rollout(session=session, rollout_id=job.rollout_id)
    if rollout is None or not rollout.status.is_open:
        return None
    tz, step = rollout.timezone, rollout.current_step
    local_date = scheduled.astimezone(ZoneInfo(tz)).date().isoformat()
    if _queued(session, rollout, f"digest:{local_date}"):
        return planned_digest(rollout, job.now)  # a replay: text and chart are queued
    mine: dict[str, Any] = {"session": session, "rollout_id": rollout.id}
    soak = soak_status(
        rollout.step_started_at, step.min_business_days, job.now, tz=tz, country=rollout.country
    )
    thread, line = texts.digest(
        views.rollout_view(rollout),
        scheduled=scheduled,
        events=views.event_views(queries.events_between(**mine, after=job.last_run_at, until=job.now)),
        check=views.snapshot_view(
            queries.latest_check(**mine, phase_index=rollout.phase_index, step_index=rollout.step_index)
        ),
        soak=soak.describe(rollouts.display_title(step), tz),
        unchecked=rollouts.unchecked_exit_criteria(rollout),
    )
    _queue(session, rollout, f"digest:{local_date}", job.now, thread, line)
    _queue_chart(session, rollout.id, local_date, job.now)
    return planned_digest(rollout, job.now)


def _queue_chart(session: Session, rollout_id: int, local_date: str, now: datetime) -> None:
    """The `chart` row of this digest, due now. One row per rollout: a chart still owed by an
    earlier digest gives way to this one (it would show the same progress, a day older)."""
    data = {"digest": local_date, "queued": iso_utc(now)}
    mine = (DueJob.rollout_id == rollout_id, DueJob.kind == Kind.CHART)
    moved = session.execute(update(DueJob).where(*mine).values(due_at=now, data=data))
    if not cast("CursorResult[Any]", moved).rowcount:
        session.add(DueJob(rollout_id=rollout_id, kind=Kind.CHART, due_at=now, data=data))


def _ready(svc: Services, job: Claimed) -> Due | None:
    """The gate exactly as Advance runs it (bot.advancing), so "green" here is green there."""
    rollout = _load(svc, job.rollout_id)
    if rollout is None or rollout.status is not RolloutStatus.ACTIVE:
        return None  # a resume plans it again
    if not _at_step(job, rollout):
        return _replan(svc, rollout.id, Kind.READY, job.now)
    milestone = f"ready:{rollout.phase_index}:{rollout.step_index}"
    with svc.db.reading() as session:
        if _queued(session, rollout, milestone):
            return None
    now = svc.clock()
    current, controls, _ = measure.read_metrics(svc, rollout, now)

    def decide(session: Session) -> Due | None:
        locked = queries.lock_rollout(session=session, rollout_id=job.rollout_id)
        if locked is None or locked.status is not RolloutStatus.ACTIVE or not _at_step(job, locked):
            return None
        gate = measure.evaluate(locked, current, measure.baselines_for(session, locked, controls), now)
        measure.store_snapshot(session, locked, SnapshotKind.CHECK, current, gate, now)
        if not gate.passed:
            return Due(now + READY_RECHECK, job.data)
        message = texts.reminder("ready", views.rollout_view(locked), advance=True)
        _queue(session, locked, milestone, now, message)
        return None

    return _in_transaction(svc, job, decide)


def _overdue(svc: Services, job: Claimed) -> Due | None:
    return _in_transaction(svc, job, lambda session: _overdue_in(session, job))


def _overdue_in(session: Session, job: Claimed) -> Due | None:
    rollout = queries.get_rollout(session=session, rollout_id=job.rollout_id)
    if rollout is None or rollout.status is not RolloutStatus.ACTIVE:
        return None
    end = planned_end(rollout)
    if not _at_step(job, rollout) or job.now < end:
        return planned(rollout, job.now).get(Kind.OVERDUE)
    # One reminder per step: the ready reminder already asks for this advance, and when its
    # check is due in this same run, it goes first (the two never arrive together).
    if _queued(session, rollout, f"ready:{rollout.phase_index}:{rollout.step_index}"):
        return None
    if _ready_runs_now(session, rollout, job):
        return Due(job.now + READY_FIRST, job.data)
    planned_at = texts.when(end, rollout.timezone)
    message = texts.reminder("overdue", views.rollout_view(rollout), planned_end=planned_at)
    _queue(session, rollout, f"overdue:{rollout.phase_index}:{rollout.step_index}", job.now, message)
    return None


def _ready_runs_now(session: Session, rollout: Rollout, job: Claimed) -> bool:
    """Is the ready check of this rollout due now, or claimed in the same run as `job`?"""
    due = session.scalar(
        select(DueJob.due_at).where(DueJob.rollout_id == rollout.id, DueJob.kind == Kind.READY)
    )
    if due is None:
        return False
    due = due if due.tzinfo else due.replace(tzinfo=job.now.tzinfo)
    return due <= job.now or due == job.lease


def _stale(svc: Services, job: Claimed) -> Due | None:
    return _in_transaction(svc, job, lambda session: _stale_in(session, job))


def _stale_in(session: Session, job: Claimed) -> Due | None:
    rollout = queries.get_rollout(session=session, rollout_id=job.rollout_id)
    if rollout is None or not rollout.status.is_open:
        return None
    if job.data.get("updated_at") != iso_utc(rollout.updated_at):
        return planned(rollout, job.now).get(Kind.STALE)  # something happened: a new quiet spell
    since = texts.when(rollout.updated_at, rollout.timezone)
    message = texts.reminder("stale", views.rollout_view(rollout), days=STALE_BUSINESS_DAYS, since=since)
    _queue(session, rollout, f"stale:{iso_utc(rollout.updated_at)}", job.now, message)
    return None


def _watch(svc: Services, job: Claimed) -> Due | None:
    """Reads the flag (when the bot runs it) and the rollback triggers (of an active rollout),
    the triggers against the baseline the gate uses."""
    rollout = _load(svc, job.rollout_id)
    if rollout is None or not rollout.status.is_open:
        return None
    refresh = flagging.watch(svc, rollout.id) if flag_rules.managed(rollout) else False
    if rollout.status is RolloutStatus.ACTIVE and rollout.triggers:
        refresh = triggers.watch_triggers(svc, rollout) or refresh
    elif not flag_rules.managed(rollout):
        return None
    if refresh:
        try:
            status_board.refresh(svc, rollout.id)
        except Exception:
            log.exception("status message of rollout %s not refreshed after the watch", rollout.id)
    return Due(svc.clock() + timedelta(minutes=svc.settings.watch_minutes), {})


def _flag_sync(svc: Services, job: Claimed) -> Due | None:
    """Retries the flag write a rollback still owes until it lands (see usecases.flagging)."""
    if flagging.sync(svc, job.rollout_id):
        try:
            status_board.refresh(svc, job.rollout_id)
        except Exception:
            log.exception("status message of rollout %s not refreshed after the flag write", job.rollout_id)
        return None
    return Due(svc.clock() + FLAG_RETRY, job.data)


def _refresh(svc: Services, job: Claimed) -> Due | None:
    """The status message's `refresh` row came due: an edit Slack refused, or one whose holder
    stopped. This run holds the row (its lease is the token) until the message shows the
    newest state, or backs it off again (`status_board.hold`)."""
    status_board.hold(svc, job.rollout_id, job.lease, int(job.data.get("attempt", 0)))
    return None


JOBS: dict[str, Job] = {
    Kind.DIGEST: _digest,
    Kind.READY: _ready,
    Kind.OVERDUE: _overdue,
    Kind.STALE: _stale,
    Kind.WATCH: _watch,
    Kind.FLAG_SYNC: _flag_sync,
    Kind.REFRESH: _refresh,
    Kind.AUTO: lambda svc, job: autopilot.run(svc, job.rollout_id, job.data, job.now, job.lease),
}


# --- the digest command ----------------------------------------------------------------------
