"""A rollout as the plan document it started from, with what happened filled in: the
`RolloutResults` of bot/domain/plans/results.py read from the rollout's events and snapshots."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.domain.plans.catalog import plan_from_dict
from bot.domain.plans.model import Metric, Plan
from bot.domain.plans.results import (
    Decision,
    PhaseResults,
    Reading,
    RolloutResults,
    Snapshot,
    StepReached,
    Tick,
)
from bot.services import Services
from bot.usecases import charting
from messages.plan_document import export_plan
from messages.views import Chart
from storage import queries
from storage.enums import EventKind, SnapshotKind
from storage.models import Event, MetricSnapshot, Phase, Rollout

log = logging.getLogger(__name__)

# How each decision reads in the export; {from_step}/{to_step}/{step} come from the event.
DECISIONS = {
    EventKind.ADVANCED: "Advanced from {from_step} to {to_step}",
    EventKind.OVERRIDDEN: "Advanced anyway from {from_step} to {to_step}",
    EventKind.PAUSED: "Paused at {step}",
    EventKind.RESUMED: "Resumed at {step}",
    EventKind.ROLLED_BACK: "Rolled back at {step}",
    EventKind.COMPLETED: "Completed",
    EventKind.TRIGGER_FIRED: "Rollback trigger fired: {trigger}",
    EventKind.FLAG_SET: "Flag {flag} set {before} → {after}",
    EventKind.FLAG_WRITE_FAILED: "Flag {flag} not set {before} → {wanted} (refused by {provider})",
    EventKind.FLAG_DRIFT: "Flag {flag} found at {flag_says} while the plan says {plan_says}",
    EventKind.FLAG_ADOPTED: "Flag {flag} kept at {percent} (the plan says {plan_says})",
}
PERCENTS = ("before", "after", "wanted", "flag_says", "plan_says", "percent")


def current_plan(rollout: Rollout) -> Plan:
    """The plan as the rollout runs it: its copy, with the metrics as last edited."""
    return replace(
        plan_from_dict(rollout.plan_doc),
        metrics=tuple(Metric.from_dict(m) for m in rollout.metrics),
        triggers=tuple(Metric.from_dict(t) for t in rollout.triggers),
    )


def _window(phase: Phase, at: datetime) -> bool:
    if phase.started_at is None or at < phase.started_at:
        return False
    return phase.completed_at is None or at <= phase.completed_at


def _decision(event: Event) -> Decision | None:
    form = DECISIONS.get(event.kind)
    if form is None:
        return None
    data = {"from_step": "", "to_step": "", "step": "", "trigger": "", **event.data}
    for key in PERCENTS:
        if key in data:
            data[key] = "unknown" if data[key] is None else f"{float(data[key]):g}%"
    return Decision(
        at=event.at,
        user=event.actor_id or "Rollout Bot",
        text=form.format(**data),
        reason=str(event.data.get("reason", "")),
    )


def _snapshot(snap: MetricSnapshot) -> Snapshot:
    verdicts = [*snap.verdict.get("metrics", []), *snap.verdict.get("triggers", [])]
    return Snapshot(
        taken_at=snap.taken_at,
        readings=tuple(
            Reading(
                metric=v["name"],
                value=v.get("value"),
                baseline=v.get("baseline"),
                allowed=v.get("allowed", ""),
                verdict=_verdict(v),
                unit=v.get("unit", ""),
            )
            for v in verdicts
        ),
    )


def results_of(
    rollout: Rollout, events: Sequence[Event], snapshots: Sequence[MetricSnapshot]
) -> RolloutResults:
    phases = []
    for phase in rollout.phases:
        decisions = [d for e in events if _window(phase, e.at) and (d := _decision(e)) is not None]
        phases.append(
            PhaseResults(
                started=phase.started_at,
                completed=phase.completed_at,
                left_by_override=phase.left_by_override,
                steps=tuple(
                    StepReached(
                        title=s.label or f"{s.percent:g}%", users=s.desired_users, reached_at=s.started_at
                    )
                    for s in phase.steps
                    if s.started_at is not None
                ),
                checked={
                    i.text: Tick(user=i.checked_by or "", at=i.checked_at)
                    for i in phase.items
                    if i.checked_at is not None
                },
                snapshots=tuple(
                    _snapshot(s)
                    for s in snapshots
                    if s.phase_index == phase.position
                    and s.kind in (SnapshotKind.GATE, SnapshotKind.CHECK)
                    and s.verdict
                ),
                decisions=tuple(decisions),
            )
        )
    return RolloutResults(phases=tuple(phases), time_zone=rollout.timezone)


def export(svc: Services, rollout_id: int, charts: Sequence[Chart] = ()) -> tuple[Rollout, str]:
    """The filled plan document; `charts` are referenced by file name from a Charts section
    (the caller saves or uploads them beside it)."""
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        events = queries.events(session=session, rollout_id=rollout_id)
        snaps = queries.snapshots(session=session, rollout_id=rollout_id)
    results = results_of(rollout, events, snaps)
    named = [(c.title, c.filename) for c in charts]
    return rollout, export_plan(current_plan(rollout), results=results, charts=named)


def export_charts(svc: Services, rollout_id: int) -> tuple[list[Chart], str]:
    """The charts a retrospective wants beside the document: the progress, and the newest
    gate check. Returns them, and why any is missing ("" when none is)."""
    out: list[Chart] = []
    try:
        progress = charting.progress_chart(svc, rollout_id)
        gate = charting.gate_chart(svc, rollout_id, live=False)
    except Exception:  # a document without pictures is still the document
        log.exception("charts of rollout %s could not be drawn for the export", rollout_id)
        return [], "the charts could not be drawn"
    out += [progress] if progress is not None else []
    out += [gate[1]] if gate is not None and gate[0].panels else []
    return out, ""


def _verdict(verdict: dict[str, Any]) -> str:
    """A judged metric's verdict carries its test: "pass: +0.04 points (98% interval …) — …"."""
    judged = verdict.get("judgement")
    summary = judged.get("summary") if isinstance(judged, dict) else None
    said = str(verdict.get("verdict", ""))
    return f"{said}: {summary}" if summary else said
