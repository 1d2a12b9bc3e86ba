"""What a run of a plan adds to its exported document, phase by phase: when it started and
completed, the steps reached, the checklist ticks, the metric snapshots and the decisions.

Plain data, filled from the database by bot/usecases/exporting.py and written out by
messages/plan_document.py. The importer skips these "Results" sections: they describe a past
run, not a plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class StepReached:
    title: str  # Step.title, e.g. "25%" or "internal"
    users: int | None
    reached_at: datetime


@dataclass(frozen=True)
class Tick:
    user: str  # as it should read after "@"
    at: datetime


@dataclass(frozen=True)
class Reading:
    """One metric in one snapshot. `allowed` says the rule, e.g. "change vs baseline ≤ +0.1 pp"."""

    metric: str
    value: float | None
    baseline: float | None
    allowed: str
    verdict: str
    unit: str = ""


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    readings: tuple[Reading, ...]


@dataclass(frozen=True)
class Decision:
    """An advance, an override (with its reason), a pause, a resume, a rollback."""

    at: datetime
    user: str
    text: str
    reason: str = ""


@dataclass(frozen=True)
class PhaseResults:
    started: datetime | None = None
    completed: datetime | None = None
    left_by_override: bool = False  # left past a closed gate: skipped, not completed
    steps: tuple[StepReached, ...] = ()
    checked: Mapping[str, Tick] = field(default_factory=dict)  # checklist item text -> tick
    snapshots: tuple[Snapshot, ...] = ()
    decisions: tuple[Decision, ...] = ()


@dataclass(frozen=True)
class RolloutResults:
    """`phases[i]` is what happened in the plan's i-th phase; phases not reached may be left
    out. Times are written in `time_zone`."""

    phases: tuple[PhaseResults, ...]
    time_zone: str = "UTC"
