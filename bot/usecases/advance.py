"""Advancing a rollout: a Datadog snapshot, the gate, and the move, exactly once per intent.

An advance is bound to the step the person saw (`Intent`): the Advance button carries the
step it was rendered at (its value is the `Where` token), a typed `/rollout advance` (or a
button from before buttons carried it) means the step current when Slack sent the request.
A step that started after the request was sent is not the one the person meant: the request
is answered "already moved to …" and moves nothing (`may_advance`). Without this, a second
advance picked up just after the first committed saw a green gate at the new step and moved
again.

The snapshot is taken outside any transaction (it is slow); the move happens in one short
transaction that re-reads the rollout under lock and moves it only if it still stands where
the snapshot was taken. Two advances at once (a double click, two people) therefore move it
once; the other is told it already moved. A move stamps the new step's start with the time
taken under that lock, just before the commit, so a request sent while the move was in
flight counts as sent before the step began.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.domain import flagging as flag_rules
from bot.domain import rollouts, windows
from bot.domain.calendar import format_local
from bot.domain.gates import GateResult
from bot.errors import AdvanceClosed, AlreadyMoved, RolloutNotFound, UsageError
from bot.flags import FlagError
from bot.observe import telemetry
from bot.services import Actor, Services
from bot.usecases import announcing, autopilot, controls, flagging, schedule
from bot.usecases.access import check_allowed
from bot.usecases.lookup import load_for
from bot.usecases.measure import baselines_for, evaluate, explorer_links, read_metrics, store_snapshot
from messages.views import Outcome
from storage import queries
from storage.enums import EventKind, SnapshotKind
from storage.models import Event, Rollout


@dataclass(frozen=True)
class Where:
    """A rollout's place, to tell whether it moved while we were reading Datadog."""

    phase_index: int
    step_index: int

    @classmethod
    def of(cls, rollout: Rollout) -> Where:
        return cls(rollout.phase_index, rollout.step_index)

    def token(self, rollout_id: int) -> str:
        return f"{rollout_id}:{self.phase_index}:{self.step_index}"

    @classmethod
    def parse(cls, token: str) -> tuple[int, Where]:
        parts = token.split(":")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() and int(p) < 2**31 for p in parts):
            raise UsageError("that button is not one of mine any more")
        rollout_id, phase, step = (int(p) for p in parts)
        return rollout_id, cls(phase, step)


def snapshot(svc: Services, actor: Actor, rollout: Rollout) -> Outcome:
    """The gate as it stands, without moving: anyone in the channel may look."""
    now = svc.clock()
    current, cohorts, _ = read_metrics(svc, rollout, now)
    with svc.db.transaction() as session:
        locked = queries.lock_rollout(session=session, rollout_id=rollout.id)
        if locked is None:
            raise RolloutNotFound("That rollout does not exist any more.")
        gate = evaluate(locked, current, baselines_for(session, locked, cohorts), now)
        snap = store_snapshot(session, locked, SnapshotKind.CHECK, current, gate, now)
        session.add(
            rollouts.event(
                locked, EventKind.SNAPSHOT, actor.user_id, now, snapshot_id=snap.id, passed=gate.passed
            )
        )
    return _outcome(svc, locked, gate, None, may_override=False, snapshot_only=True)


@dataclass(frozen=True)
class Intent:
    """The step an advance is meant for: the one its button was rendered at (`at`), else the
    one current when the request was sent (`sent_at`, on the bot's clock); neither: the
    current one (the shell's and the tests' direct calls)."""

    at: Where | None = None
    sent_at: datetime | None = None


def may_advance(svc: Services, actor: Actor, rollout_id: int, intent: Intent | None = None) -> Rollout:
    """The rollout, if it is active, the actor may advance it and it still stands where the
    request meant it to; refused otherwise (before anything is read from Datadog or said
    about checking)."""
    rollout = load_for(svc, actor, rollout_id)
    rollouts.require_active(rollout, "advance")
    check_allowed(svc, actor, rollout, "advance")
    if intent is not None and not _meant(svc, rollout, intent):
        with svc.db.reading() as session:
            raise _already_moved(rollout, _last_move(session, rollout.id))
    with svc.db.reading() as session:
        decision = autopilot.decide(session, rollout, windows.Who.PERSON, svc.clock())
    if decision.answer is windows.Answer.REFUSE:
        # Refused with the window's name and end; "Advance anyway…" (a reason) takes it through.
        raise AdvanceClosed(
            "*{feature}* is not advanced now: {why}.",
            token=Where.of(rollout).token(rollout.id),
            feature=rollout.feature,
            why=decision.why,
        )
    return rollout


def _meant(svc: Services, rollout: Rollout, intent: Intent) -> bool:
    """Is the rollout's current step the one the request was for?"""
    if intent.at is not None:
        return Where.of(rollout) == intent.at
    if intent.sent_at is None or rollout.step_started_at <= intent.sent_at:
        return True
    # The step began after the request was sent. A rollout that never moved began there
    # (its start and the request crossed): that step is the only one it can mean.
    with svc.db.reading() as session:
        return _last_move(session, rollout.id) is None


def advance(svc: Services, actor: Actor, rollout: Rollout) -> Outcome:
    """Advances a rollout `may_advance` gave back, if the gate passes."""
    rollout_id = rollout.id
    where = Where.of(rollout)
    now = svc.clock()
    current, cohorts, _ = read_metrics(svc, rollout, now)
    with _flag_refusal(svc, actor, rollout, "advance") as attempt, svc.db.transaction() as session:
        locked = _lock_at(session, rollout_id, where)
        gate = evaluate(locked, current, baselines_for(session, locked, cohorts), now)
        snap = store_snapshot(session, locked, SnapshotKind.GATE, current, gate, now)
        if not gate.passed:
            session.add(
                rollouts.event(
                    locked,
                    EventKind.ADVANCE_BLOCKED,
                    actor.user_id,
                    now,
                    snapshot_id=snap.id,
                    blockers=list(gate.blockers),
                )
            )
            telemetry.GATE_DECISIONS.labels("blocked").inc()
            rolls_back = flag_rules.on_trigger(locked) == flag_rules.ROLLBACK
            if gate.fired:
                telemetry.TRIGGERS_FIRED.labels("advance", "rollback" if rolls_back else "block").inc(
                    len(gate.fired)
                )
            if gate.fired and rolls_back:
                reason = "rollback trigger fired: " + "; ".join(f"{v.name} ({v.reason})" for v in gate.fired)
                written = controls.roll_back_locked(svc, session, locked, None, reason, now)
                outcome = _outcome(svc, locked, gate, None, may_override=False)
                return replace(outcome, rolled_back=True, flag=written.words() if written else "")
            return _outcome(svc, locked, gate, None, may_override=True)
        moved, written = _move(
            svc, session, locked, actor, now, EventKind.ADVANCED, attempt, snapshot_id=snap.id
        )
    telemetry.GATE_DECISIONS.labels("advanced").inc()
    outcome = _outcome(svc, locked, gate, moved, may_override=True, where=where)
    return replace(outcome, flag=written.words() if written else "")


def override(svc: Services, actor: Actor, token: str, reason: str) -> rollouts.Moved:
    """ "Advance anyway": the owner or an approver moves past a blocked gate, with a reason
    that goes into the timeline and the announcement."""
    rollout_id, where = Where.parse(token)
    rollout = load_for(svc, actor, rollout_id)
    check_allowed(svc, actor, rollout, "override the gate of")
    now = svc.clock()
    with _flag_refusal(svc, actor, rollout, "advance") as attempt, svc.db.transaction() as session:
        locked = _lock_at(session, rollout_id, where)
        last = queries.latest_snapshot(session=session, rollout_id=rollout_id, kind=SnapshotKind.GATE)
        blockers = list((last.verdict or {}).get("blockers", [])) if last is not None else []
        closed = autopilot.decide(session, locked, windows.Who.PERSON, now)
        if closed.answer is windows.Answer.REFUSE:  # advanced through a freeze or outside hours
            blockers = [f"Not an allowed time: {closed.why}.", *blockers]
        moved, _ = _move(
            svc, session, locked, actor, now, EventKind.OVERRIDDEN, attempt, reason=reason, blockers=blockers
        )
    telemetry.GATE_DECISIONS.labels("overridden").inc()
    return moved


@dataclass(frozen=True)
class OverridePreview:
    """What "Advance anyway" would do: from where to where, the phase it would leave (marked
    skipped by override), and the blockers of the last gate check it overrides."""

    feature: str
    from_step: str
    to_step: str
    to_phase: str
    leaves_phase: str | None
    blockers: tuple[str, ...]


def override_preview(svc: Services, rollout: Rollout) -> OverridePreview:
    """For the override form: read only, nothing changes."""
    with svc.db.reading() as session:
        last = queries.latest_snapshot(session=session, rollout_id=rollout.id, kind=SnapshotKind.GATE)
    blockers = tuple(str(b) for b in (last.verdict or {}).get("blockers", [])) if last is not None else ()
    nxt = rollouts.next_position(rollout)
    leaving = nxt is None or nxt.phase_index != rollout.phase_index
    if nxt is None:
        to_step, to_phase = "done", ""
    else:
        phase = rollout.phases[nxt.phase_index]
        to_step, to_phase = rollouts.display_title(phase.steps[nxt.step_index]), phase.name
    return OverridePreview(
        feature=rollout.feature,
        from_step=rollouts.display_title(rollout.current_step),
        to_step=to_step,
        to_phase=to_phase,
        leaves_phase=rollout.current_phase.name if leaving else None,
        blockers=blockers,
    )


def advance_auto(
    svc: Services, rollout: Rollout, where: Where
) -> tuple[rollouts.Moved | None, windows.Decision]:
    """The due-work tick's advance, bound to the step it read (`where`): the same snapshot,
    gate, flag write, event and announcement as a person's, but only when `windows.decide`
    says GO with the gate read. Returns the move (None: it did not move) and the decision
    (why it moved, or what holds it and until when). A person who moved it first wins: this
    raises AlreadyMoved and moves nothing."""
    actor = Actor(team_id=rollout.team_id, user_id="", channel_id=rollout.channel_id)
    now = svc.clock()
    current, cohorts, _ = read_metrics(svc, rollout, now)
    with _flag_refusal(svc, actor, rollout, "advance") as attempt, svc.db.transaction() as session:
        locked = _lock_at(session, rollout.id, where)
        asked = autopilot.ask(session, locked, windows.Who.AUTO, now)
        if (first := windows.decide(asked)).answer is not windows.Answer.CHECK:
            return None, first
        gate = evaluate(locked, current, baselines_for(session, locked, cohorts), now)
        reasons = windows.not_green(gate)
        state = windows.Gate.NOT_GREEN if reasons else windows.Gate.GREEN
        words = "; ".join(reasons) if reasons else windows.green_words(gate)
        decision = windows.decide(replace(asked, gate=state, gate_why=words))
        snap = store_snapshot(
            session, locked, SnapshotKind.GATE if decision.go else SnapshotKind.CHECK, current, gate, now
        )
        if not decision.go:
            return None, decision
        moved, _ = _move(
            svc, session, locked, actor, now, EventKind.ADVANCED, attempt, snapshot_id=snap.id, auto=words
        )
    telemetry.GATE_DECISIONS.labels("advanced").inc()
    return moved, decision


def _lock_at(session: Session, rollout_id: int, where: Where) -> Rollout:
    locked = queries.lock_rollout(session=session, rollout_id=rollout_id)
    if locked is None:
        raise RolloutNotFound("That rollout does not exist any more.")
    rollouts.require_active(locked, "advance")
    if Where.of(locked) != where:
        raise _already_moved(locked, _last_move(session, rollout_id))
    return locked


def _last_move(session: Session, rollout_id: int) -> Event | None:
    kinds = (EventKind.ADVANCED, EventKind.OVERRIDDEN)
    stmt = select(Event).where(Event.rollout_id == rollout_id, Event.kind.in_(kinds))
    return session.scalars(stmt.order_by(Event.id.desc()).limit(1)).first()


def _already_moved(rollout: Rollout, last: Event | None) -> AlreadyMoved:
    """ "*checkout-v2* already moved to 50% of Gradual Rollout (by @ana, at Tue 16 Jan 18:00
    America/Los_Angeles); nothing else changed." """
    step = rollouts.display_title(rollout.current_step)
    values = {"feature": rollout.feature, "step": step, "phase": rollout.current_phase.name}
    if last is None or not last.actor_id:
        return AlreadyMoved("*{feature}* already moved to {step} of {phase}; nothing else changed.", **values)
    return AlreadyMoved(
        "*{feature}* already moved to {step} of {phase} (by <@{who}>, at {when}); nothing else changed.",
        who=last.actor_id,
        when=format_local(last.at, rollout.timezone),
        **values,
    )


@dataclass
class Attempt:
    """The flag write a move is about to make, for the record when it fails."""

    target: float | None = None


@contextmanager
def _flag_refusal(svc: Services, actor: Actor, rollout: Rollout, doing: str) -> Iterator[Attempt]:
    """A move whose flag write fails moves nothing (its transaction is rolled back); the
    attempt is then recorded on its own and the user told why, in the flag service's words."""
    attempt = Attempt()
    try:
        yield attempt
    except FlagError as error:
        target = attempt.target if attempt.target is not None else 0.0
        flagging.record_failure(svc, rollout.id, actor.user_id or None, target, error, doing)
        raise flagging.refused(svc, rollout.feature, error, doing) from None


def _move(
    svc: Services,
    session: Session,
    rollout: Rollout,
    actor: Actor,
    now: datetime,
    kind: EventKind,
    attempt: Attempt,
    **data: Any,
) -> tuple[rollouts.Moved, flagging.Written | None]:
    # The new step begins now, under the lock and just before the commit (not when the
    # advance began reading Datadog): a request sent before this instant meant the old step.
    moved = rollouts.move_forward(rollout, max(now, svc.clock()), overridden=kind is EventKind.OVERRIDDEN)
    who = actor.user_id or None  # "": the due-work tick's automatic advance
    # The flag first: if it refuses, the caller's transaction is rolled back and nothing moves.
    attempt.target = flag_rules.plan_percent(rollout)
    written = flagging.write(svc, session, rollout, attempt.target, actor=who, why=kind.value, now=now)
    session.add(
        rollouts.event(rollout, kind, who, now, from_step=moved.from_title, to_step=moved.to_title, **data)
    )
    if moved.phase_completed:
        session.add(rollouts.event(rollout, EventKind.PHASE_COMPLETED, who, now, phase=moved.phase_completed))
    if moved.completed:
        session.add(rollouts.event(rollout, EventKind.COMPLETED, who, now))
        announcing.announce(session, rollout, "completed", "completed", now, actor=who)
    else:
        announcing.announce(
            session,
            rollout,
            "advanced",
            announcing.step_key(rollout),
            now,
            actor=who,
            phase_done=moved.phase_completed,
            auto=data.get("auto", ""),
            override=kind is EventKind.OVERRIDDEN,
            reason=data.get("reason", ""),
            blockers=data.get("blockers", []),
        )
    schedule.reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
    return moved, written


def _outcome(
    svc: Services,
    rollout: Rollout,
    gate: GateResult,
    moved: rollouts.Moved | None,
    *,
    may_override: bool,
    snapshot_only: bool = False,
    where: Where | None = None,
) -> Outcome:
    """The gate report's view of it; "Advance anyway" carries where the rollout stood."""
    token = (where or Where.of(rollout)).token(rollout.id)
    return Outcome(
        rollout_id=rollout.id,
        feature=rollout.feature,
        tz=rollout.timezone,
        step_title=moved.from_title if moved else rollouts.display_title(rollout.current_step),
        gate=gate,
        moved=moved,
        override_token=token if may_override and not gate.passed else None,
        snapshot_only=snapshot_only,
        links=explorer_links(svc, rollout, svc.clock()),
    )
