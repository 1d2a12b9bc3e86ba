"""`/rollout status` links to the live status message. A message's permalink never changes, so
Slack is asked for it once (`chat.getPermalink`) and the answer is kept on the message's row:
the next status, from this replica or another, costs no Slack call beyond its reply. A refusal
is not kept: the next status asks again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.delivery import status_board
from bot.devtools.local_slack import LocalSlack
from bot.edge import subcommands
from bot.services import Actor, Services
from storage.db import Database
from storage.models import SlackMessage
from tests.delivery.test_status_board import TEAM, start
from tests.support import make_services

ASKER = "WASKER0001"


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


def status_text(svc: Services, channel: str, rollout_id: int) -> str:
    message = subcommands.status(svc, Actor(TEAM, ASKER, channel), rollout_id)
    return str(message.as_kwargs()["blocks"])


def kept(db: Database, rollout_id: int) -> str | None:
    with db.reading() as session:
        return session.scalar(select(SlackMessage.permalink).where(SlackMessage.rollout_id == rollout_id))


def test_the_second_status_asks_slack_for_no_permalink(db: Database, slack: LocalSlack) -> None:
    svc = make_services(db, slack)
    channel = "C" + uuid.uuid4().hex[:9].upper()
    rollout_id, _ = start(svc, channel)
    ts = kept_ts(db, rollout_id)
    link = f"/archives/{channel}/p{ts.replace('.', '')}"
    slack.clear_calls()

    assert link in status_text(svc, channel, rollout_id)
    assert len(slack.calls("chat.getPermalink")) == 1
    assert kept(db, rollout_id) is not None and link in str(kept(db, rollout_id))

    assert link in status_text(svc, channel, rollout_id)
    other_replica = make_services(Database(db.url), slack)
    try:
        assert link in status_text(other_replica, channel, rollout_id)
    finally:
        other_replica.db.dispose()
    assert len(slack.calls("chat.getPermalink")) == 1
    assert [c.method for c in slack.calls()] == ["chat.getPermalink"]


def test_a_refused_permalink_is_asked_for_again(db: Database, slack: LocalSlack) -> None:
    svc = make_services(db, slack)
    channel = "C" + uuid.uuid4().hex[:9].upper()
    rollout_id, _ = start(svc, channel)
    slack.clear_calls()
    slack.fail_next("chat.getPermalink", error="message_not_found")

    assert status_board.permalink(svc, rollout_id) is None
    assert kept(db, rollout_id) is None

    assert status_board.permalink(svc, rollout_id) is not None
    assert status_board.permalink(svc, rollout_id) == kept(db, rollout_id)
    assert len(slack.calls("chat.getPermalink")) == 2


def kept_ts(db: Database, rollout_id: int) -> str:
    with db.reading() as session:
        ts = session.scalar(select(SlackMessage.ts).where(SlackMessage.rollout_id == rollout_id))
    assert ts is not None
    return ts
