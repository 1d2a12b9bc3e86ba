"""A rollout plan: phases of steps, checklists, success metrics and rollback triggers.

Plain frozen dataclasses. A template is a Plan; a rollout copies its Plan when it starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Rule(StrEnum):
    """How a metric's threshold is read. Each has one unambiguous meaning."""

    RELATIVE = "relative"  # change vs baseline in percent of the baseline: +10 % of 200 ms
    ABSOLUTE = "absolute"  # change vs baseline in the metric's own unit (pp for a rate)
    UPPER = "upper"  # the value itself must stay at or below the threshold
    LOWER = "lower"  # the value itself must stay at or above the threshold
    ZERO = "zero"  # the value must be exactly zero (e.g. a count of wrong-type records)


MANN_WHITNEY = "mann-whitney"
JUDGES = (MANN_WHITNEY,)  # the statistical judgements a metric may be marked with (`judge`)


class Direction(StrEnum):
    """Which way a change is bad."""

    UP = "up"
    DOWN = "down"


class Comparison(StrEnum):
    """Whether a value exactly at the threshold keeps the rule (and so does not fire a trigger).

    A plan that writes "<0.1% increase", "less than" or "under" means STRICT: exactly +0.1 pp
    breaks it. One that writes "≤", "at most" or "no more than" means INCLUSIVE. A trigger
    written "more than 0.5 pp" fires above 0.5 pp only, so its rule is INCLUSIVE; one written
    "0.5 pp or more" / "at least 0.5 pp" fires at 0.5 pp, so its rule is STRICT.
    """

    INCLUSIVE = "inclusive"
    STRICT = "strict"


@dataclass(frozen=True)
class Metric:
    """A number read from Datadog and the rule it must keep.

    As a success criterion it must pass to advance; as a rollback trigger, breaking it fires
    the trigger. `query` may hold `{feature}`, `{flag}` and `{service}` placeholders.
    """

    key: str
    name: str
    query: str
    rule: Rule
    threshold: float = 0.0
    bad: Direction = Direction.UP
    aggregator: str = "avg"
    window_minutes: int = 60
    unit: str = ""
    control_query: str = ""  # same query on the control cohort; empty = stored baseline
    # A formula metric (bot/domain/formulas.py): named queries, sent with `formula` as one
    # Datadog request; `query` is then empty. `min_count` = (query name, least count in the
    # window) below which the reading is "not enough traffic yet".
    queries: tuple[tuple[str, str], ...] = ()
    formula: str = ""
    control_queries: tuple[tuple[str, str], ...] = ()  # the same names on the control cohort
    min_count: tuple[str, float] | None = None
    # "mann-whitney": judged by the statistical canary test (bot/domain/canary.py) instead of
    # `rule`/`threshold`; `critical` fails the whole judgement when it fails, `weight` scores it.
    judge: str = ""
    critical: bool = False
    weight: float = 1.0
    # Metrics stored before comparisons existed have none: they were inclusive, and stay so.
    comparison: Comparison = Comparison.INCLUSIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metric:
        """From stored JSON or a template's TOML. Old rows lack the newer keys and get their
        defaults; TOML may write `queries` and `min_count` as tables ({errors = "…"})."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.setdefault("query", "")  # a formula metric has named queries instead
        known["rule"] = Rule(known["rule"])
        known["bad"] = Direction(known.get("bad", "up"))
        for field_name in ("queries", "control_queries"):
            if field_name in known:
                known[field_name] = _pairs(known[field_name])
        if known.get("min_count"):
            ((name, count),) = (
                _pairs(known["min_count"]) if isinstance(known["min_count"], dict) else (known["min_count"],)
            )
            known["min_count"] = (str(name), float(count))
        else:
            known["min_count"] = None
        known["comparison"] = Comparison(known.get("comparison") or Comparison.INCLUSIVE)
        return cls(**known)

    @property
    def is_formula(self) -> bool:
        return bool(self.queries)


def _pairs(value: Any) -> tuple[tuple[str, Any], ...]:
    items = value.items() if isinstance(value, dict) else value
    return tuple((str(name), text) for name, text in items)


@dataclass(frozen=True)
class Step:
    percent: float
    desired_users: int | None = None
    min_business_days: float = 0.0
    label: str = ""  # e.g. "internal" for a step that is not a share of users
    advance: str = ""  # "auto" | "manual": how a move into this step happens; "" = the phase's

    @property
    def title(self) -> str:
        return self.label or f"{self.percent:g}%"


@dataclass(frozen=True)
class Phase:
    name: str
    steps: tuple[Step, ...]
    description: str = ""
    duration: str = ""
    tasks: tuple[str, ...] = ()
    exit_criteria: tuple[str, ...] = ()
    dates: str = ""  # the planned date range as the team wrote it, e.g. "3/11/24 - 3/25/24"
    advance: str = ""  # "auto" | "manual" for its steps (bot/domain/windows.py); "" = the plan's


@dataclass(frozen=True)
class SuccessMetricRow:
    """A row of the plan document's success-metrics table, kept as the team wrote it."""

    metric: str
    baseline: str
    target: str
    method: str


@dataclass(frozen=True)
class Plan:
    name: str
    title: str
    phases: tuple[Phase, ...]
    description: str = ""
    metrics: tuple[Metric, ...] = ()
    triggers: tuple[Metric, ...] = ()
    manual_triggers: tuple[str, ...] = ()
    success_table: tuple[SuccessMetricRow, ...] = field(default=())
    # What an imported plan document says beyond the phases, kept as the team wrote it:
    header: tuple[tuple[str, str], ...] = ()  # the document's **Field:** value lines, in order
    strategy: str = ""  # the "Rollout Strategy" paragraph
    availability: str = ""  # how the feature is limited in production, e.g. "feature toggle"
    # What a fired rollback trigger does: "pause" the rollout for people to decide, or
    # "rollback" by itself, feature flag first (as Flagger and Argo Rollouts abort a rollout).
    on_trigger: str = "pause"
    # How its steps are reached when a rollout's auto-advance is on (bot/domain/windows.py):
    # "auto" by the due-work tick when the gate is green, "manual" only by a person.
    advance: str = "auto"

    @property
    def owner(self) -> str:
        """The header's Owner, unless it is still a template placeholder like "[PM Name]"."""
        value = dict(self.header).get("Owner", "")
        return "" if value.startswith("[") and value.endswith("]") else value

    @property
    def percents(self) -> list[float]:
        return [step.percent for phase in self.phases for step in phase.steps]
