"""Read models for `messages`: built from the rows here, rendered there.

A view is a plain frozen copy of what a message shows (`messages.views`), taken while the
session is open, so rendering never loads anything. The builders here (`rollout_view` …) make
views of ORM rows a use case already holds; `view_reads.load_rollout` reads the same view in
plain Core statements, and the two must agree field by field
(tests/usecases/test_core_views.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from types import MappingProxyType

from sqlalchemy.orm import Session

from bot.domain import flagging, rollouts
from bot.domain.soak import soak_status
from bot.usecases import autopilot
from messages.auto_status import auto_words
from messages.home import HomeRow
from messages.views import EventView, ItemView, PhaseView, RolloutView, SnapshotView, StepView
from storage import queries
from storage.models import ChecklistItem, Event, MetricSnapshot, Phase, Rollout, Step

# --- builders --------------------------------------------------------------------------------


def item_view(item: ChecklistItem) -> ItemView:
    return ItemView(
        id=item.id,
        text=item.text,
        kind=item.kind.value,
        checked_by=item.checked_by,
        checked_at=item.checked_at,
        unchecked_by=item.unchecked_by,
        unchecked_at=item.unchecked_at,
    )


def step_view(step: Step) -> StepView:
    return StepView(
        position=step.position,
        title=rollouts.display_title(step),
        percent=step.percent,
        desired_users=step.desired_users,
        completed_at=step.completed_at,
        left_by_override=step.left_by_override,
    )


def phase_view(phase: Phase, rollout_id: int, *, items: bool = True) -> PhaseView:
    return PhaseView(
        rollout_id=rollout_id,
        position=phase.position,
        name=phase.name,
        completed_at=phase.completed_at,
        steps=tuple(step_view(s) for s in phase.steps),
        items=tuple(item_view(i) for i in phase.items) if items else (),
        left_by_override=phase.left_by_override,
    )


def rollout_view(rollout: Rollout, *, items: bool = True) -> RolloutView:
    """The rollout with its plan; its phases, steps, items and approvers must be loaded.
    Without `items`, its phases have no checklist items (for a reader that shows none)."""
    return RolloutView(
        id=rollout.id,
        feature=rollout.feature,
        template=rollout.template,
        plan_title=rollout.plan_title,
        owner_id=rollout.owner_id,
        approvers=tuple(a.user_id for a in rollout.approvers),
        channel_id=rollout.channel_id,
        status=rollout.status.value,
        is_open=rollout.status.is_open,
        revision=rollout.revision,
        timezone=rollout.timezone,
        country=rollout.country,
        flag_key=rollout.flag_key,
        service=rollout.service,
        stakeholder_channels=tuple(rollout.stakeholder_channels),
        phase_index=rollout.phase_index,
        step_index=rollout.step_index,
        step_started_at=rollout.step_started_at,
        updated_at=rollout.updated_at,
        digest=rollout.digest,
        digest_time=rollout.digest_time,
        phases=tuple(phase_view(p, rollout.id, items=items) for p in rollout.phases),
        flag_percent=rollout.flag_percent if flagging.managed(rollout) else None,
        flag_plan_percent=flagging.plan_percent(rollout),
        flag_adopted_percent=rollout.flag_adopted_percent,
        flag_problem=rollout.flag_problem,
        flag_pending=rollout.flag_pending,
        stopped_by=rollout.stopped_by,
        stopped_at=rollout.stopped_at,
        stop_reason=rollout.stop_reason,
        **autopilot.view_fields(rollout),
    )


def event_view(event: Event) -> EventView:
    return EventView(
        kind=event.kind.value,
        actor_id=event.actor_id,
        at=event.at,
        data=MappingProxyType(dict(event.data)),
        id=event.id,
    )


def event_views(events: Iterable[Event]) -> tuple[EventView, ...]:
    return tuple(event_view(e) for e in events)


def snapshot_view(snapshot: MetricSnapshot | None) -> SnapshotView | None:
    if snapshot is None:
        return None
    return SnapshotView(
        taken_at=snapshot.taken_at,
        passed=snapshot.passed,
        blockers=tuple(str(b) for b in (snapshot.verdict or {}).get("blockers", [])),
    )


def next_gate(rollout: Rollout, now: datetime) -> str:
    """What stands before the next advance, short of reading Datadog."""
    step = rollout.current_step
    soak = soak_status(
        rollout.step_started_at,
        step.min_business_days,
        now,
        tz=rollout.timezone,
        country=rollout.country,
    )
    parts = ["soak met" if soak.met else soak.describe(rollouts.display_title(step), rollout.timezone)]
    open_criteria = len(rollouts.unchecked_exit_criteria(rollout))
    if open_criteria:
        parts.append(f"{open_criteria} exit criteria not ticked")
    parts.append(f"{len(rollout.metrics)} metrics to check")
    return "; ".join(parts)


def home_row(rollout: Rollout, now: datetime) -> HomeRow:
    done, total = rollouts.progress(rollout)
    return HomeRow(
        rollout.id,
        rollout.feature,
        rollout.channel_id,
        rollouts.display_title(rollout.current_step),
        rollout.current_phase.name,
        rollout.status.value == "paused",
        done,
        total,
        next_gate(rollout, now),
        auto_words(rollout_view(rollout)),
        skipped=tuple(p.name for p in rollout.phases if p.left_by_override),
    )


# --- the App Home's rows ----------------------------------------------------------------


def load_home(*, session: Session, team_id: str, user_id: str, now: datetime) -> list[HomeRow]:
    """The App Home rows of a person's open rollouts (see `queries.open_for_user`)."""
    mine = queries.open_for_user(session=session, team_id=team_id, user_id=user_id)
    return [home_row(r, now) for r in mine]
