"""Advancing a rollout: a Datadog snapshot, the gate, and the move, exactly once.

The snapshot is taken outside any transaction (it is slow); the move happens in one short
transaction that re-reads the rollout under lock and moves it only if it still stands where
the snapshot was taken. Two advances at once (a double click, two people) therefore move it
once; the other is told it already moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.delivery import jobs
from bot.domain import rollouts
from bot.domain.gates import GateInput, GateResult, MetricVerdict, Observation, evaluate_gate
from bot.domain.plans.model import Metric
from bot.edge.parsing import UsageError
from bot.errors import AlreadyMoved, NotAllowed, RolloutNotFound
from bot.metrics import MetricReading
from bot.services import Actor, Services
from bot.slackweb.client import is_workspace_admin
from bot.usecases import announcing, snapshots
from storage import queries
from storage.enums import EventKind, SnapshotKind
from storage.models import MetricSnapshot, Rollout


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


@dataclass(frozen=True)
class Outcome:
    rollout_id: int
    feature: str
    tz: str
    step_title: str
    gate: GateResult
    moved: rollouts.Moved | None
    where: Where
    may_override: bool
    snapshot_only: bool = False


def metrics_of(rollout: Rollout) -> tuple[list[Metric], list[Metric]]:
    return (
        [Metric.from_dict(m) for m in rollout.metrics],
        [Metric.from_dict(t) for t in rollout.triggers],
    )


def load_for(svc: Services, actor: Actor, rollout_id: int) -> Rollout:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    if rollout is None or rollout.team_id != actor.team_id:
        raise RolloutNotFound("That rollout does not exist any more.")
    return rollout


def check_allowed(svc: Services, actor: Actor, rollout: Rollout, action: str) -> None:
    """Refuses politely, and records the attempt, unless the actor may steer this rollout."""
    if rollouts.may_steer(rollout, actor.user_id, lambda: is_workspace_admin(svc.client, actor.user_id)):
        return
    with svc.db.transaction() as session:
        session.add(rollouts.event(rollout, EventKind.REFUSED, actor.user_id, svc.clock(), action=action))
    raise NotAllowed(
        "Only the owner (<@{owner}>), approvers and workspace admins can {action} *{feature}*. "
        "Ask the owner to `/rollout approvers add @you`.",
        owner=rollout.owner_id,
        action=action,
        feature=rollout.feature,
    )


def read_metrics(
    svc: Services, rollout: Rollout, now: datetime
) -> tuple[dict[str, Observation], dict[str, Observation], dict[str, MetricReading]]:
    metrics, triggers = metrics_of(rollout)
    plan = snapshots.plan_queries(
        [*metrics, *triggers], feature=rollout.feature, flag=rollout.flag_key, service=rollout.service
    )
    readings = snapshots.take(svc.metrics, plan, now)
    current = snapshots.by_metric(plan, readings)
    return current, snapshots.controls(plan, readings), readings


def baselines_for(
    session: Session, rollout: Rollout, controls: dict[str, Observation]
) -> dict[str, Observation]:
    """The control cohort measured now where a metric has one (as Kayenta compares), else the
    baseline stored when the rollout started."""
    stored = queries.latest_snapshot(session=session, rollout_id=rollout.id, kind=SnapshotKind.BASELINE)
    baselines = snapshots.from_json(stored.readings) if stored is not None else {}
    for key, seen in baselines.items():
        if seen.value is None:
            hint = (
                f"it could not be measured at start ({seen.problem}); `/rollout baseline` measures it again"
            )
            baselines[key] = Observation(None, hint)
    return {**baselines, **controls}


def evaluate(
    rollout: Rollout, current: dict[str, Observation], baselines: dict[str, Observation], now: datetime
) -> GateResult:
    metrics, triggers = metrics_of(rollout)
    return evaluate_gate(
        GateInput(
            metrics=metrics,
            triggers=triggers,
            readings=current,
            baselines=baselines,
            unchecked_exit_criteria=rollouts.unchecked_exit_criteria(rollout),
            step_title=rollouts.display_title(rollout.current_step),
            step_started_at=rollout.step_started_at,
            min_business_days=rollout.current_step.min_business_days,
            now=now,
            tz=rollout.timezone,
            country=rollout.country,
        )
    )


def store_snapshot(
    session: Session,
    rollout: Rollout,
    kind: SnapshotKind,
    current: dict[str, Observation],
    gate: GateResult | None,
    now: datetime,
) -> MetricSnapshot:
    snap = MetricSnapshot(
        rollout_id=rollout.id,
        kind=kind,
        taken_at=now,
        phase_index=rollout.phase_index,
        step_index=rollout.step_index,
        readings=snapshots.to_json(current),
        verdict=gate_json(gate) if gate is not None else {},
        passed=gate.passed if gate is not None else None,
    )
    session.add(snap)
    session.flush()
    return snap


def gate_json(gate: GateResult) -> dict[str, object]:
    def verdicts(items: tuple[MetricVerdict, ...]) -> list[dict[str, object]]:
        return [
            {
                "key": v.key,
                "name": v.name,
                "verdict": v.verdict.value,
                "value": v.value,
                "baseline": v.baseline,
                "change": v.change,
                "allowed": v.allowed,
                "reason": v.reason,
                "unit": v.unit,
            }
            for v in items
        ]

    return {
        "passed": gate.passed,
        "metrics": verdicts(gate.metrics),
        "triggers": verdicts(gate.triggers),
        "blockers": list(gate.blockers),
    }


def capture_baseline(svc: Services, rollout_id: int) -> None:
    """Measures every metric before exposure grows; relative and absolute rules compare to it."""
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    if rollout is None:
        return
    now = svc.clock()
    current, _controls, _ = read_metrics(svc, rollout, now)
    with svc.db.transaction() as session:
        store_snapshot(session, rollout, SnapshotKind.BASELINE, current, None, now)


def snapshot(svc: Services, actor: Actor, rollout: Rollout) -> Outcome:
    """The gate as it stands, without moving: anyone in the channel may look."""
    now = svc.clock()
    current, controls, _ = read_metrics(svc, rollout, now)
    with svc.db.transaction() as session:
        locked = queries.lock_rollout(session=session, rollout_id=rollout.id)
        if locked is None:
            raise RolloutNotFound("That rollout does not exist any more.")
        gate = evaluate(locked, current, baselines_for(session, locked, controls), now)
        snap = store_snapshot(session, locked, SnapshotKind.CHECK, current, gate, now)
        session.add(
            rollouts.event(
                locked, EventKind.SNAPSHOT, actor.user_id, now, snapshot_id=snap.id, passed=gate.passed
            )
        )
    return _outcome(locked, gate, None, may_override=False, snapshot_only=True)


def may_advance(svc: Services, actor: Actor, rollout_id: int) -> Rollout:
    """The rollout, if it is active and the actor may advance it; refused otherwise (before
    anything is read from Datadog or said about checking)."""
    rollout = load_for(svc, actor, rollout_id)
    rollouts.require_active(rollout, "advance")
    check_allowed(svc, actor, rollout, "advance")
    return rollout


def advance(svc: Services, actor: Actor, rollout: Rollout) -> Outcome:
    """Advances a rollout `may_advance` gave back, if the gate passes."""
    rollout_id = rollout.id
    where = Where.of(rollout)
    now = svc.clock()
    current, controls, _ = read_metrics(svc, rollout, now)
    with svc.db.transaction() as session:
        locked = _lock_at(session, rollout_id, where)
        gate = evaluate(locked, current, baselines_for(session, locked, controls), now)
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
            return _outcome(locked, gate, None, may_override=True)
        moved = _move(svc, session, locked, actor, now, EventKind.ADVANCED, snapshot_id=snap.id)
    return _outcome(locked, gate, moved, may_override=True, where=where)


def override(svc: Services, actor: Actor, token: str, reason: str) -> rollouts.Moved:
    """ "Advance anyway": the owner or an approver moves past a blocked gate, with a reason
    that goes into the timeline and the announcement."""
    rollout_id, where = Where.parse(token)
    rollout = load_for(svc, actor, rollout_id)
    check_allowed(svc, actor, rollout, "override the gate of")
    now = svc.clock()
    with svc.db.transaction() as session:
        locked = _lock_at(session, rollout_id, where)
        last = queries.latest_snapshot(session=session, rollout_id=rollout_id, kind=SnapshotKind.GATE)
        blockers = list((last.verdict or {}).get("blockers", [])) if last is not None else []
        return _move(svc, session, locked, actor, now, EventKind.OVERRIDDEN, reason=reason, blockers=blockers)


def _lock_at(session: Session, rollout_id: int, where: Where) -> Rollout:
    locked = queries.lock_rollout(session=session, rollout_id=rollout_id)
    if locked is None:
        raise RolloutNotFound("That rollout does not exist any more.")
    rollouts.require_active(locked, "advance")
    if Where.of(locked) != where:
        raise AlreadyMoved(
            "*{feature}* already moved: it is now at {step} of {phase}. Nothing else changed.",
            feature=locked.feature,
            step=rollouts.display_title(locked.current_step),
            phase=locked.current_phase.name,
        )
    return locked


def _move(
    svc: Services,
    session: Session,
    rollout: Rollout,
    actor: Actor,
    now: datetime,
    kind: EventKind,
    **data: Any,
) -> rollouts.Moved:
    moved = rollouts.move_forward(rollout, now)
    session.add(
        rollouts.event(
            rollout, kind, actor.user_id, now, from_step=moved.from_title, to_step=moved.to_title, **data
        )
    )
    if moved.phase_completed:
        session.add(
            rollouts.event(
                rollout, EventKind.PHASE_COMPLETED, actor.user_id, now, phase=moved.phase_completed
            )
        )
    if moved.completed:
        session.add(rollouts.event(rollout, EventKind.COMPLETED, actor.user_id, now))
        announcing.announce(session, rollout, "completed", "completed", now, actor=actor.user_id)
    else:
        announcing.announce(
            session,
            rollout,
            "advanced",
            announcing.step_key(rollout),
            now,
            actor=actor.user_id,
            phase_done=moved.phase_completed,
            override=kind is EventKind.OVERRIDDEN,
            reason=data.get("reason", ""),
            blockers=data.get("blockers", []),
        )
    jobs.reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
    return moved


def _outcome(
    rollout: Rollout,
    gate: GateResult,
    moved: rollouts.Moved | None,
    *,
    may_override: bool,
    snapshot_only: bool = False,
    where: Where | None = None,
) -> Outcome:
    return Outcome(
        rollout_id=rollout.id,
        feature=rollout.feature,
        tz=rollout.timezone,
        step_title=moved.from_title if moved else rollouts.display_title(rollout.current_step),
        gate=gate,
        moved=moved,
        where=where or Where.of(rollout),
        may_override=may_override and not gate.passed,
        snapshot_only=snapshot_only,
    )
