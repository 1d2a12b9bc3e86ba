"""Work due at a time: the stakeholder digest, reminders to the owner, the rollback-trigger watch.

What is due lives in `due_job`, one row per (rollout, kind), so a restart loses nothing and
replicas share the work:

- `reschedule` runs in the transaction of every change to a rollout and sets its rows from its
  new state. A row whose inputs did not change (same step, same digest settings...) is left as
  it is, so a re-check planned for later or a claim in progress survives an unrelated change.
- `run_due` claims the due rows and runs their jobs (`bot.delivery.tick`: the lease that is the
  claim's token, the transactions the jobs run in, the rows' next times). A job that writes (a
  reminder, the digest, the ready check) does that in a transaction with its row's next time;
  the digest and the overdue and stale reminders are database work alone (`InTransaction`),
  and the ready check is once its Datadog reads are done (`Prepared`), so a stretch of them
  shares one.
- Each job reads what it decides from in a fixed number of statements, whatever the size of the
  plan: the rollout's row (`job_queries.job_rollout_row`: the columns jobs read, one Core
  statement, a detached `Rollout` of them), locked for a change by a `SELECT … FOR UPDATE` of
  that row alone on Postgres (`lock_rollout_row`; the ready check reads it again so, after its
  Datadog reads), the current step with it (`job_queries.rollout_and_step`, `digest_row`), and, to render a message,
  the plain view (`view_reads.load_rollout`; a reminder's without the checklist items, which it never
  shows and which are most of a plan's rows). The whole ORM plan is loaded only to re-plan a row
  from a state that moved on. The tick's own statements (claim, lease, settle, the outbox
  key) are prepared Core statements, reused; the jobs' reads, the view's and the settles run on the
  DBAPI connection of their transaction (`storage.dbapi_statements`).
- Every message goes through the outbox under a dedupe key, so a job replayed after a crash
  never posts twice.
- A tick draws nothing: a digest commits its text to the outbox and, in the same transaction,
  a `chart` row for its progress chart, which `bot.delivery.charts.run_due` claims, draws and
  uploads afterwards (matplotlib takes a tenth of a second or more per chart). `run_due` runs
  every kind but that one; `run` (`bot.delivery.tick`) is the claim-and-run loop both use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row
from sqlalchemy.orm import Session

from bot.delivery import autopilot, status_board, triggers
from bot.delivery.tick import LEASE as LEASE
from bot.delivery.tick import Body, InTransaction, Prepared, finished
from bot.delivery.tick import Claimed as Claimed
from bot.delivery.tick import Job as Job
from bot.delivery.tick import mark as mark
from bot.delivery.tick import run as run
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
    step_end,
)
from bot.domain.soak import soak_status
from bot.observe import logs
from bot.services import Services
from bot.usecases import announcing, flagging, measure, view_reads
from messages import digest as texts
from messages.blocks import Message
from messages.views import EventView, RolloutView, SnapshotView
from storage import job_queries, queries
from storage.enums import ItemKind, RolloutStatus, SnapshotKind
from storage.models import Rollout, Step

log = logging.getLogger(__name__)

READY_RECHECK = timedelta(hours=1)
READY_FIRST = timedelta(minutes=10)  # an overdue reminder waits this long for a ready check due with it


def run_due(svc: Services, *, limit: int = 100) -> int:
    """Runs the work due now, but the charts (`bot.delivery.charts.run_due`). Returns how many
    jobs ran to the end; one that fails is logged and retried after its lease, and the others
    carry on."""
    return run(svc, JOBS, limit=limit)


# --- the jobs --------------------------------------------------------------------------------
# A job gets its claimed row and returns the row's next time, or None when it is done. What each
# loads is in the module's docstring.


def _replan(session: Session, rollout_id: int, kind: str, now: datetime) -> Due | None:
    """The row `kind` as the rollout's state plans it now (which needs its whole plan)."""
    rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    return None if rollout is None else planned(rollout, now).get(kind)


def _at_step(job: Claimed, rollout: Rollout | RolloutView) -> bool:
    return (job.data.get("phase"), job.data.get("step")) == (rollout.phase_index, rollout.step_index)


def _step(rollout: Rollout | RolloutView, step: Step | None) -> Step:
    """The step the rollout is at, read with it (`job_queries.rollout_and_step` and the like)."""
    if step is None:
        raise LookupError(f"rollout {rollout.id} has no step {rollout.phase_index}:{rollout.step_index}")
    return step


def _view(session: Session, rollout_id: int, *, items: bool = True) -> RolloutView:
    view = view_reads.load_rollout(session=session, rollout_id=rollout_id, items=items)
    if view is None:
        raise LookupError(f"rollout {rollout_id} is gone")
    return view


def _open_exit_criteria(view: RolloutView) -> list[str]:
    """Exit criteria gate leaving a phase, not the steps inside it (`rollouts.unchecked_exit_criteria`)."""
    phase = view.current_phase
    if view.step_index + 1 < len(phase.steps):
        return []
    return [i.text for i in phase.items if i.kind == ItemKind.EXIT and not i.checked]


def _queue(
    session: Session,
    rollout: announcing.Addressed,
    milestone: str,
    now: datetime,
    thread: Message,
    line: Message | None = None,
) -> int:
    return announcing.queue(session, rollout, announcing.Announcement(milestone, thread, line), now)


def _digest(session: Session, job: Claimed) -> Due | None:
    """The digest of what happened since the last run; none at all (thread, stakeholders,
    chart) when nothing did: a daily "nothing happened" teaches people to skip digests.
    Its progress chart is queued, not drawn: it follows the text into the status thread.
    One transaction, news or not: the events are read once, and the row's next time commits
    with what was queued."""
    scheduled = datetime.fromisoformat(job.data["at"])  # the slot, not the (maybe late) run
    found = job_queries.digest_row(session=session, rollout_id=job.rollout_id)
    if found is None or not found[0].status.is_open:
        return None
    rollout, at_step, check = found
    mine: dict[str, Any] = {"session": session, "rollout_id": rollout.id}
    events = _event_views(job_queries.events_between(**mine, after=job.last_run_at, until=job.now))
    if not texts.has_news(events):
        return planned_digest(rollout, job.now)
    tz = rollout.timezone
    local_date = scheduled.astimezone(ZoneInfo(tz)).date().isoformat()
    view, step = _view(session, rollout.id), _step(rollout, at_step)
    soak = soak_status(
        rollout.step_started_at, step.min_business_days, job.now, tz=tz, country=rollout.country
    )
    thread, line = texts.digest(
        view,
        scheduled=scheduled,
        events=events,
        check=_check_view(check),
        soak=soak.describe(rollouts.display_title(step), tz),
        unchecked=_open_exit_criteria(view),
    )
    # A replay finds its text queued (the insert adds nothing), and its chart with it.
    if _queue(session, view, f"digest:{local_date}", job.now, thread, line):
        _queue_chart(session, rollout.id, local_date, job.now)
    return planned_digest(rollout, job.now)


# The digest reads columns (`job_queries`), not ORM rows: these make of them what
# `views.event_views` and `views.snapshot_view` make of the rows, field by field.
def _event_views(rows: Sequence[job_queries.EventRow]) -> tuple[EventView, ...]:
    return tuple(
        EventView(r.kind.value, r.actor_id, r.at, MappingProxyType(dict(r.data)), r.id) for r in rows
    )


def _check_view(row: Row[Any] | job_queries.Check | None) -> SnapshotView | None:
    blockers = () if row is None else (row.verdict or {}).get("blockers", ())
    return None if row is None else SnapshotView(row.taken_at, row.passed, tuple(map(str, blockers)))


def _queue_chart(session: Session, rollout_id: int, local_date: str, now: datetime) -> None:
    """The `chart` row of this digest, due now. One row per rollout: a chart still owed by an
    earlier digest gives way to this one (it would show the same progress, a day older)."""
    data = {"digest": local_date, "queued": iso_utc(now)}
    job_queries.put_due_row(session=session, rollout_id=rollout_id, kind=Kind.CHART, due_at=now, data=data)


def _ready(svc: Services, job: Claimed) -> Body:
    """The gate exactly as Advance runs it (bot.advancing), so "green" here is green there.
    Reads the row and Datadog first, in no transaction; returns the decision, which runs in one."""
    with svc.db.reading() as session:
        rollout = job_queries.job_rollout_row(session=session, rollout_id=job.rollout_id)
        if rollout is None or rollout.status is not RolloutStatus.ACTIVE:
            return finished(None)  # a resume plans it again
        if not _at_step(job, rollout):
            return finished(_replan(session, rollout.id, Kind.READY, job.now))
        milestone = f"ready:{rollout.phase_index}:{rollout.step_index}"
        if job_queries.key_queued(
            session=session, dedupe_key=announcing.dedupe_key(rollout.id, milestone, rollout.channel_id)
        ):
            return finished(None)
    logs.bind_rollout(rollout)
    now = svc.clock()
    current, controls, _ = measure.read_metrics(svc, rollout, now)

    def decide(session: Session, job: Claimed) -> Due | None:
        # Read again, locked (`FOR UPDATE` of the row on Postgres): the Datadog reads above take
        # seconds, and not every write to the row moves its revision (the flag's last look,
        # a pending flag write), so the earlier read is not trusted for the decision.
        found = job_queries.rollout_and_step(session=session, rollout_id=job.rollout_id, lock=True)
        if found is None:
            return None
        locked, at_step = found
        if locked.status is not RolloutStatus.ACTIVE or not _at_step(job, locked):
            return None
        where = {"phase_index": locked.phase_index, "step_index": locked.step_index}
        unchecked = job_queries.gating_exit_criteria(session=session, rollout_id=locked.id, **where)
        baselines = measure.baselines_for(session, locked, controls)
        gate = measure.evaluate_at(locked, _step(locked, at_step), unchecked, current, baselines, now)
        measure.record_snapshot(session, locked, SnapshotKind.CHECK, current, gate, now)
        if not gate.passed:
            return Due(now + READY_RECHECK, job.data)
        view = _view(session, locked.id, items=False)
        _queue(session, view, milestone, now, texts.reminder("ready", view, advance=True))
        return None

    return decide


def _overdue(session: Session, job: Claimed) -> Due | None:
    rollout = view_reads.load_rollout(session=session, rollout_id=job.rollout_id, items=False)
    if rollout is None or rollout.status != RolloutStatus.ACTIVE.value:
        return None
    tz, country = rollout.timezone, rollout.country
    at_step, ready_queued, ready_now = _step_and_ready_state(session, rollout, job)
    end = step_end(at_step, rollout.step_started_at, tz=tz, country=country)
    if not _at_step(job, rollout) or job.now < end:
        return _replan(session, rollout.id, Kind.OVERDUE, job.now)
    # One reminder per step: the ready reminder already asks for this advance, and when its
    # check is due in this same run, it goes first (the two never arrive together).
    if ready_queued:
        return None
    if ready_now:
        return Due(job.now + READY_FIRST, job.data)
    message = texts.reminder("overdue", rollout, planned_end=texts.when(end, tz))
    _queue(session, rollout, f"overdue:{rollout.phase_index}:{rollout.step_index}", job.now, message)
    return None


def _step_and_ready_state(session: Session, rollout: RolloutView, job: Claimed) -> tuple[Step, bool, bool]:
    """The step the rollout is at; is its ready reminder queued; is its check due now, or
    claimed in the same run as `job`? One statement."""
    milestone = f"ready:{rollout.phase_index}:{rollout.step_index}"
    key = announcing.dedupe_key(rollout.id, milestone, rollout.channel_id)
    where = {"phase_index": rollout.phase_index, "step_index": rollout.step_index}
    found = job_queries.step_key_queued_and_due_at(
        session=session, rollout_id=rollout.id, **where, dedupe_key=key, kind=Kind.READY
    )
    if found is None:
        raise LookupError(f"rollout {rollout.id} has no step {rollout.phase_index}:{rollout.step_index}")
    step, queued, due = found
    due = due if due is None or due.tzinfo else due.replace(tzinfo=job.now.tzinfo)
    return step, queued, due is not None and (due <= job.now or due == job.lease)


def _stale(session: Session, job: Claimed) -> Due | None:
    rollout = view_reads.load_rollout(session=session, rollout_id=job.rollout_id, items=False)
    if rollout is None or not rollout.is_open:
        return None
    if job.data.get("updated_at") != iso_utc(rollout.updated_at):
        return _replan(session, rollout.id, Kind.STALE, job.now)  # something happened: a new quiet spell
    since = texts.when(rollout.updated_at, rollout.timezone)
    message = texts.reminder("stale", rollout, days=STALE_BUSINESS_DAYS, since=since)
    _queue(session, rollout, f"stale:{iso_utc(rollout.updated_at)}", job.now, message)
    return None


def _watch(svc: Services, job: Claimed) -> Due | None:
    """Reads the flag (when the bot runs it) and the rollback triggers (of an active rollout),
    the triggers against the baseline the gate uses."""
    with svc.db.reading() as session:  # the row and the stored baseline, in one read
        rollout = job_queries.job_rollout_row(session=session, rollout_id=job.rollout_id)
        if rollout is None or not rollout.status.is_open:
            return None
        on_triggers = rollout.status is RolloutStatus.ACTIVE and bool(rollout.triggers)
        stored = measure.stored_baselines(session, rollout.id) if on_triggers else {}
    logs.bind_rollout(rollout)
    refresh = flagging.watch(svc, rollout.id) if flag_rules.managed(rollout) else False
    if on_triggers:
        refresh = triggers.watch_triggers(svc, rollout, stored) or refresh
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
    Kind.DIGEST: InTransaction(_digest),
    Kind.READY: Prepared(_ready),
    Kind.OVERDUE: InTransaction(_overdue),
    Kind.STALE: InTransaction(_stale),
    Kind.WATCH: _watch,
    Kind.FLAG_SYNC: _flag_sync,
    Kind.REFRESH: _refresh,
    Kind.AUTO: lambda svc, job: autopilot.run(svc, job.rollout_id, job.data, job.now, job.lease),
}
