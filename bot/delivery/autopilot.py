"""The due-work tick's automatic advance: one `auto` row per rollout whose auto-advance is on,
first due when the step's soak is met (`bot.domain.schedule.planned`).

At each run the row asks `bot.domain.windows.decide` (through `bot.usecases.autopilot`):
- STOP (auto off, paused, a checkpoint): the row goes; a change that lifts the stop (a
  resume, the owner's advance, auto on) plans it again. A checkpoint asks the owner once per
  step, with an Advance button.
- WAIT (soak, freeze, outside the hours, a drifted flag, a gate not fully green): the row
  comes back at the decision's time.
- CHECK: the advance use case reads Datadog and moves the rollout if the gate is fully green,
  bound to the step this row was planned at: if a person moved it first, nothing moves.

The row's data keeps the time of its next look ("next", else "at" when first planned) beside
its `due_at`, which a claim moves a lease ahead: a `due_at` past that time means a run holds
the row, and the status message says "checking now" instead of showing the lease.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import update

from bot.delivery import status_board
from bot.domain import windows
from bot.domain.schedule import Due, Kind, iso_utc, planned
from bot.errors import AlreadyMoved, FlagWriteFailed, InvalidTransition
from bot.services import Services
from bot.usecases import announcing, autopilot, view_reads
from bot.usecases.advance import Where, advance_auto
from messages import digest as texts
from storage import job_queries, queries
from storage.enums import RolloutStatus
from storage.models import DueJob

log = logging.getLogger(__name__)


def run(svc: Services, rollout_id: int, data: dict[str, Any], now: datetime, lease: datetime) -> Due | None:
    """One look at a rollout's auto-advance; returns the row's next time, None when it goes.
    `lease`: the claim's token (the row's due_at while this run holds it)."""
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        if rollout is None or rollout.status is not RolloutStatus.ACTIVE or not rollout.auto_advance:
            return None
        where = Where(int(data.get("phase", -1)), int(data.get("step", -1)))
        if where != Where.of(rollout):  # moved since this row was planned: plan the new step's
            return planned(rollout, now).get(Kind.AUTO)
        decision = autopilot.decide(session, rollout, windows.Who.AUTO, now)
    if decision.answer is windows.Answer.STOP:
        _ask_owner(svc, rollout_id, where, decision)
        return None
    if decision.answer is windows.Answer.WAIT:
        return _wait(svc, rollout_id, data, lease, decision.until or now + windows.RECHECK, decision.why)
    try:
        moved, decision = advance_auto(svc, rollout, where)
    except (AlreadyMoved, InvalidTransition):
        return None  # a person moved, paused or finished it first: their change planned the rest
    except FlagWriteFailed as refused:
        # Nothing moved (the write is recorded); the owner hears it once per step, in the
        # status thread, and the tick tries again later.
        why = f"the flag service did not take the write: {refused.reason}"
        _tell_owner(svc, rollout_id, where, "flag", why)
        return _wait(svc, rollout_id, data, lease, svc.clock() + windows.RECHECK, why)
    if moved is None:
        if decision.answer is windows.Answer.STOP:
            _ask_owner(svc, rollout_id, where, decision)
            return None
        return _wait(
            svc, rollout_id, data, lease, decision.until or svc.clock() + windows.RECHECK, decision.why
        )
    try:
        status_board.refresh(svc, rollout_id)
    except Exception:
        log.exception("status message of rollout %s not refreshed after an automatic advance", rollout_id)
    return None  # the move planned the next step's row


def _wait(
    svc: Services, rollout_id: int, data: dict[str, Any], lease: datetime, until: datetime, why: str
) -> Due:
    """The row's next look. A new reason or time to wait is shown on the status message at once
    ("waiting: freeze … until …", "auto: next check at 11:00 (…)"; a time shown must not pass
    unchanged): the row is set while this run still holds it (`lease`, the claim's token), then
    the message is drawn from it; a change meanwhile wins, as in `jobs._finish`."""
    due = Due(until, {**data, "why": why, "next": iso_utc(until)})
    if (data.get("why"), data.get("next")) != (why, due.data["next"]):
        with svc.db.transaction() as session:
            session.execute(
                update(DueJob)
                .where(DueJob.rollout_id == rollout_id, DueJob.kind == Kind.AUTO, DueJob.due_at == lease)
                .values(data=due.data, due_at=until)
            )
        try:
            status_board.refresh(svc, rollout_id)
        except Exception:
            log.exception("status message of rollout %s not refreshed after auto-advance waited", rollout_id)
    return due


def _ask_owner(svc: Services, rollout_id: int, where: Where, decision: windows.Decision) -> None:
    """At a checkpoint the owner is asked, once per step, with an Advance button."""
    if "checkpoint" in decision.why:
        _tell_owner(svc, rollout_id, where, "checkpoint", decision.why)


def _tell_owner(svc: Services, rollout_id: int, where: Where, kind: str, why: str) -> None:
    """A reminder in the status thread, with an Advance button; once per kind and step (the
    outbox's dedupe key)."""
    with svc.db.transaction() as session:
        rollout = job_queries.lock_rollout_row(session=session, rollout_id=rollout_id)
        if rollout is None or Where.of(rollout) != where or rollout.status is not RolloutStatus.ACTIVE:
            return
        view = view_reads.load_rollout(session=session, rollout_id=rollout_id)
        if view is None:
            return
        message = texts.reminder(kind, view, advance=True, why=why)
        milestone = f"auto-{kind}:{where.phase_index}:{where.step_index}"
        announcing.queue(session, view, announcing.Announcement(milestone, message), svc.clock())
