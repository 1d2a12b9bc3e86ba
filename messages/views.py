"""Read models: what a message shows, as plain frozen values.

Messages render from these, never from database rows, so rendering cannot load anything and
this package knows nothing of the database. bot/usecases/views.py builds them from the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.domain.gates import GateResult
    from bot.domain.rollouts import Moved


@dataclass(frozen=True)
class ItemView:
    """One checklist item. `kind` is "task" or "exit"."""

    id: int
    text: str
    kind: str
    checked_by: str | None
    checked_at: datetime | None
    unchecked_by: str | None = None  # who took the tick away last, until the next tick
    unchecked_at: datetime | None = None

    @property
    def checked(self) -> bool:
        return self.checked_at is not None


@dataclass(frozen=True)
class StepView:
    position: int
    title: str  # "1%", "25%", or a label such as "internal"
    percent: float
    desired_users: int | None
    completed_at: datetime | None
    left_by_override: bool = False  # moved past a closed gate: skipped, not done


@dataclass(frozen=True)
class PhaseView:
    rollout_id: int
    position: int
    name: str
    completed_at: datetime | None
    steps: tuple[StepView, ...]
    items: tuple[ItemView, ...]
    left_by_override: bool = False  # left past a closed gate: "skipped by override", never done


@dataclass(frozen=True)
class RolloutView:
    """A rollout with its plan, as one message shows it. `status` is the status's value
    ("active", "paused", "rolled_back", "completed"); `is_open` says whether it still runs."""

    id: int
    feature: str
    template: str
    plan_title: str
    owner_id: str
    approvers: tuple[str, ...]
    channel_id: str
    status: str
    is_open: bool
    revision: int
    timezone: str
    country: str
    flag_key: str | None
    service: str | None
    stakeholder_channels: tuple[str, ...]
    phase_index: int
    step_index: int
    step_started_at: datetime
    updated_at: datetime
    digest: str
    digest_time: str
    phases: tuple[PhaseView, ...]
    # The flag as the bot last saw it (all None when no flag service runs it) and what the plan
    # wants it to say now.
    flag_percent: float | None = None
    flag_plan_percent: float = 0.0
    flag_adopted_percent: float | None = None
    flag_problem: str | None = None
    flag_pending: float | None = None
    # The last pause or rollback: who (None: the bot), when, why.
    stopped_by: str | None = None
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    # Auto-advance (bot/domain/windows.py): on or off, and when the tick looks next and why it
    # waits (None: it waits for a person).
    auto_on: bool = False
    auto_due: datetime | None = None
    auto_why: str = ""
    auto_checking: bool = False  # the tick is looking now: `auto_due` is only its claim's lease

    @property
    def paused(self) -> bool:
        return self.status == "paused"

    @property
    def current_phase(self) -> PhaseView:
        return self.phases[self.phase_index]

    @property
    def current_step(self) -> StepView:
        return self.current_phase.steps[self.step_index]

    @property
    def open_exit_criteria(self) -> int:
        """Exit criteria still unticked that the next advance needs (it leaves the phase): what
        the rollout waits on people for. 0 within a phase, where they do not gate."""
        phase = self.current_phase
        if not self.is_open or self.step_index + 1 < len(phase.steps):
            return 0
        return sum(1 for i in phase.items if i.kind == "exit" and not i.checked)


@dataclass(frozen=True)
class EventView:
    """One timeline entry. `kind` is the event kind's value, e.g. "advanced"."""

    kind: str
    actor_id: str | None
    at: datetime
    data: Mapping[str, Any]
    id: int | None = None  # where an "Older…" page starts


@dataclass(frozen=True)
class TimelineView:
    """One page of a rollout's timeline: `events` newest first, and whether older ones exist
    beyond them (`older`)."""

    rollout_id: int
    feature: str
    tz: str
    events: tuple[EventView, ...]
    older: bool
    total: int
    page: int = 1


@dataclass(frozen=True)
class SnapshotView:
    """A gate verdict as the digest recalls it."""

    taken_at: datetime
    passed: bool | None
    blockers: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """The answer to an advance or a snapshot. `override_token` is the value of the "Advance
    anyway" button, None when the gate may not be overridden (it passed, or only looked)."""

    rollout_id: int
    feature: str
    tz: str
    step_title: str
    gate: GateResult
    moved: Moved | None
    override_token: str | None
    snapshot_only: bool = False
    flag: str = ""  # the flag write that went with the move, in words
    rolled_back: bool = False  # a rollback trigger fired and the plan says to roll back
    # (metric key, "Open in Datadog" URL): the metric explorer on the query the gate read.
    links: tuple[tuple[str, str], ...] = ()


# --- charts ------------------------------------------------------------------------------------
# A point in time and a value; None is a gap (no data at that time).
Point = tuple[datetime, float | None]


@dataclass(frozen=True)
class Marker:
    """A moment worth a vertical line: `kind` is "step", "pause", "resume" or "rollback"."""

    at: datetime
    kind: str
    label: str


@dataclass(frozen=True)
class MetricPanel:
    """One query of a gate check as a chart shows it: the canary's series, the control's where
    the metric has one (else the stored baseline as a level), and the limits of the success
    metric and the rollback trigger that read it (one panel when both read the same query).
    `verdict` is the worse of the two: "fail", "no data" or "pass"."""

    name: str
    unit: str
    verdict: str
    role: str  # "success metric", "rollback trigger", "success metric and trigger"
    canary: tuple[Point, ...]
    value: float | None = None  # the number the gate judged
    control: tuple[Point, ...] = ()
    baseline: float | None = None  # the control's value or the stored baseline
    baseline_label: str = "baseline"
    limit: float | None = None
    trigger_limit: float | None = None
    problem: str | None = None


@dataclass(frozen=True)
class GateChartView:
    """A gate check as one picture: a panel per metric over the gate's window."""

    feature: str
    title: str  # the verdict in words
    tz: str
    start: datetime
    end: datetime
    panels: tuple[MetricPanel, ...]
    markers: tuple[Marker, ...] = ()
    left_out: int = 0  # metrics beyond what one picture holds

    @property
    def has_data(self) -> bool:
        return any(v is not None for p in self.panels for _, v in (*p.canary, *p.control)) or any(
            p.value is not None for p in self.panels
        )


@dataclass(frozen=True)
class ProgressChartView:
    """A rollout over time: its exposure as a step line, pauses as shaded spans, rollbacks
    marked, and its key metric at each gate check."""

    feature: str
    tz: str
    start: datetime
    end: datetime
    percent: tuple[tuple[datetime, float], ...]  # exposure from each moment on
    paused: tuple[tuple[datetime, datetime], ...]
    markers: tuple[Marker, ...]
    metric_name: str = ""
    metric_unit: str = ""
    metric: tuple[Point, ...] = ()
    metric_limit: float | None = None


@dataclass(frozen=True)
class Chart:
    """A rendered picture and what to call it."""

    filename: str
    title: str
    png: bytes
