"""`/rollout timeline`: 500 events page through Slack's limits, each shown once, newest first."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.devtools.local_slack import LocalSlack
from bot.edge import subcommands
from bot.edge.listeners.actions import timeline_cursor
from bot.edge.parsing import OnRollout, parse_command
from bot.errors import RolloutNotFound, UsageError
from bot.services import Actor, Services
from bot.usecases import start as starting
from messages.text import MAX_BLOCKS, MAX_SECTION_TEXT
from messages.timeline import timeline_message
from messages.views import EventView, TimelineView
from storage.db import Database
from storage.enums import EventKind
from storage.models import Event
from tests.support import Clock, make_services

TEAM, CHANNEL = "T1", "C1"
OWNER = Actor(TEAM, "U_OWNER", CHANNEL)
NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


@pytest.fixture
def svc(db: Database) -> Iterator[Services]:
    with LocalSlack() as slack:
        yield make_services(db, slack, Clock(NOW))


def with_events(svc: Services, count: int) -> int:
    """A rollout with `count` events in all (its start is one): checklist ticks, two of every
    ten at the same instant as the one before (ties are ordered by id), every 50th an override
    with a reason longer than a line may be."""
    rollout_id = starting.start(svc, OWNER, starting.Start(feature="checkout-v2", template="standard"))
    with svc.db.transaction() as session:
        for n in range(1, count):
            at = NOW + timedelta(minutes=n - (n % 10 in (3, 4)))
            if n % 50 == 0:
                data: dict[str, Any] = {"from_step": "1%", "to_step": "25%", "reason": f"#{n} " + "r" * 4000}
                kind = EventKind.OVERRIDDEN
            else:
                data, kind = {"text": f"item #{n}"}, EventKind.ITEM_CHECKED
            session.add(Event(rollout_id=rollout_id, kind=kind, actor_id="U_QA", at=at, data=data))
    return rollout_id


def lines(message: Any) -> list[str]:
    sections = [b["text"]["text"] for b in message.blocks if b["type"] == "section"][1:]
    return [line for s in sections for line in s.split("\n")]


def within_slack_limits(message: Any) -> None:
    assert len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT


def older_button(message: Any) -> str | None:
    actions = [b for b in message.blocks if b["type"] == "actions"]
    return actions[0]["elements"][0]["value"] if actions else None


def test_500_events_page_through_every_one_once_newest_first(svc: Services) -> None:
    rollout_id = with_events(svc, 500)
    message = subcommands.timeline(svc, OWNER, rollout_id)
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        within_slack_limits(message)
        page_lines = lines(message)
        assert len(page_lines) == 50 or older_button(message) is None
        seen += page_lines
        cursor = older_button(message)
        if cursor is None:
            break
        rid, before, number = timeline_cursor(cursor)
        assert (rid, number) == (rollout_id, pages + 1)
        message = subcommands.timeline(svc, OWNER, rid, before, number)
    assert pages == 10
    assert len(seen) == 500
    numbers = [int(m.group(1)) for line in seen if (m := re.search(r"#(\d+)", line))]
    assert len(numbers) == 499 and len(set(numbers)) == 499  # the start has no number
    # Newest first: by time, and by id among events of the same instant.
    assert numbers == sorted(numbers, key=lambda n: (n - (n % 10 in (3, 4)), n), reverse=True)
    assert "started the rollout" in seen[-1]
    assert "Page 10: 50 of 500 events." in str(message.blocks[-1])
    override = next(line for line in seen if "#450" in line)
    assert "advanced 1% → *25%* *past a closed gate*. Reason: _#450 rrr" in override
    assert len(override) <= 500


def test_a_page_stops_where_slack_would_refuse_it_and_the_next_starts_there() -> None:
    long = "x" * 2000
    events = tuple(
        EventView(
            "overridden", "U1", NOW - timedelta(minutes=i), {"reason": long, "to_step": "5%"}, id=1000 - i
        )
        for i in range(400)
    )
    view = TimelineView(7, "f", "UTC", events, older=False, total=400)
    message, shown = timeline_message(view)
    within_slack_limits(message)
    assert 0 < shown < 400
    assert older_button(message) == f"7:{1000 - shown + 1}:2"


def test_the_command_parses_and_refuses_other_workspaces(svc: Services) -> None:
    assert parse_command("timeline checkout-v2") == OnRollout("timeline", "checkout-v2")
    assert parse_command("timeline") == OnRollout("timeline", None)
    rollout_id = with_events(svc, 3)
    with pytest.raises(RolloutNotFound):
        subcommands.timeline(svc, Actor("T_OTHER", "U1", CHANNEL), rollout_id)
    for forged in ("1:2", "a:b:c", "1:2:3:4", "99999999999:1:2"):
        with pytest.raises(UsageError):
            timeline_cursor(forged)
