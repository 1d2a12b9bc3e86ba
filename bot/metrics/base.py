"""What the rollout gate reads: metric queries, readings, and the sources that answer them.

A reading either carries a finite number or says, in words a release manager
understands, why it has none. The gate must treat "no number" as "do not advance".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class MetricQuery:
    name: str  # e.g. "error_rate"
    query: str  # Datadog metrics query, placeholders already filled
    aggregator: str = (
        "avg"  # as the Datadog v2 scalar "aggregator" accepts: avg|sum|min|max|last|percentile|...
    )
    window_seconds: int = 3600
    # A formula over named queries, sent as one request: `query` is then unused. `count_of`
    # names a query whose own total is read beside the formula (for a minimum of traffic).
    queries: tuple[tuple[str, str], ...] = ()
    formula: str = ""
    count_of: str = ""
    # Points of the timeseries; a judged metric wants more than a sparkline; 0: no series at all.
    series_points: int = 15

    @property
    def parts(self) -> tuple[tuple[str, str], ...]:
        """The (name, query) pairs Datadog gets: the single query is "a" with formula "a"."""
        return self.queries or (("a", self.query),)

    @property
    def formulas(self) -> tuple[str, ...]:
        """The value's formula first, then the counted query's total when there is one."""
        return (self.formula or "a", *((self.count_of,) if self.count_of else ()))


@dataclass(frozen=True)
class MetricReading:
    name: str
    value: float | None  # None = no data
    problem: str | None = None  # why there is no data, for a release manager
    series: tuple[float, ...] = ()  # recent points for a sparkline; may be empty
    unit: str | None = None
    count: float | None = None  # the total of the query named by `count_of`, when it was asked

    def __post_init__(self) -> None:
        # NaN compares False against every threshold, so it would slip through a
        # "block if error_rate > x" gate: refuse to build such a reading at all.
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"{self.name}: a reading's value must be a finite number, got {self.value!r}")
        if self.value is None and not self.problem:
            raise ValueError(f"{self.name}: a reading without a value must say why (problem)")


class MetricsSource(Protocol):
    def snapshot(self, queries: Sequence[MetricQuery], *, now: datetime) -> dict[str, MetricReading]: ...


def describe_window(seconds: int) -> str:
    """'1 h', '15 min', '90 s': how long a window is, for messages."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


class StaticMetricsSource(MetricsSource):
    """Values typed in by a person (terminal shell): no Datadog involved."""

    def __init__(
        self,
        values: Mapping[str, float | None],
        *,
        units: Mapping[str, str] | None = None,
    ) -> None:
        self._values = dict(values)
        self._units = dict(units or {})

    def snapshot(self, queries: Sequence[MetricQuery], *, now: datetime) -> dict[str, MetricReading]:
        return {query.name: self._reading(query.name) for query in queries}

    def _reading(self, name: str) -> MetricReading:
        value = self._values.get(name)
        if value is None:
            return MetricReading(name, None, problem=f"no value was entered for {name}")
        if not math.isfinite(value):
            return MetricReading(
                name,
                None,
                problem=f"the value entered for {name} is not a number ({value!r})",
            )
        return MetricReading(name, float(value), unit=self._units.get(name))
