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
  gets its next time (or goes) only while the token still holds, so a change meanwhile wins.
- Every message goes through the outbox under a dedupe key, so a job replayed after a crash
  never posts twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from bot.delivery import outbox, status_board
from bot.domain import rollouts
from bot.domain.calendar import earliest_time, is_business_day
from bot.domain.gates import MetricVerdict, Observation, describe_trigger, fired_triggers, soak_status
from bot.domain.plans.model import Metric
from bot.edge.parsing import DIGEST_TIME_RE, UsageError
from bot.errors import InvalidTransition, RolloutNotFound
from bot.services import Actor, Services
from bot.usecases import advancing, snapshots
from bot.usecases.announcing import QUEUED, announce
from messages import digest as texts
from messages.blocks import Message
from storage import queries
from storage.enums import EventKind, RolloutStatus, SnapshotKind
from storage.models import DueJob, Rollout

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
READY_RECHECK = timedelta(hours=1)
STALE_BUSINESS_DAYS = 3
OVERDUE_GRACE_DAYS = 1  # a step without a planned end is overdue one business day after its soak
WATCH_MINUTES = 10  # the first watch after a change; later ones follow settings.watch_minutes
CADENCES = ("off", "daily", "weekly")
_SEARCH_DAYS = 400  # a digest day is always found well within a year


class Kind(StrEnum):
    DIGEST = "digest"
    READY = "ready"
    OVERDUE = "overdue"
    STALE = "stale"
    WATCH = "watch"


@dataclass(frozen=True)
class Due:
    """When a row is due, and what it was planned from (`data`, kept in the row)."""

    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class Claimed:
    id: int
    rollout_id: int
    kind: str
    data: dict[str, Any]
    last_run_at: datetime | None
    now: datetime  # the tick's time: what was due then is what this run covers
    lease: datetime  # the claim's token: the row's due_at while this run holds it


# --- when things are due ---------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _is_digest_day(day: date, cadence: str, tz: str, country: str) -> bool:
    if not is_business_day(day, country):
        return False
    if cadence == "daily":
        return True
    # Weekly: Monday, or the first business day after it when Monday is a holiday.
    monday = day - timedelta(days=day.weekday())
    return not any(is_business_day(monday + timedelta(days=i), country) for i in range(day.weekday()))


def next_digest(rollout: Rollout, now: datetime) -> datetime | None:
    """The first digest time after `now`: digest_time on the wall clock of the rollout's time
    zone (so the UTC instant moves with daylight saving), on a digest day of its country."""
    if rollout.digest not in ("daily", "weekly"):
        return None
    zone = ZoneInfo(rollout.timezone)
    hour, minute = (int(p) for p in rollout.digest_time.split(":"))
    day = now.astimezone(zone).date()
    for _ in range(_SEARCH_DAYS):
        if _is_digest_day(day, rollout.digest, rollout.timezone, rollout.country):
            at = datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)
            if at > now:
                return at
        day += timedelta(days=1)
    raise ValueError(f"no digest day within {_SEARCH_DAYS} days for {rollout.timezone}/{rollout.country}")


def planned_end(rollout: Rollout) -> datetime:
    step = rollout.current_step
    if step.planned_end is not None:
        return step.planned_end
    days = step.min_business_days + OVERDUE_GRACE_DAYS
    return earliest_time(rollout.step_started_at, days, tz=rollout.timezone, country=rollout.country)


def planned(rollout: Rollout, now: datetime, *, watch_minutes: int = WATCH_MINUTES) -> dict[str, Due]:
    """Every row the rollout should have, by kind. Finished: none. Paused: digest and stale."""
    if not rollout.status.is_open:
        return {}
    tz, country = rollout.timezone, rollout.country
    out: dict[str, Due] = {}
    digest_at = next_digest(rollout, now)
    if digest_at is not None:
        settings = {"cadence": rollout.digest, "time": rollout.digest_time, "tz": tz, "country": country}
        out[Kind.DIGEST] = Due(digest_at, {**settings, "at": _iso(digest_at)})
    stale_at = earliest_time(rollout.updated_at, STALE_BUSINESS_DAYS, tz=tz, country=country)
    out[Kind.STALE] = Due(stale_at, {"updated_at": _iso(rollout.updated_at), "at": _iso(stale_at)})
    if rollout.status is RolloutStatus.ACTIVE:
        started, soak = rollout.step_started_at, rollout.current_step.min_business_days
        where = {"phase": rollout.phase_index, "step": rollout.step_index, "started": _iso(started)}
        ready_at = earliest_time(started, soak, tz=tz, country=country)
        out[Kind.READY] = Due(ready_at, {**where, "at": _iso(ready_at)})
        end = planned_end(rollout)
        out[Kind.OVERDUE] = Due(end, {**where, "at": _iso(end)})
        if rollout.triggers:
            out[Kind.WATCH] = Due(now + timedelta(minutes=watch_minutes), {})
    return out


def _inputs(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """What a row was planned from. A digest's "at" moves on as digests go out, so only its
    settings count; the other kinds' times follow from their inputs."""
    return {k: v for k, v in data.items() if k != "at"} if kind == Kind.DIGEST else data


def reschedule(
    session: Session, rollout: Rollout, now: datetime, *, watch_minutes: int = WATCH_MINUTES
) -> None:
    """Called in the transaction of every change to a rollout, under its lock: (re)computes its
    due work. Core statements, not ORM objects: a run finishing at the same time may delete or
    move a row, and that must never fail the change itself."""
    wanted = planned(rollout, now, watch_minutes=watch_minutes)
    rows = session.execute(select(DueJob.kind, DueJob.data).where(DueJob.rollout_id == rollout.id)).all()
    existing = {kind: data for kind, data in rows}
    if gone := [kind for kind in existing if kind not in wanted]:
        session.execute(delete(DueJob).where(DueJob.rollout_id == rollout.id, DueJob.kind.in_(gone)))
    for kind, due in wanted.items():
        if kind in existing and _inputs(kind, existing[kind]) == _inputs(kind, due.data):
            continue
        mine = (DueJob.rollout_id == rollout.id, DueJob.kind == kind)
        moved = session.execute(update(DueJob).where(*mine).values(due_at=due.at, data=due.data))
        if not cast("CursorResult[Any]", moved).rowcount:  # new, or just deleted by a finishing run
            session.add(DueJob(rollout_id=rollout.id, kind=kind, due_at=due.at, data=due.data))


# --- the tick --------------------------------------------------------------------------------


def _claim(svc: Services, now: datetime, limit: int) -> list[Claimed]:
    lease = now + LEASE
    with svc.db.transaction() as session:
        rows = queries.due_jobs(session=session, now=now, limit=limit)
        claimed = [Claimed(r.id, r.rollout_id, r.kind, dict(r.data), r.last_run_at, now, lease) for r in rows]
        if claimed:
            session.execute(update(DueJob).where(DueJob.id.in_([c.id for c in claimed])).values(due_at=lease))
    return claimed


def _finish(svc: Services, job: Claimed, nxt: Due | None) -> None:
    with svc.db.transaction() as session:
        session.execute(update(DueJob).where(DueJob.id == job.id).values(last_run_at=job.now))
        mine = (DueJob.id == job.id, DueJob.due_at == job.lease)
        if nxt is None:
            session.execute(delete(DueJob).where(*mine))
        else:
            session.execute(update(DueJob).where(*mine).values(due_at=nxt.at, data=nxt.data))


def run_due(svc: Services, *, limit: int = 100) -> int:
    """Runs the work due now. Returns how many jobs ran to the end; one that fails is logged
    and retried after its lease, and the others carry on."""
    ran = 0
    for job in _claim(svc, svc.clock(), limit):
        try:
            _finish(svc, job, JOBS[job.kind](svc, job))
            ran += 1
        except Exception:
            log.exception(
                "%s job of rollout %s failed; it is retried after its lease", job.kind, job.rollout_id
            )
    return ran


# --- the jobs --------------------------------------------------------------------------------
# A job gets its claimed row and returns the row's next time, or None when it is done.


def _load(svc: Services, rollout_id: int) -> Rollout | None:
    with svc.db.reading() as session:
        return queries.get_rollout(session=session, rollout_id=rollout_id)


def _at_step(job: Claimed, rollout: Rollout) -> bool:
    return (job.data.get("phase"), job.data.get("step")) == (rollout.phase_index, rollout.step_index)


def _queued(session: Session, rollout: Rollout, milestone: str) -> bool:
    key = outbox.dedupe_key(rollout.id, milestone, rollout.channel_id)
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
    if outbox.announce(session, rollout, outbox.Announcement(milestone, thread, line, channel), now):
        session.info[QUEUED] = True


def _digest(svc: Services, job: Claimed) -> Due | None:
    with svc.db.transaction() as session:
        rollout = queries.get_rollout(session=session, rollout_id=job.rollout_id)
        if rollout is None or not rollout.status.is_open:
            return None
        tz, step = rollout.timezone, rollout.current_step
        mine: dict[str, Any] = {"session": session, "rollout_id": rollout.id}
        soak = soak_status(
            rollout.step_started_at, step.min_business_days, job.now, tz=tz, country=rollout.country
        )
        scheduled = datetime.fromisoformat(job.data["at"])  # the slot, not the (maybe late) run
        thread, line = texts.digest(
            rollout,
            scheduled=scheduled,
            events=queries.events_between(**mine, after=job.last_run_at, until=job.now),
            check=queries.latest_check(
                **mine, phase_index=rollout.phase_index, step_index=rollout.step_index
            ),
            soak=soak.describe(rollouts.display_title(step), tz),
            unchecked=rollouts.unchecked_exit_criteria(rollout),
        )
        local_date = scheduled.astimezone(ZoneInfo(tz)).date()
        _queue(session, rollout, f"digest:{local_date.isoformat()}", job.now, thread, line)
    return planned(rollout, job.now).get(Kind.DIGEST)


def _ready(svc: Services, job: Claimed) -> Due | None:
    """The gate exactly as Advance runs it (bot.advancing), so "green" here is green there."""
    rollout = _load(svc, job.rollout_id)
    if rollout is None or rollout.status is not RolloutStatus.ACTIVE:
        return None  # a resume plans it again
    if not _at_step(job, rollout):
        return planned(rollout, job.now).get(Kind.READY)
    milestone = f"ready:{rollout.phase_index}:{rollout.step_index}"
    with svc.db.reading() as session:
        if _queued(session, rollout, milestone):
            return None
    now = svc.clock()
    current, controls, _ = advancing.read_metrics(svc, rollout, now)
    with svc.db.transaction() as session:
        locked = queries.lock_rollout(session=session, rollout_id=rollout.id)
        if locked is None or locked.status is not RolloutStatus.ACTIVE or not _at_step(job, locked):
            return None
        gate = advancing.evaluate(locked, current, advancing.baselines_for(session, locked, controls), now)
        advancing.store_snapshot(session, locked, SnapshotKind.CHECK, current, gate, now)
        if not gate.passed:
            return Due(now + READY_RECHECK, job.data)
        _queue(session, locked, milestone, now, texts.reminder("ready", locked, advance=True))
    return None


def _overdue(svc: Services, job: Claimed) -> Due | None:
    with svc.db.transaction() as session:
        rollout = queries.get_rollout(session=session, rollout_id=job.rollout_id)
        if rollout is None or rollout.status is not RolloutStatus.ACTIVE:
            return None
        end = planned_end(rollout)
        if not _at_step(job, rollout) or job.now < end:
            return planned(rollout, job.now).get(Kind.OVERDUE)
        message = texts.reminder("overdue", rollout, planned_end=texts.when(end, rollout.timezone))
        _queue(session, rollout, f"overdue:{rollout.phase_index}:{rollout.step_index}", job.now, message)
    return None


def _stale(svc: Services, job: Claimed) -> Due | None:
    with svc.db.transaction() as session:
        rollout = queries.get_rollout(session=session, rollout_id=job.rollout_id)
        if rollout is None or not rollout.status.is_open:
            return None
        if job.data.get("updated_at") != _iso(rollout.updated_at):
            return planned(rollout, job.now).get(Kind.STALE)  # something happened: a new quiet spell
        since = texts.when(rollout.updated_at, rollout.timezone)
        message = texts.reminder("stale", rollout, days=STALE_BUSINESS_DAYS, since=since)
        _queue(session, rollout, f"stale:{_iso(rollout.updated_at)}", job.now, message)
    return None


def _watch(svc: Services, job: Claimed) -> Due | None:
    """Reads the rollback triggers only, against the baseline the gate uses."""
    rollout = _load(svc, job.rollout_id)
    if rollout is None or rollout.status is not RolloutStatus.ACTIVE or not rollout.triggers:
        return None
    now = svc.clock()
    _, triggers = advancing.metrics_of(rollout)
    plan = snapshots.plan_queries(
        triggers, feature=rollout.feature, flag=rollout.flag_key, service=rollout.service
    )
    readings = snapshots.take(svc.metrics, plan, now)
    current = snapshots.by_metric(plan, readings)
    with svc.db.reading() as session:
        baselines = advancing.baselines_for(session, rollout, snapshots.controls(plan, readings))
    fired = fired_triggers(triggers, current, baselines)
    where = (rollout.phase_index, rollout.step_index)
    if fired and _on_fired(svc, rollout.id, where, {t.key: t for t in triggers}, fired, current, now):
        try:
            status_board.refresh(svc, rollout.id)
        except Exception:
            log.exception("status message of rollout %s not refreshed after the watch paused it", rollout.id)
    return Due(now + timedelta(minutes=svc.settings.watch_minutes), {})


def _on_fired(
    svc: Services,
    rollout_id: int,
    where: tuple[int, int],
    triggers: dict[str, Metric],
    fired: tuple[MetricVerdict, ...],
    current: dict[str, Observation],
    now: datetime,
) -> bool:
    """Records, pauses (if the rollout says so) and alerts, in one transaction. A trigger alerts
    once per step: after a person resumes, the same trigger at the same step does not pause it
    again. Returns whether it paused."""
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if (
            rollout is None
            or rollout.status is not RolloutStatus.ACTIVE
            or where != (rollout.phase_index, rollout.step_index)
        ):
            return False
        suffix = f"{rollout.phase_index}:{rollout.step_index}"
        new = [v for v in fired if not _queued(session, rollout, f"trigger:{v.key}:{suffix}")]
        if not new:
            return False
        snap = advancing.store_snapshot(session, rollout, SnapshotKind.WATCH, current, None, now)
        snap.passed = False  # what the digest shows as the last verdict at this step
        snap.verdict = {
            "passed": False,
            "blockers": [f"Rollback trigger {v.name} fired: {v.reason}." for v in new],
        }
        step = rollouts.display_title(rollout.current_step)
        for v in new:
            rule = describe_trigger(triggers[v.key])
            data = {"trigger": v.key, "name": v.name, "value": v.value, "baseline": v.baseline, "rule": rule}
            data |= {"reason": v.reason, "step": step, "snapshot_id": snap.id}
            session.add(rollouts.event(rollout, EventKind.TRIGGER_FIRED, None, now, **data))
            alert = {"trigger": v.name, "reason": v.reason, "rule": rule}
            thread, top = texts.trigger_alert(rollout, paused=rollout.watch_pauses, **alert)
            _queue(session, rollout, f"trigger:{v.key}:{suffix}", now, thread, channel=top)
        if rollout.watch_pauses:
            rollouts.pause(rollout, now)
            reason = "rollback trigger fired: " + "; ".join(f"{v.name} ({v.reason})" for v in new)
            event = rollouts.event(rollout, EventKind.PAUSED, None, now, step=step, reason=reason)
            session.add(event)
            session.flush()
            announce(session, rollout, "paused", f"paused:{event.id}", now, actor=None, reason=reason)
        reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
        return rollout.watch_pauses


JOBS: dict[str, Callable[[Services, Claimed], Due | None]] = {
    Kind.DIGEST: _digest,
    Kind.READY: _ready,
    Kind.OVERDUE: _overdue,
    Kind.STALE: _stale,
    Kind.WATCH: _watch,
}


# --- the digest command ----------------------------------------------------------------------


def set_digest(svc: Services, actor: Actor, rollout_id: int, cadence: str, at: str | None) -> Rollout:
    """`/rollout digest [feature] off|daily|weekly [HH:MM]`: owner, approvers and admins only."""
    cadence = cadence.strip().lower()
    if cadence not in CADENCES:
        raise UsageError("say `off`, `daily` or `weekly`", "digest")
    if at is not None:
        match = DIGEST_TIME_RE.match(at.strip())
        if not match:
            raise UsageError(f"`{at}` is not a time like 09:30", "digest")
        at = f"{int(match.group(1)):02d}:{match.group(2)}"
    advancing.check_allowed(svc, actor, advancing.load_for(svc, actor, rollout_id), "change the digest of")
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is None:
            raise RolloutNotFound("That rollout does not exist any more.")
        if not rollout.status.is_open:
            raise InvalidTransition(
                f"{rollout.feature} is {rollout.status.replace('_', ' ')}; it has no digest"
            )
        before = {"cadence": rollout.digest, "at": rollout.digest_time}
        rollout.digest, rollout.digest_time = cadence, at or rollout.digest_time
        after = {"cadence": rollout.digest, "at": rollout.digest_time}
        if after != before:
            rollout.touch(now)
            session.add(
                rollouts.event(rollout, EventKind.DIGEST_CHANGED, actor.user_id, now, **after, before=before)
            )
            reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
    return rollout


def describe_digest(rollout: Rollout) -> str:
    """E.g. "every business day at 09:00 America/Los_Angeles", "weekly on Monday at 09:30
    Europe/Berlin", "off"."""
    if rollout.digest == "daily":
        return f"every business day at {rollout.digest_time} {rollout.timezone}"
    if rollout.digest == "weekly":
        return f"weekly on Monday at {rollout.digest_time} {rollout.timezone}"
    return "off"
