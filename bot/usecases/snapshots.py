"""Turning a rollout's metrics into Datadog queries and the readings back into gate inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain.gates import Observation
from bot.domain.plans.model import Metric
from bot.metrics import MetricQuery, MetricReading, MetricsSource

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
    names: dict[tuple[str, str, int], str] = {}
    queries: list[MetricQuery] = []
    by_key: dict[str, str] = {}
    control_by_key: dict[str, str] = {}

    def name_for(query: str, metric: Metric, label: str) -> str:
        spec = (
            fill(query, feature=feature, flag=flag, service=service),
            metric.aggregator,
            metric.window_minutes * 60,
        )
        if spec not in names:
            names[spec] = label
            queries.append(MetricQuery(name=label, query=spec[0], aggregator=spec[1], window_seconds=spec[2]))
        return names[spec]

    for metric in metrics:
        by_key[metric.key] = name_for(metric.query, metric, metric.key)
        if metric.control_query:
            control_by_key[metric.key] = name_for(metric.control_query, metric, metric.key + CONTROL_SUFFIX)
    return Plan(tuple(queries), by_key, control_by_key)


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


def observation(reading: MetricReading | None) -> Observation:
    if reading is None:
        return Observation(None, "no reading was taken")
    return Observation(reading.value, reading.problem, reading.series)


def by_metric(plan: Plan, readings: Mapping[str, MetricReading]) -> dict[str, Observation]:
    return {key: observation(readings.get(name)) for key, name in plan.by_key.items()}


def controls(plan: Plan, readings: Mapping[str, MetricReading]) -> dict[str, Observation]:
    return {key: observation(readings.get(name)) for key, name in plan.control_by_key.items()}


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
