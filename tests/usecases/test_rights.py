"""Who may tick exit criteria and send updates: anyone by default, steerers where a rollout
says so; every refusal is recorded and nothing is applied."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.devtools.local_slack import LocalSlack
from bot.domain.rights import Act
from bot.errors import NotAllowed
from bot.services import Actor, Services
from bot.usecases import checklist, controls, updates
from bot.usecases import start as starting
from storage import queries
from storage.db import Database
from storage.enums import EventKind, ItemKind
from storage.models import Event
from tests.support import Clock, make_services

TEAM, CHANNEL = "T1", "C1"
OWNER = Actor(TEAM, "U_OWNER", CHANNEL)
QA = Actor(TEAM, "U_QA", CHANNEL)


@pytest.fixture
def svc(db: Database) -> Iterator[Services]:
    with LocalSlack() as slack:  # users.info says U_QA is no admin
        yield make_services(db, slack, Clock(datetime(2026, 3, 2, 17, 0, tzinfo=UTC)))


@pytest.fixture
def rollout_id(svc: Services) -> int:
    return starting.start(svc, OWNER, starting.Start(feature="checkout-v2", template="standard"))


def items(svc: Services, rollout_id: int, kind: ItemKind) -> list[int]:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        return [i.id for i in rollout.current_phase.items if i.kind is kind]


def checked(svc: Services, rollout_id: int) -> set[int]:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        return {i.id for p in rollout.phases for i in p.items if i.checked_at is not None}


def refusals(svc: Services, rollout_id: int) -> list[dict[str, object]]:
    with svc.db.reading() as session:
        stmt = select(Event).where(Event.rollout_id == rollout_id, Event.kind == EventKind.REFUSED)
        return [dict(e.data) for e in session.scalars(stmt)]


def test_by_default_anyone_ticks_exit_criteria_and_sends_updates(svc: Services, rollout_id: int) -> None:
    exit_item = items(svc, rollout_id, ItemKind.EXIT)[0]
    assert checklist.set_items(svc, QA, rollout_id, [checklist.ItemChange(exit_item, True)]) == 1
    updates.send_update(svc, QA, rollout_id, "QA signed off")
    assert refusals(svc, rollout_id) == []


def test_narrowed_to_steerers_a_stranger_is_refused_and_recorded(svc: Services, rollout_id: int) -> None:
    controls.set_access(svc, OWNER, rollout_id, Act.EXIT_CRITERIA, "steerers")
    controls.set_access(svc, OWNER, rollout_id, Act.UPDATES, "steerers")
    exit_item, task = items(svc, rollout_id, ItemKind.EXIT)[0], items(svc, rollout_id, ItemKind.TASK)[0]

    with pytest.raises(NotAllowed, match="tick exit criteria of"):
        checklist.set_items(
            svc, QA, rollout_id, [checklist.ItemChange(task, True), checklist.ItemChange(exit_item, True)]
        )
    assert checked(svc, rollout_id) == set()  # not even the task of that same click
    with pytest.raises(NotAllowed, match="send updates about"):
        updates.send_update(svc, QA, rollout_id, "all good")
    assert [r["action"] for r in refusals(svc, rollout_id)] == ["tick exit criteria of", "send updates about"]

    # Tasks stay anyone's, and the owner ticks exit criteria as before.
    assert checklist.set_items(svc, QA, rollout_id, [checklist.ItemChange(task, True)]) == 1
    assert checklist.set_items(svc, OWNER, rollout_id, [checklist.ItemChange(exit_item, True)]) == 1
    assert checked(svc, rollout_id) == {task, exit_item}


def test_only_steerers_change_who_may_act(svc: Services, rollout_id: int) -> None:
    with pytest.raises(NotAllowed):
        controls.set_access(svc, QA, rollout_id, Act.EXIT_CRITERIA, "anyone")
    controls.set_access(svc, OWNER, rollout_id, Act.EXIT_CRITERIA, "steerers")
    with svc.db.reading() as session:
        kinds = [e.kind for e in session.scalars(select(Event).where(Event.rollout_id == rollout_id))]
    assert EventKind.ACCESS_CHANGED in kinds
