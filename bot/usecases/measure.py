"""Measuring a rollout: its metrics as Datadog queries, the readings back as gate inputs, the gate
evaluated and stored as a snapshot, and the baseline captured at start."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from bot.domain import canary, rollouts
from bot.domain.gates import GateInput, GateResult, MetricVerdict, Observation, evaluate_gate
from bot.domain.plans.model import Metric
from bot.metrics import MetricQuery, MetricReading, MetricsSource
from bot.metrics.links import explorer_url
from bot.services import Services
from storage import job_queries
from storage.dbapi_statements import Fixed
from storage.enums import SnapshotKind
from storage.models import MetricSnapshot, Rollout, Step
from storage.rows import plain

NOT_CONFIGURED = "Datadog is not configured (set DD_API_KEY and DD_APP_KEY)"
CONTROL_SUFFIX = "#control"


def fill(query: str, *, feature: str, flag: str | None, service: str | None) -> str:
    """Fills `{feature}`, `{flag}`, `{service}` and nothing else: Datadog's own `{...}` scopes
    must survive, so this is not str.format."""
    return (
        query.replace("{feature}", feature)
        .replace("{flag}", flag or feature)
        .replace("{service}", service or feature)
    )


@dataclass(frozen=True)
class Plan:
    """What to ask Datadog for one snapshot: each distinct query once."""

    queries: tuple[MetricQuery, ...]
    by_key: dict[str, str]  # metric key -> query name
    control_by_key: dict[str, str]  # metric key -> query name of its control cohort


def plan_queries(metrics: Iterable[Metric], *, feature: str, flag: str | None, service: str | None) -> Plan:
    names: dict[MetricQuery, str] = {}  # by the spec (a query without its name)
    queries: list[MetricQuery] = []
    by_key: dict[str, str] = {}
    control_by_key: dict[str, str] = {}

    def name_for(query: str, parts: tuple[tuple[str, str], ...], metric: Metric, label: str) -> str:
        def filled(text: str) -> str:
            return fill(text, feature=feature, flag=flag, service=service)

        wanted = MetricQuery(
            name=label,
            query=filled(query),
            aggregator=metric.aggregator,
            window_seconds=metric.window_minutes * 60,
            queries=tuple((name, filled(text)) for name, text in parts),
            formula=metric.formula if parts else "",
            count_of=metric.min_count[0] if parts and metric.min_count else "",
            series_points=canary.series_points(metric),
        )
        # Everything but the name: equal specs are asked once. (A copy without the name, not
        # `astuple`, which deep-copies every field, in each ready check and watch.)
        spec = replace(wanted, name="")
        if spec not in names:
            names[spec] = label
            queries.append(wanted)
        return names[spec]

    for metric in metrics:
        by_key[metric.key] = name_for(metric.query, metric.queries, metric, metric.key)
        if metric.control_query or metric.control_queries:
            control_by_key[metric.key] = name_for(
                metric.control_query, metric.control_queries, metric, metric.key + CONTROL_SUFFIX
            )
    return Plan(tuple(queries), by_key, control_by_key)


def trigger_plan(
    metrics: Iterable[Metric],
    triggers: Iterable[Metric],
    *,
    feature: str,
    flag: str | None,
    service: str | None,
) -> Plan:
    """The queries of the rollback triggers alone, each named as the gate names it (success
    metrics first): a trigger that reads the same query as a success metric is the same
    reading under the same name in the watch and in the gate. Only the triggers' queries are
    asked for."""
    triggers = list(triggers)
    full = plan_queries([*metrics, *triggers], feature=feature, flag=flag, service=service)
    by_key = {t.key: full.by_key[t.key] for t in triggers}
    control_by_key = {t.key: full.control_by_key[t.key] for t in triggers if t.key in full.control_by_key}
    wanted = {*by_key.values(), *control_by_key.values()}
    return Plan(tuple(q for q in full.queries if q.name in wanted), by_key, control_by_key)


def take(source: MetricsSource | None, plan: Plan, now: datetime) -> dict[str, MetricReading]:
    if not plan.queries:
        return {}
    if source is None:
        return {q.name: MetricReading(q.name, None, problem=NOT_CONFIGURED) for q in plan.queries}
    readings = source.snapshot(plan.queries, now=now)
    missing = {q.name for q in plan.queries} - readings.keys()
    for name in missing:
        readings[name] = MetricReading(name, None, problem="Datadog gave no answer for this query")
    return readings


def observation(reading: MetricReading | None, metric: Metric | None = None) -> Observation:
    if reading is None:
        return Observation(None, "no reading was taken")
    if metric is not None and metric.min_count:
        short = canary.short_of_traffic(metric, reading.count, has_value=reading.value is not None)
        if short:
            return Observation(None, short)
    return Observation(reading.value, reading.problem, reading.series)


def by_metric(
    plan: Plan, readings: Mapping[str, MetricReading], metrics: Mapping[str, Metric] | None = None
) -> dict[str, Observation]:
    """Each metric's observation; with `metrics`, a minimum of traffic is applied."""
    known = metrics or {}
    return {key: observation(readings.get(name), known.get(key)) for key, name in plan.by_key.items()}


def controls(
    plan: Plan, readings: Mapping[str, MetricReading], metrics: Mapping[str, Metric] | None = None
) -> dict[str, Observation]:
    known = metrics or {}
    return {key: observation(readings.get(name), known.get(key)) for key, name in plan.control_by_key.items()}


def to_json(observations: Mapping[str, Observation]) -> dict[str, Any]:
    return {
        key: {"value": o.value, "problem": o.problem, "series": list(o.series)}
        for key, o in observations.items()
    }


def from_json(data: Mapping[str, Any]) -> dict[str, Observation]:
    return {
        key: Observation(v.get("value"), v.get("problem"), tuple(v.get("series") or ()))
        for key, v in data.items()
    }


def metrics_of(rollout: Rollout) -> tuple[list[Metric], list[Metric]]:
    return (
        [Metric.from_dict(m) for m in rollout.metrics],
        [Metric.from_dict(t) for t in rollout.triggers],
    )


def explorer_links(svc: Services, rollout: Rollout, now: datetime) -> tuple[tuple[str, str], ...]:
    """(metric key, Datadog metric explorer URL) for each metric and trigger whose query names a
    metric; none when Datadog is not configured (there is nothing to open)."""
    if not svc.settings.datadog_configured:
        return ()
    metrics, triggers = metrics_of(rollout)
    out: dict[str, str] = {}
    for metric in (*metrics, *triggers):
        query = metric.query or "; ".join(text for _, text in metric.queries)
        filled = fill(query, feature=rollout.feature, flag=rollout.flag_key, service=rollout.service)
        url = explorer_url(
            svc.settings.dd_site, filled, end=now, window=timedelta(minutes=metric.window_minutes)
        )
        if url is not None:
            out.setdefault(metric.key, url)
    return tuple(out.items())


def read_metrics(
    svc: Services, rollout: Rollout, now: datetime
) -> tuple[dict[str, Observation], dict[str, Observation], dict[str, MetricReading]]:
    metrics, triggers = metrics_of(rollout)
    plan = plan_queries(
        [*metrics, *triggers], feature=rollout.feature, flag=rollout.flag_key, service=rollout.service
    )
    readings = take(svc.metrics, plan, now)
    keyed = {m.key: m for m in [*metrics, *triggers]}
    return by_metric(plan, readings, keyed), controls(plan, readings, keyed), readings


def baselines_for(
    session: Session, rollout: Rollout, controls: dict[str, Observation]
) -> dict[str, Observation]:
    """The control cohort measured now where a metric has one (as Kayenta compares), else the
    baseline stored when the rollout started."""
    return {**stored_baselines(session, rollout.id), **controls}


def stored_baselines(session: Session, rollout_id: int) -> dict[str, Observation]:
    """The baseline stored when the rollout started (what `baselines_for` falls back to), each
    metric that could not be measured then with the hint to measure it again."""
    stored = job_queries.baseline_readings(session=session, rollout_id=rollout_id)
    baselines = from_json(stored) if stored is not None else {}
    for key, seen in baselines.items():
        if seen.value is None:
            hint = (
                f"it could not be measured at start ({seen.problem}); `/rollout baseline` measures it again"
            )
            baselines[key] = Observation(None, hint)
    return baselines


def evaluate(
    rollout: Rollout, current: dict[str, Observation], baselines: dict[str, Observation], now: datetime
) -> GateResult:
    step, unchecked = rollout.current_step, rollouts.unchecked_exit_criteria(rollout)
    return evaluate_at(rollout, step, unchecked, current, baselines, now)


def evaluate_at(
    rollout: Rollout,
    step: Step,
    unchecked: Sequence[str],
    current: dict[str, Observation],
    baselines: dict[str, Observation],
    now: datetime,
) -> GateResult:
    """The gate of `evaluate`, given the rollout's row, its current step and the exit criteria
    still open (those that gate this advance): for a caller that did not load the plan."""
    metrics, triggers = metrics_of(rollout)
    return evaluate_gate(
        GateInput(
            metrics=metrics,
            triggers=triggers,
            readings=current,
            baselines=baselines,
            unchecked_exit_criteria=list(unchecked),
            step_title=rollouts.display_title(step),
            step_started_at=rollout.step_started_at,
            min_business_days=step.min_business_days,
            now=now,
            tz=rollout.timezone,
            country=rollout.country,
        )
    )


def _snapshot_values(
    rollout: Rollout,
    kind: SnapshotKind,
    current: dict[str, Observation],
    gate: GateResult | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "rollout_id": rollout.id,
        "kind": kind,
        "taken_at": now,
        "phase_index": rollout.phase_index,
        "step_index": rollout.step_index,
        "readings": to_json(current),
        "verdict": gate_json(gate) if gate is not None else {},
        "passed": gate.passed if gate is not None else None,
    }


def store_snapshot(
    session: Session,
    rollout: Rollout,
    kind: SnapshotKind,
    current: dict[str, Observation],
    gate: GateResult | None,
    now: datetime,
) -> MetricSnapshot:
    snap = MetricSnapshot(**_snapshot_values(rollout, kind, current, gate, now))
    session.add(snap)
    session.flush()
    return snap


def record_snapshot(
    session: Session,
    rollout: Rollout,
    kind: SnapshotKind,
    current: dict[str, Observation],
    gate: GateResult | None,
    now: datetime,
) -> None:
    """`store_snapshot` for a caller that needs nothing of the row back: one prepared INSERT."""
    _INSERT_SNAPSHOT.run(session, _snapshot_values(rollout, kind, current, gate, now))


# Run on the DBAPI connection of the caller's transaction (`storage.dbapi_statements`): the
# ready check records one in every run of the due-work tick.
_SNAPSHOT_COLUMNS = (
    "rollout_id",
    "kind",
    "taken_at",
    "phase_index",
    "step_index",
    "readings",
    "verdict",
    "passed",
)
_INSERT_SNAPSHOT = Fixed(insert(cast("Table", MetricSnapshot.__table__)), _SNAPSHOT_COLUMNS)


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
                # Only judged metrics carry the test, so other rows stay as they were.
                **(
                    {"judgement": {**v.judgement.to_json(), "summary": v.judgement.summary(v.unit)}}
                    if v.judgement is not None
                    else {}
                ),
            }
            for v in items
        ]

    judgement = gate.judgement
    return {
        "passed": gate.passed,
        "metrics": verdicts(gate.metrics),
        "triggers": verdicts(gate.triggers),
        "blockers": list(gate.blockers),
        **(
            {
                "judgement": {
                    "score": judgement.value,
                    "verdict": judgement.verdict.value,
                    "reason": judgement.reason,
                }
            }
            if judgement is not None
            else {}
        ),
    }


def baseline_plan(metrics: Sequence[Metric], *, feature: str, flag: str | None, service: str | None) -> Plan:
    """What a baseline asks Datadog for: each metric's own query, not its control cohort (the
    gate reads the cohort live), and a series only where a gate reads the stored one, i.e. a
    judged metric without a control cohort (`canary.judge`); every other query asks for its
    value alone (`series_points` 0). Charts, reports and exports show no baseline's series."""
    full = plan_queries(metrics, feature=feature, flag=flag, service=service)
    serial = {full.by_key[m.key] for m in metrics if m.judge and not (m.control_query or m.control_queries)}
    wanted = set(full.by_key.values())
    return Plan(
        tuple(
            q if q.name in serial else replace(q, series_points=0) for q in full.queries if q.name in wanted
        ),
        full.by_key,
        {},
    )


def capture_baseline(svc: Services, rollout_id: int) -> None:
    """Measures every metric before exposure grows; relative and absolute rules compare to it.

    Its read and its one INSERT run on a bare connection (`Database.connected`, `writing`): the
    snapshot is no change of the rollout's (no Event, nothing queued), and an ORM session
    around two statements cost more than they did."""
    with svc.db.connected() as conn:
        # The columns it takes (metrics, triggers, names, position): not the plan's JSON.
        row = _BASELINE_INPUTS.first_named(conn, {"rollout_id": rollout_id})
    if row is None:
        return
    rollout: Rollout = plain(Rollout, row)
    now = svc.clock()
    metrics, triggers = metrics_of(rollout)
    every = [*metrics, *triggers]
    plan = baseline_plan(every, feature=rollout.feature, flag=rollout.flag_key, service=rollout.service)
    current = by_metric(plan, take(svc.metrics, plan, now), {m.key: m for m in every})
    with svc.db.writing() as conn:
        _INSERT_SNAPSHOT.run(conn, _snapshot_values(rollout, SnapshotKind.BASELINE, current, None, now))


_row = cast("Table", Rollout.__table__).c
_BASELINE_INPUTS = Fixed(
    select(
        _row.id,
        _row.feature,
        _row.flag_key,
        _row.service,
        _row.metrics,
        _row.triggers,
        _row.phase_index,
        _row.step_index,
    ).where(_row.id == bindparam("rollout_id"))
)
