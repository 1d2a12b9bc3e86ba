"""Slack resends a request it thinks was not acked (X-Slack-Retry-Num): never a second rollout."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from sqlalchemy import func, select

from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from storage.models import Rollout
from tests.driver import FORM, SlackDriver


def test_a_retried_start_creates_nothing(
    driver: SlackDriver, slack: LocalSlack, bot_db: Database, channel: str
) -> None:
    driver.command("start retried-once")
    slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel)
    fields = {
        "team_id": driver.team_id,
        "channel_id": channel,
        "user_id": "W111",
        "command": "/rollout",
        "text": "start retried-once",
        "response_url": slack.response_url("retry"),
        "trigger_id": "1.2.3",
    }
    resp = driver.post_raw(
        urlencode(fields), FORM, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert resp.status == 200 and resp.body == ""
    time.sleep(0.5)
    with bot_db.reading() as session:
        count = session.scalar(
            select(func.count()).select_from(Rollout).where(Rollout.team_id == driver.team_id)
        )
    assert count == 1
    # The retry said nothing to anyone: no "already exists" reply for a request the user sent once.
    assert not slack.calls("response_url") or all(
        c.path != "/response/retry" for c in slack.calls("response_url")
    )
