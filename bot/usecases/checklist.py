"""Ticking checklist boxes. A tick names one item and its new state, so two people ticking
different boxes at once both stick; exit criteria may be guarded (`bot.domain.rights`)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain import rights, rollouts
from bot.errors import RolloutNotFound
from bot.services import Actor, Services
from bot.usecases import access, lookup
from storage import queries
from storage.enums import EventKind, ItemKind
from storage.models import Rollout


@dataclass(frozen=True)
class ItemChange:
    item_id: int
    checked: bool


class _Guarded(Exception):
    """The change touches exit criteria the actor may not tick: nothing is applied."""


def _guarded(svc: Services, actor: Actor, rollout: Rollout, changes: list[ItemChange]) -> bool:
    if rights.who_may(rollout, rights.Act.EXIT_CRITERIA) == rights.ANYONE:
        return False
    wanted = {c.item_id for c in changes}
    touches_exit = any(
        item.id in wanted and item.kind is ItemKind.EXIT for phase in rollout.phases for item in phase.items
    )
    # The owner and approvers are known from the row; only anyone else costs the admin lookup.
    return touches_exit and not access.may_steer(svc, actor, rollout)


def set_items(svc: Services, actor: Actor, rollout_id: int, changes: list[ItemChange]) -> int:
    """Applies checklist ticks. Returns how many items changed."""
    now = svc.clock()
    changed = 0
    try:
        with svc.db.transaction() as session:
            rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
            if rollout is None or rollout.team_id != actor.team_id:
                raise RolloutNotFound("That rollout does not exist any more.")
            if _guarded(svc, actor, rollout, changes):
                raise _Guarded  # rolls the transaction back: nothing applied
            for change in changes:
                toggle = rollouts.set_item(rollout, change.item_id, change.checked, actor.user_id, now)
                if toggle is None:
                    continue
                changed += 1
                kind = EventKind.ITEM_CHECKED if toggle.checked else EventKind.ITEM_UNCHECKED
                item = toggle.item
                session.add(
                    rollouts.event(
                        rollout,
                        kind,
                        actor.user_id,
                        now,
                        item_id=item.id,
                        text=item.text,
                        phase=item.phase.name,
                    )
                )
    except _Guarded:
        # Recorded in a transaction of its own, after the refused one is rolled back.
        access.refuse(
            svc, actor, lookup.load_for(svc, actor, rollout_id), rights.WORDS[rights.Act.EXIT_CRITERIA]
        )
    return changed
