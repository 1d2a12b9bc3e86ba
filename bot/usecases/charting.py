"""Charts of a rollout, as read models built from its rows and rendered to PNG
(messages/charts.py): a gate check's metrics over the gate's window, and the rollout's progress.

A gate check's chart reads what the gate already stored: each metric's value, baseline and
verdict, and the canary series read with it (`MetricSnapshot.readings`). The series carries no
timestamps (Datadog's points at an even interval over the metric's window, missing ones
dropped), so its points are spread evenly over the window that ended when the check was taken.
The control cohort's series is not stored; for a check just taken it is read once more over
the same window (`live`), else the control's value is drawn as a level like a baseline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.domain import rollouts
from bot.domain.limits import limit_value
from bot.domain.plans.model import Metric
from bot.services import Services
from bot.usecases import measure
from messages import charts
from messages.views import Chart, GateChartView, Marker, MetricPanel, Point, ProgressChartView
from storage import queries
from storage.enums import EventKind, SnapshotKind
from storage.models import Event, MetricSnapshot, Rollout

MARKERS = {
    EventKind.STARTED: "step",
    EventKind.ADVANCED: "step",
    EventKind.OVERRIDDEN: "step",
    EventKind.PAUSED: "pause",
    EventKind.RESUMED: "resume",
    EventKind.ROLLED_BACK: "rollback",
}
WORSE = {"fail": 2, "no data": 1, "pass": 0}
CHECKS = (SnapshotKind.GATE, SnapshotKind.CHECK)


def slug(feature: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", feature).strip("-") or "rollout"


# --- read models -------------------------------------------------------------------------------


def spread(series: Sequence[float | None], start: datetime, end: datetime) -> tuple[Point, ...]:
    """Evenly spaced points from `start` to `end` (one point sits at `end`)."""
    if not series:
        return ()
    if len(series) == 1:
        return ((end, series[0]),)
    step = (end - start) / (len(series) - 1)
    return tuple((start + step * i, value) for i, value in enumerate(series))


def markers_of(events: Iterable[Event]) -> tuple[Marker, ...]:
    out = []
    for event in events:
        kind = MARKERS.get(event.kind)
        if kind is None:
            continue
        label = {
            "step": str(event.data.get("to_step") or "started"),
            "pause": "paused",
            "resume": "resumed",
            "rollback": "rolled back",
        }[kind]
        out.append(Marker(event.at, kind, label))
    return tuple(out)


def _step_title(rollout: Rollout, phase_index: int, step_index: int) -> str:
    try:
        return rollouts.display_title(rollout.phases[phase_index].steps[step_index])
    except IndexError:
        return "an earlier step"


def _title(rollout: Rollout, snap: MetricSnapshot) -> str:
    step = _step_title(rollout, snap.phase_index, snap.step_index)
    blockers = len((snap.verdict or {}).get("blockers", []))
    why = f" ({blockers} blocker{'s' if blockers != 1 else ''})" if blockers else ""
    if snap.kind is SnapshotKind.CHECK:
        return f"the gate {'would pass' if snap.passed else 'would not pass'} at {step}{why}"
    return f"gate {'passed' if snap.passed else 'closed'} at {step}{why}"


def gate_view(
    rollout: Rollout,
    snap: MetricSnapshot,
    events: Iterable[Event],
    control_series: Mapping[str, Sequence[float]] | None = None,
) -> GateChartView:
    """A stored gate check as a chart: one panel per query its metrics and triggers read."""
    metrics, triggers = measure.metrics_of(rollout)
    plan = measure.plan_queries(
        [*metrics, *triggers], feature=rollout.feature, flag=rollout.flag_key, service=rollout.service
    )
    verdict = snap.verdict or {}
    judged = {v["key"]: v for v in [*verdict.get("metrics", []), *verdict.get("triggers", [])]}
    end = snap.taken_at
    window = max((m.window_minutes for m in [*metrics, *triggers]), default=60)
    start = end - timedelta(minutes=window)
    panels: dict[str, dict[str, Any]] = {}
    for metric, role in [
        *((m, "success metric") for m in metrics),
        *((t, "rollback trigger") for t in triggers),
    ]:
        seen = judged.get(metric.key)
        if seen is None:  # added after this check was taken
            continue
        query = plan.by_key.get(metric.key, metric.key)
        panel = panels.setdefault(query, _panel_start(metric, seen, snap, control_series, end))
        panel["roles"].append(role)
        if WORSE.get(str(seen.get("verdict")), 1) > WORSE.get(panel["verdict"], 1):
            panel["verdict"] = str(seen.get("verdict"))
            panel["problem"] = seen.get("reason") if seen.get("value") is None else panel["problem"]
        limit = limit_value(metric, seen.get("baseline"))
        panel["trigger_limit" if role == "rollback trigger" else "limit"] = limit
    return GateChartView(
        feature=rollout.feature,
        title=_title(rollout, snap),
        tz=rollout.timezone,
        start=start,
        end=end,
        panels=tuple(
            MetricPanel(role=" and ".join(dict.fromkeys(p.pop("roles"))), **p) for p in panels.values()
        ),
        markers=markers_of(events),
    )


def _panel_start(
    metric: Metric,
    seen: Mapping[str, Any],
    snap: MetricSnapshot,
    control_series: Mapping[str, Sequence[float]] | None,
    end: datetime,
) -> dict[str, Any]:
    start = end - timedelta(minutes=metric.window_minutes)
    reading = (snap.readings or {}).get(metric.key) or {}
    control = (control_series or {}).get(metric.key, ())
    return {
        "name": metric.name,
        "unit": metric.unit,
        "verdict": str(seen.get("verdict", "no data")),
        "roles": [],
        "canary": spread(list(reading.get("series") or ()), start, end),
        "value": seen.get("value"),
        "control": spread(list(control), start, end),
        "baseline": seen.get("baseline"),
        "baseline_label": "control" if metric.control_query else "baseline (at start)",
        "problem": seen.get("reason") if seen.get("value") is None else None,
    }


def progress_view(
    rollout: Rollout, events: Sequence[Event], snaps: Sequence[MetricSnapshot], now: datetime
) -> ProgressChartView:
    """The exposure as the steps were reached (0 after a rollback), pauses, and the first
    success metric at each gate check."""
    changes: list[tuple[datetime, float]] = []
    for phase in rollout.phases:
        for step in phase.steps:
            if step.started_at is not None:
                changes.append((step.started_at, 0.0 if step.label else float(step.percent)))
    paused: list[tuple[datetime, datetime]] = []
    since: datetime | None = None
    for event in events:
        if event.kind is EventKind.ROLLED_BACK:
            changes.append((event.at, 0.0))
        elif event.kind is EventKind.PAUSED and since is None:
            since = event.at
        elif event.kind is EventKind.RESUMED and since is not None:
            paused.append((since, event.at))
            since = None
    end = max([now, *(at for at, _ in changes)])
    if since is not None:
        paused.append((since, end))
    changes.sort(key=lambda change: change[0])
    start = min([rollout.created_at, *(at for at, _ in changes)])
    metrics, _ = measure.metrics_of(rollout)
    key = metrics[0] if metrics else None
    points: list[Point] = []
    baseline = None
    for snap in snaps:
        if key is None or snap.kind not in CHECKS:
            continue
        seen = next((v for v in (snap.verdict or {}).get("metrics", []) if v.get("key") == key.key), None)
        if seen is not None:
            points.append((snap.taken_at, seen.get("value")))
            baseline = seen.get("baseline", baseline)
    return ProgressChartView(
        feature=rollout.feature,
        tz=rollout.timezone,
        start=start,
        end=end,
        percent=tuple(changes),
        paused=tuple(paused),
        markers=tuple(m for m in markers_of(events) if m.kind == "rollback"),
        metric_name=key.name if key else "",
        metric_unit=key.unit if key else "",
        metric=tuple(points),
        metric_limit=limit_value(key, baseline) if key else None,
    )


# --- charts from the database ------------------------------------------------------------------


def _latest_check(session: Any, rollout_id: int) -> MetricSnapshot | None:
    found = [queries.latest_snapshot(session=session, rollout_id=rollout_id, kind=kind) for kind in CHECKS]
    present = [s for s in found if s is not None]
    return max(present, key=lambda s: (s.taken_at, s.id)) if present else None


def _control_series(svc: Services, rollout: Rollout, at: datetime) -> dict[str, tuple[float, ...]]:
    """The control cohorts' series over the check's window: a read of its own, as the gate
    keeps only their values."""
    metrics, triggers = measure.metrics_of(rollout)
    plan = measure.plan_queries(
        [m for m in [*metrics, *triggers] if m.control_query],
        feature=rollout.feature,
        flag=rollout.flag_key,
        service=rollout.service,
    )
    wanted = set(plan.control_by_key.values())
    if not wanted:
        return {}
    only = measure.Plan(tuple(q for q in plan.queries if q.name in wanted), {}, plan.control_by_key)
    readings = measure.take(svc.metrics, only, at)
    return {key: seen.series for key, seen in measure.controls(only, readings).items()}


def gate_chart(svc: Services, rollout_id: int, *, live: bool) -> tuple[GateChartView, Chart] | None:
    """The newest gate check of a rollout as a picture; None when it has none. `live`: the
    check was just taken, so the control cohorts' series are read for it."""
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        snap = _latest_check(session, rollout_id) if rollout is not None else None
        if rollout is None or snap is None:
            return None
        events = queries.events_between(
            session=session,
            rollout_id=rollout_id,
            after=snap.taken_at - timedelta(days=1),
            until=snap.taken_at,
        )
    controls = _control_series(svc, rollout, snap.taken_at) if live else {}
    view = gate_view(rollout, snap, events, controls)
    name = f"{slug(rollout.feature)}-gate-{snap.taken_at:%Y%m%d-%H%M%S}.png"
    return view, Chart(name, f"Gate check: {rollout.feature}", charts.gate_chart(view))


def progress_chart(svc: Services, rollout_id: int) -> Chart | None:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        if rollout is None:
            return None
        events = queries.events(session=session, rollout_id=rollout_id)
        snaps = queries.snapshots(session=session, rollout_id=rollout_id)
    now = svc.clock()
    view = progress_view(rollout, events, snaps, now)
    name = f"{slug(rollout.feature)}-progress-{now:%Y%m%d}.png"
    return Chart(name, f"Progress: {rollout.feature}", charts.progress_chart(view))
