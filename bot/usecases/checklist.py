"""TODO"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain import rollouts
from bot.errors import RolloutNotFound
from bot.services import Actor, Services
from storage import queries
from storage.enums import EventKind


@dataclass(frozen=True)
class ItemChange:
    item_id: int
    checked: bool


def set_items(svc: Services, actor: Actor, rollout_id: int, changes: list[ItemChange]) -> int:
    """Applies checklist ticks. Each tick names one item and its new state, so two people
    ticking different boxes at once both stick. Returns how many items changed."""
    now = svc.clock()
    changed = 0
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is None or rollout.team_id != actor.team_id:
            raise RolloutNotFound("That rollout does not exist any more.")
        for change in changes:
            toggle = rollouts.set_item(rollout, change.item_id, change.checked, actor.user_id, now)
            if toggle is None:
                continue
            changed += 1
            kind = EventKind.ITEM_CHECKED if toggle.checked else EventKind.ITEM_UNCHECKED
            item = toggle.item
            session.add(
                rollouts.event(
                    rollout, kind, actor.user_id, now, item_id=item.id, text=item.text, phase=item.phase.name
                )
            )
    return changed
