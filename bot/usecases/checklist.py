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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from bot.domain import rights, rollouts
from bot.errors import RolloutNotFound
from bot.services import Actor, Services
from bot.usecases import access, lookup
from storage import db, queries
from storage.enums import EventKind, ItemKind, RolloutStatus
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


def set_items(
    svc: Services,
    actor: Actor,
    rollout_id: int,
    changes: list[ItemChange],
    *,
    then: Callable[[Session], object] | None = None,
) -> int:
    """Applies checklist ticks. Returns how many items changed. `then` runs last in the same
    write transaction when the ticks are applied (not when they are refused): the status
    message's refresh asks for its edit there (`status_board.refreshing`), one transaction less
    per click."""
    now = svc.clock()
    try:
        with svc.db.transaction() as session:
            try:
                changed = _quick(session, actor, rollout_id, changes, now)
            except _Unusual:
                changed = _full(svc, session, actor, rollout_id, changes, now)
            if then is not None:
                then(session)
            return changed
    except _Guarded:
        # Recorded in a transaction of its own, after the refused one is rolled back.
        access.refuse(
            svc, actor, lookup.load_for(svc, actor, rollout_id), rights.WORDS[rights.Act.EXIT_CRITERIA]
        )
    return 0


# Built once: a tick is the commonest write there is, and building statements (coercing
# columns, computing cache keys) cost more than running them. Core statements on the tables,
# through the session's connection, so no ORM bookkeeping runs either.
_items = cast("Table", ChecklistItem.__table__)
_rollouts = cast("Table", Rollout.__table__)
_phases = cast("Table", Phase.__table__)
_events = cast("Table", Event.__table__)
# The rollout's row (locked on Postgres, as `queries.lock_rollout` locks it) and the clicked
# items with their phase's name, in one round trip: a row per item, one with no item when none
# is the rollout's.
_clicked = _items.join(_phases, _phases.c.id == _items.c.phase_id)
_HEAD_COLUMNS = (
    _rollouts.c.team_id,
    _rollouts.c.status,
    _rollouts.c.exit_ticks_by,
    _items.c.id,
    _items.c.kind,
    _items.c.text,
    _items.c.checked_at,
    _phases.c.name,
)


def _head_and(items: ColumnElement[bool]) -> Select[Any]:
    return (
        select(*_HEAD_COLUMNS)
        .select_from(_rollouts.outerjoin(_clicked, and_(_items.c.rollout_id == _rollouts.c.id, items)))
        .where(_rollouts.c.id == bindparam("rollout_id"))
    )


# A click names one box: the one-item form has no expanding IN to render again at each run.
_HEAD_AND_ITEM = _head_and(_items.c.id == bindparam("item"))
_HEAD_AND_ITEMS = _head_and(_items.c.id.in_(bindparam("ids", expanding=True)))
_HEAD_AND_ITEM_LOCKED = _HEAD_AND_ITEM.with_for_update(of=_rollouts)
_HEAD_AND_ITEMS_LOCKED = _HEAD_AND_ITEMS.with_for_update(of=_rollouts)
# The state in the WHERE, not only in Python: the row as it is at the write decides.
_TICK = (
    update(_items)
    .where(_items.c.id == bindparam("item_id"), _items.c.checked_at.is_(None))
    .values(checked_at=bindparam("at"), checked_by=bindparam("by"), unchecked_at=None, unchecked_by=None)
)
_UNTICK = (
    update(_items)
    .where(_items.c.id == bindparam("item_id"), _items.c.checked_at.is_not(None))
    # Who unticked it, and when: the status message says so (the domain's set_item does the same).
    .values(checked_at=None, checked_by=None, unchecked_at=bindparam("at"), unchecked_by=bindparam("by"))
)
_BUMP = (
    update(_rollouts)
    .where(_rollouts.c.id == bindparam("rollout_id"))
    .values(revision=_rollouts.c.revision + bindparam("changed"), updated_at=bindparam("at"))
)
_EVENT = insert(_events)


def _quick(session: Session, actor: Actor, rollout_id: int, changes: list[ItemChange], now: datetime) -> int:
    wanted = sorted({c.item_id for c in changes})
    conn = session.connection()
    locked = conn.dialect.name == "postgresql"
    if len(wanted) == 1:
        stmt = _HEAD_AND_ITEM_LOCKED if locked else _HEAD_AND_ITEM
        params: dict[str, Any] = {"rollout_id": rollout_id, "item": wanted[0]}
    else:
        stmt = _HEAD_AND_ITEMS_LOCKED if locked else _HEAD_AND_ITEMS
        params = {"rollout_id": rollout_id, "ids": wanted}
    rows = conn.execute(stmt, params).all()
    if not rows or rows[0].team_id != actor.team_id:
        raise RolloutNotFound("That rollout does not exist any more.")
    head = rows[0]
    if not RolloutStatus(head.status).is_open:
        raise _Unusual
    items = {row.id: row for row in rows if row.id is not None}
    if len(items) != len(wanted):
        raise _Unusual  # not the rollout's: the full path says so in the domain's words
    if head.exit_ticks_by == rights.STEERERS and any(
        ItemKind(items[i].kind) is ItemKind.EXIT for i in wanted
    ):
        raise _Unusual  # guarded: the full path checks who may
    events: list[dict[str, Any]] = []
    for change in changes:
        item = items[change.item_id]
        if (item.checked_at is not None) == change.checked:
            continue
        if change.checked:
            moved = conn.execute(_TICK, {"item_id": item.id, "at": now, "by": actor.user_id})
        else:
            moved = conn.execute(_UNTICK, {"item_id": item.id, "at": now, "by": actor.user_id})
        if not moved.rowcount:
            continue
        kind = EventKind.ITEM_CHECKED if change.checked else EventKind.ITEM_UNCHECKED
        data = {"item_id": item.id, "text": item.text, "phase": item.name}
        events.append(
            {"rollout_id": rollout_id, "kind": kind, "actor_id": actor.user_id, "at": now, "data": data}
        )
    if events:
        conn.execute(_BUMP, {"rollout_id": rollout_id, "changed": len(events), "at": now})
        conn.execute(_EVENT, events)
        db.wrote_events(session)
    return len(events)


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
