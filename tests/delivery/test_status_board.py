"""Edits of the status message are coalesced per message, in the database: two replicas ticking
boxes of one rollout at once take turns at the message instead of racing each other, and the
last edit Slack receives shows the newest revision. An edit Slack refuses waits in the
message's `refresh` row and the due-work tick finishes it.

Each replica is Services on an engine of its own over the one database, as two `serve`
processes are; Slack is the local stand-in, made slow where a test needs an edit in flight."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot.delivery import jobs, status_board
from bot.devtools.local_slack import LocalSlack
from bot.domain.plans.model import Phase, Plan, Step
from bot.domain.rollouts import event as make_event
from bot.domain.rollouts import new_rollout
from bot.domain.schedule import Kind
from bot.services import Actor, Services
from bot.usecases import checklist, schedule
from bot.usecases.checklist import ItemChange
from storage.db import Database
from storage.enums import EventKind
from storage.models import ChecklistItem, DueJob, Rollout, SlackMessage
from tests.support import Clock, make_services, wait_until

TEAM = "T111"
OWNER = "WOWNER0001"
PLAN = Plan(
    name="boxes",
    title="Boxes",
    phases=(
        Phase("Canary", steps=(Step(5, None, 1),), tasks=tuple(f"Task {n}" for n in range(1, 5))),
        Phase("General availability", steps=(Step(100),)),
    ),
)


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 3, 11, 17, 0, tzinfo=UTC))


@pytest.fixture
def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


@pytest.fixture
def other_replica(db: Database) -> Iterator[Database]:
    second = Database(db.url)
    yield second
    second.dispose()


def start(svc: Services, channel: str) -> tuple[int, list[int]]:
    """A rollout with four tasks and its status message posted; its id and the task ids."""
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = new_rollout(
            PLAN,
            team_id=TEAM,
            channel_id=channel,
            feature=f"boxes-{uuid.uuid4().hex[:6]}",
            owner_id=OWNER,
            created_by=OWNER,
            flag_key=None,
            service=None,
            stakeholders=[],
            timezone="UTC",
            country="US",
            now=now,
        )
        session.add(rollout)
        session.flush()
        session.add(make_event(rollout, EventKind.STARTED, OWNER, now))
        schedule.reschedule(session, rollout, now)
        rollout_id = rollout.id
    status_board.post(svc, rollout_id)
    with svc.db.reading() as session:
        items = session.scalars(
            select(ChecklistItem.id).where(ChecklistItem.rollout_id == rollout_id).order_by(ChecklistItem.id)
        ).all()
    return rollout_id, list(items)


def tick(svc: Services, channel: str, user: str, rollout_id: int, item: int) -> str | None:
    """What the checklist listener does with a click: apply it, then refresh the message."""
    checklist.set_items(svc, Actor(TEAM, user, channel), rollout_id, [ItemChange(item, True)])
    return status_board.refresh(svc, rollout_id)


def edits(slack: LocalSlack, channel: str) -> list[dict[str, Any]]:
    return [c.params for c in slack.calls("chat.update") if c.params.get("channel") == channel]


def ticked(params: dict[str, Any]) -> set[int]:
    return {
        int(option["value"])
        for block in params["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["type"] == "checkboxes"
        for option in element.get("initial_options", [])
    }


def refresh_row(db: Database, rollout_id: int) -> DueJob | None:
    with db.reading() as session:
        return session.scalars(
            select(DueJob).where(DueJob.rollout_id == rollout_id, DueJob.kind == Kind.REFRESH)
        ).one_or_none()


def shown_and_committed(db: Database, rollout_id: int) -> tuple[int, int]:
    with db.reading() as session:
        shown = session.scalar(
            select(SlackMessage.rendered_revision).where(SlackMessage.rollout_id == rollout_id)
        )
        committed = session.scalar(select(Rollout.revision).where(Rollout.id == rollout_id))
    assert shown is not None and committed is not None
    return shown, committed


def test_two_replicas_ticking_at_once_take_turns_at_the_message_and_end_on_the_newest(
    db: Database, other_replica: Database, slack: LocalSlack, clock: Clock, channel: str
) -> None:
    ana = make_services(db, slack, clock)
    bob = make_services(other_replica, slack, clock)
    rollout_id, items = start(ana, channel)
    slack.set_delay("chat.update", 1.0)  # Ana's edit is still on its way when Bob ticks
    answers: list[str | None] = []
    first = threading.Thread(target=lambda: answers.append(tick(ana, channel, "WANA", rollout_id, items[0])))
    first.start()
    wait_until(lambda: refresh_row(db, rollout_id), what="Ana's replica editing the status message")

    # Bob's replica sees the message being edited: it asks for one more round and is done.
    assert tick(bob, channel, "WBOB", rollout_id, items[1]) is None

    first.join(15)
    assert answers == [None]
    sent = edits(slack, channel)
    assert len(sent) == 2  # Ana's edit, and one more round for Bob's tick: never two at once
    assert ticked(sent[-1]) == {items[0], items[1]}
    assert refresh_row(db, rollout_id) is None
    shown, committed = shown_and_committed(db, rollout_id)
    assert shown == committed


def test_ticks_while_an_edit_is_on_its_way_become_one_more_edit_of_the_newest_state(
    db: Database, slack: LocalSlack, clock: Clock, channel: str
) -> None:
    svc = make_services(db, slack, clock)
    rollout_id, items = start(svc, channel)
    slack.set_delay("chat.update", 1.0)
    first = threading.Thread(target=tick, args=(svc, channel, "WANA", rollout_id, items[0]))
    first.start()
    wait_until(lambda: refresh_row(db, rollout_id), what="the first edit under way")

    for n, item in enumerate(items[1:]):
        assert tick(svc, channel, f"WPEOPLE{n}", rollout_id, item) is None

    first.join(15)
    sent = edits(slack, channel)
    assert len(sent) == 2  # four ticks, two edits
    assert ticked(sent[-1]) == set(items)
    assert ticked(slack.message(channel, sent[-1]["ts"])) == set(items)


def test_an_edit_slack_refuses_waits_in_the_refresh_row_and_the_due_work_tick_lands_it(
    db: Database, slack: LocalSlack, clock: Clock, channel: str
) -> None:
    svc = make_services(db, slack, clock)
    rollout_id, items = start(svc, channel)
    slack.fail_next("chat.update", error="ratelimited")

    assert tick(svc, channel, "WANA", rollout_id, items[0]) == "ratelimited"

    waiting = refresh_row(db, rollout_id)
    assert waiting is not None and waiting.data == {"attempt": 1, "error": "ratelimited"}
    assert len(edits(slack, channel)) == 1  # the one Slack refused
    clock.move(3)  # the first retry is 2 s later
    jobs.run_due(svc)
    sent = edits(slack, channel)
    assert len(sent) == 2 and ticked(sent[-1]) == {items[0]}
    assert ticked(slack.message(channel, sent[-1]["ts"])) == {items[0]}
    assert refresh_row(db, rollout_id) is None
    shown, committed = shown_and_committed(db, rollout_id)
    assert shown == committed
