"""The rollout state machine: plain rules over the rollout's rows, no session, no Slack.

A rollout sits at one step of one phase (1% canary, 25%, ...). It moves forward one step at a
time; leaving the last step of a phase completes the phase; leaving the last step of the last
phase completes the rollout. Paused rollouts keep their place; rolled-back and completed ones
are finished and free their feature name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

from bot.domain.names import feature_key
from bot.domain.plans.catalog import plan_to_dict
from bot.domain.plans.model import Plan
from bot.errors import InvalidTransition
from storage.enums import EventKind, ItemKind, RolloutStatus
from storage.models import ChecklistItem, Event, Phase, Rollout, Step
from storage.rows import plain


class NewRollout(TypedDict):
    """Who starts a rollout of a plan, where and when: what `new_rollout` and `new_rows` take."""

    team_id: str
    channel_id: str
    feature: str
    owner_id: str
    created_by: str
    flag_key: str | None
    service: str | None
    stakeholders: list[str]
    timezone: str
    country: str
    now: datetime


def new_rollout(plan: Plan, **start: Unpack[NewRollout]) -> Rollout:
    """Copies the plan into the rollout, so later edits to the template never reach it."""
    rollout = Rollout(
        metrics=[m.to_dict() for m in plan.metrics],
        triggers=[t.to_dict() for t in plan.triggers],
        **_rollout_values(plan, start),
    )
    for phase_values, steps, items in _phase_values(plan, start["now"]):
        phase = Phase(**phase_values)
        phase.steps = [Step(**values) for values in steps]
        phase.items = [ChecklistItem(**values, rollout=rollout) for values in items]
        rollout.phases.append(phase)
    return rollout


def new_rows(plan: Plan, **start: Unpack[NewRollout]) -> Rollout:
    """`new_rollout`'s graph, the same values, for `storage.rows.insert_new` to write: plain
    transient objects whose attributes are set without the ORM's change tracking (a fifth of
    the cost of building them through their constructors). Read-only from here on and never
    to be added to a session; `phases`, `steps`, `items` and `approvers` (none yet) are plain
    lists, and an item has no `rollout` set (the writer sets its `rollout_id`)."""
    values = _rollout_values(plan, start)
    # The metrics as the plan's JSON has them (what `Metric.to_dict` stores, once decoded):
    # the same stored values, without converting each metric again.
    doc = values["plan_doc"]
    # `approvers` held as a list: a transient object's unset collection is a new one at each
    # read, made through the ORM's collection machinery (the view reads it).
    rollout: Rollout = plain(
        Rollout, {**values, "metrics": doc["metrics"], "triggers": doc["triggers"], "approvers": []}
    )
    rollout.__dict__["phases"] = [
        plain(
            Phase,
            {
                **phase_values,
                "steps": [plain(Step, values) for values in steps],
                "items": [plain(ChecklistItem, values) for values in items],
            },
        )
        for phase_values, steps, items in _phase_values(plan, start["now"])
    ]
    return rollout


def _rollout_values(plan: Plan, start: NewRollout) -> dict[str, Any]:
    now = start["now"]
    return {
        "team_id": start["team_id"],
        "channel_id": start["channel_id"],
        "feature": start["feature"],
        "feature_key": feature_key(start["feature"]),
        "template": plan.name,
        "plan_title": plan.title,
        "owner_id": start["owner_id"],
        "created_by": start["created_by"],
        "flag_key": start["flag_key"],
        "service": start["service"],
        "stakeholder_channels": start["stakeholders"],
        "status": RolloutStatus.ACTIVE,
        "phase_index": 0,
        "step_index": 0,
        "step_started_at": now,
        "timezone": start["timezone"],
        "country": start["country"],
        "plan_doc": plan_to_dict(plan),
        "manual_triggers": list(plan.manual_triggers),
        "revision": 1,
        "created_at": now,
        "updated_at": now,
    }


def _phase_values(
    plan: Plan, now: datetime
) -> list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
    """(phase, its steps, its checklist items) of each phase of the plan, as column values."""
    out = []
    for p_pos, plan_phase in enumerate(plan.phases):
        phase = {
            "position": p_pos,
            "name": plan_phase.name,
            "description": plan_phase.description,
            "duration": plan_phase.duration,
            "started_at": now if p_pos == 0 else None,
        }
        steps = [
            {
                "position": s_pos,
                "percent": step.percent,
                "desired_users": step.desired_users,
                "label": step.label,
                "min_business_days": step.min_business_days,
                "started_at": now if (p_pos, s_pos) == (0, 0) else None,
            }
            for s_pos, step in enumerate(plan_phase.steps)
        ]
        texts = [(ItemKind.TASK, t) for t in plan_phase.tasks] + [
            (ItemKind.EXIT, t) for t in plan_phase.exit_criteria
        ]
        items = [{"position": i, "kind": kind, "text": text} for i, (kind, text) in enumerate(texts)]
        out.append((phase, steps, items))
    return out


def event(rollout: Rollout, kind: EventKind, actor_id: str | None, now: datetime, **data: Any) -> Event:
    return Event(rollout_id=rollout.id, kind=kind, actor_id=actor_id, at=now, data=data)


def new_event(rollout: Rollout, kind: EventKind, actor_id: str | None, now: datetime, **data: Any) -> Event:
    """`event` as a plain object for `storage.rows.insert_new` (`new_rows`): never to be added
    to a session."""
    new: Event = plain(
        Event, {"rollout_id": rollout.id, "kind": kind, "actor_id": actor_id, "at": now, "data": data}
    )
    return new


@dataclass(frozen=True)
class Toggle:
    item: ChecklistItem
    checked: bool


def set_item(rollout: Rollout, item_id: int, checked: bool, user_id: str, now: datetime) -> Toggle | None:
    """Ticks or unticks one item. Returns None when it is already in that state, so a click
    that crossed another person's identical click changes nothing and records nothing."""
    if not rollout.status.is_open:
        raise InvalidTransition(
            "{feature} is {status}; its checklist is closed", feature=rollout.feature, status=_words(rollout)
        )
    item = next((i for p in rollout.phases for i in p.items if i.id == item_id), None)
    if item is None:
        raise InvalidTransition("that checklist item is not part of this rollout any more")
    if item.checked == checked:
        return None
    item.checked_at = now if checked else None
    item.checked_by = user_id if checked else None
    # Who took a tick away stays visible until the next tick.
    item.unchecked_at = None if checked else now
    item.unchecked_by = None if checked else user_id
    rollout.touch(now)
    return Toggle(item=item, checked=checked)


@dataclass(frozen=True)
class Position:
    phase_index: int
    step_index: int


def next_position(rollout: Rollout) -> Position | None:
    """Where an advance goes; None when the rollout stands on its last step."""
    phase = rollout.current_phase
    if rollout.step_index + 1 < len(phase.steps):
        return Position(rollout.phase_index, rollout.step_index + 1)
    if rollout.phase_index + 1 < len(rollout.phases):
        return Position(rollout.phase_index + 1, 0)
    return None


def leaves_phase(rollout: Rollout) -> bool:
    nxt = next_position(rollout)
    return nxt is None or nxt.phase_index != rollout.phase_index


def unchecked_exit_criteria(rollout: Rollout) -> list[str]:
    """Exit criteria gate leaving a phase, not the steps inside it."""
    if not leaves_phase(rollout):
        return []
    return [i.text for i in rollout.current_phase.items if i.kind is ItemKind.EXIT and not i.checked]


def require_active(rollout: Rollout, action: str) -> None:
    if rollout.status is RolloutStatus.PAUSED:
        raise InvalidTransition(
            "{feature} is paused: `/rollout resume` it before you {action}",
            feature=rollout.feature,
            action=action,
        )
    if not rollout.status.is_open:
        raise InvalidTransition(
            "{feature} is {status}; there is nothing to {action}",
            feature=rollout.feature,
            status=_words(rollout),
            action=action,
        )


@dataclass(frozen=True)
class Moved:
    from_title: str
    to_title: str
    phase_completed: str | None  # the name of the phase it left, if it left one
    completed: bool


def move_forward(rollout: Rollout, now: datetime, *, overridden: bool = False) -> Moved:
    """Applies an advance the gate (or an override) has allowed. What an override leaves is
    marked `left_by_override`: the step and, if it leaves it, the phase were skipped past a
    closed gate, not done, and every view says so."""
    require_active(rollout, "advance")
    old_phase, old_step = rollout.current_phase, rollout.current_step
    old_step.completed_at = now
    old_step.left_by_override = overridden
    nxt = next_position(rollout)
    if nxt is None or nxt.phase_index != rollout.phase_index:
        old_phase.left_by_override = overridden
    if nxt is None:
        old_phase.completed_at = now
        finish(rollout, RolloutStatus.COMPLETED, now)
        return Moved(display_title(old_step), "done", old_phase.name, completed=True)
    left_phase = nxt.phase_index != rollout.phase_index
    if left_phase:
        old_phase.completed_at = now
        rollout.phases[nxt.phase_index].started_at = now
    rollout.phase_index, rollout.step_index = nxt.phase_index, nxt.step_index
    rollout.step_started_at = now
    rollout.current_step.started_at = now
    rollout.touch(now)
    return Moved(
        display_title(old_step),
        display_title(rollout.current_step),
        old_phase.name if left_phase else None,
        completed=False,
    )


def finish(rollout: Rollout, status: RolloutStatus, now: datetime) -> None:
    rollout.status = status
    rollout.finished_at = now
    rollout.touch(now)


def stopped(rollout: Rollout, now: datetime, by: str | None, reason: str) -> None:
    """Remembers the last pause or rollback (who, when, why) for the status message."""
    rollout.stopped_by, rollout.stopped_at, rollout.stop_reason = by, now, reason or None


def pause(rollout: Rollout, now: datetime, *, by: str | None = None, reason: str = "") -> None:
    require_active(rollout, "pause")
    rollout.status = RolloutStatus.PAUSED
    stopped(rollout, now, by, reason)
    rollout.touch(now)


def resume(rollout: Rollout, now: datetime) -> None:
    if rollout.status is not RolloutStatus.PAUSED:
        raise InvalidTransition("{feature} is not paused", feature=rollout.feature)
    rollout.status = RolloutStatus.ACTIVE
    rollout.stopped_by = rollout.stopped_at = rollout.stop_reason = None
    rollout.touch(now)


def roll_back(rollout: Rollout, now: datetime, *, by: str | None = None, reason: str = "") -> None:
    """Ends the rollout where it stands; `by` None is the bot itself (a fired trigger)."""
    if not rollout.status.is_open:
        raise InvalidTransition(
            "{feature} is already {status}", feature=rollout.feature, status=_words(rollout)
        )
    finish(rollout, RolloutStatus.ROLLED_BACK, now)
    stopped(rollout, now, by, reason)


def complete(rollout: Rollout, now: datetime) -> None:
    """Declares the rollout done. Only at full exposure: a rollout stopped part-way is rolled
    back or paused, not "completed"."""
    require_active(rollout, "complete")
    if not at_full_exposure(rollout):
        raise InvalidTransition(
            "{feature} is at {step}; advance it to 100% first, or roll it back",
            feature=rollout.feature,
            step=display_title(rollout.current_step),
        )
    rollout.current_step.completed_at = now
    rollout.current_phase.completed_at = now
    finish(rollout, RolloutStatus.COMPLETED, now)


def _words(rollout: Rollout) -> str:
    return rollout.status.value.replace("_", " ")


def display_title(step: Step) -> str:
    """ "1%", "25%", or the label of a step that is not a share of users ("internal")."""
    return title_of(step.label, step.percent)


def title_of(label: str, percent: float) -> str:
    """`display_title` from a step's label and percentage."""
    return label or f"{percent:g}%"


def progress(rollout: Rollout) -> tuple[int, int]:
    """(steps done, steps in all), counting across phases."""
    steps = [s for p in rollout.phases for s in p.steps]
    done = sum(1 for s in steps if s.completed_at is not None)
    return done, len(steps)


def may_steer(rollout: Rollout, user_id: str, is_admin: Callable[[], bool]) -> bool:
    """Owner, approvers and workspace admins steer a rollout (advance, pause, roll back...).
    The admin check costs a Slack call, so it is asked last and only when needed."""
    if user_id == rollout.owner_id or any(a.user_id == user_id for a in rollout.approvers):
        return True
    return is_admin()


def at_full_exposure(rollout: Rollout) -> bool:
    return rollout.current_step.percent >= 100
