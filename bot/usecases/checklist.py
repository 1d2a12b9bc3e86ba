"""Ticking checklist boxes. A tick names one item and its new state, so two people ticking
different boxes at once both stick; exit criteria may be guarded (`bot.domain.rights`).

A tick is the commonest change there is, so its usual case is a handful of statements, not a
load of the rollout's whole plan: the rollout's row (locked on Postgres, so it queues behind
an advance like any change), the clicked items, one conditional UPDATE per item (`WHERE` it is
not already in that state, so a crossed double click changes it once), the revision bumped by
the number of changes, and an event each. Anything unusual (a closed rollout, a guarded exit
criterion, an item that is not the rollout's) takes the full path below, whose words and
rights checks are the domain's (`rollouts.set_item`, `access`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from bot.domain import rights, rollouts
from bot.errors import RolloutNotFound
from bot.services import Actor, Services
from bot.usecases import access, lookup
from storage import queries
from storage.enums import EventKind, ItemKind
from storage.models import ChecklistItem, Event, Phase, Rollout


@dataclass(frozen=True)
class ItemChange:
    item_id: int
    checked: bool


class _Guarded(Exception):
    """The change touches exit criteria the actor may not tick: nothing is applied."""


class _Unusual(Exception):
    """The quick path cannot decide: the full path runs instead, in the same transaction."""


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
    try:
        with svc.db.transaction() as session:
            try:
                return _quick(session, actor, rollout_id, changes, now)
            except _Unusual:
                return _full(svc, session, actor, rollout_id, changes, now)
    except _Guarded:
        # Recorded in a transaction of its own, after the refused one is rolled back.
        access.refuse(
            svc, actor, lookup.load_for(svc, actor, rollout_id), rights.WORDS[rights.Act.EXIT_CRITERIA]
        )
    return 0


def _quick(session: Session, actor: Actor, rollout_id: int, changes: list[ItemChange], now: datetime) -> int:
    head = queries.lock_rollout_row(session=session, rollout_id=rollout_id)
    if head is None or head.team_id != actor.team_id:
        raise RolloutNotFound("That rollout does not exist any more.")
    if not head.status.is_open:
        raise _Unusual
    wanted = {c.item_id for c in changes}
    items: dict[int, Row[int, ItemKind, str, datetime | None, str]] = {
        row.id: row
        for row in session.execute(
            select(
                ChecklistItem.id, ChecklistItem.kind, ChecklistItem.text, ChecklistItem.checked_at, Phase.name
            )
            .join(Phase, Phase.id == ChecklistItem.phase_id)
            .where(ChecklistItem.rollout_id == rollout_id, ChecklistItem.id.in_(wanted))
        )
    }
    if len(items) != len(wanted):
        raise _Unusual  # not the rollout's: the full path says so in the domain's words
    if head.exit_ticks_by == rights.STEERERS and any(items[i].kind is ItemKind.EXIT for i in wanted):
        raise _Unusual  # guarded: the full path checks who may
    changed = 0
    for change in changes:
        item = items[change.item_id]
        if (item.checked_at is not None) == change.checked:
            continue
        # The state in the WHERE, not only in Python: the row as it is at the write decides.
        state = (
            ChecklistItem.checked_at.is_(None) if change.checked else ChecklistItem.checked_at.is_not(None)
        )
        moved = session.execute(
            update(ChecklistItem)
            .where(ChecklistItem.id == item.id, state)
            .values(
                checked_at=now if change.checked else None,
                checked_by=actor.user_id if change.checked else None,
            )
            .execution_options(synchronize_session=False)
        )
        if not moved.rowcount:  # type: ignore[attr-defined]
            continue
        changed += 1
        kind = EventKind.ITEM_CHECKED if change.checked else EventKind.ITEM_UNCHECKED
        data = {"item_id": item.id, "text": item.text, "phase": item.name}
        session.add(Event(rollout_id=rollout_id, kind=kind, actor_id=actor.user_id, at=now, data=data))
    if changed:
        session.execute(
            update(Rollout)
            .where(Rollout.id == rollout_id)
            .values(revision=Rollout.revision + changed, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return changed


def _full(
    svc: Services, session: Session, actor: Actor, rollout_id: int, changes: list[ItemChange], now: datetime
) -> int:
    rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
    if rollout is None or rollout.team_id != actor.team_id:
        raise RolloutNotFound("That rollout does not exist any more.")
    if _guarded(svc, actor, rollout, changes):
        raise _Guarded  # rolls the transaction back: nothing applied
    changed = 0
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
