"""When a request was sent, as an advance binds to it: stamped on arrival on the bot's clock
(earlier when Slack's own timestamp shows it arrived late), read back by the work behind the
ack; and the Advance button's value, new and old."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from slack_bolt import BoltRequest

from bot.edge.listeners.actions import advance_value
from bot.edge.listeners.payloads import SENT_AT, sent_at_of, stamp_sent_at
from bot.errors import UsageError
from bot.usecases.advance import Intent, Where

NOW = datetime(2024, 3, 11, 17, 0, tzinfo=UTC)  # the bot's clock (the shell's may run ahead)


def request(slack_ts: str | None) -> BoltRequest:
    headers = {"x-slack-request-timestamp": [slack_ts]} if slack_ts is not None else {}
    return BoltRequest(body="", headers=headers)


def test_a_request_that_arrives_at_once_was_sent_now() -> None:
    req = request(str(int(time.time())))
    stamp_sent_at(req, NOW)
    assert sent_at_of(req) == NOW


def test_a_request_that_arrives_late_was_sent_by_the_end_of_slacks_second() -> None:
    req = request(str(int(time.time()) - 10))
    stamp_sent_at(req, NOW)
    sent = sent_at_of(req)
    assert sent is not None and NOW - timedelta(seconds=10) < sent < NOW - timedelta(seconds=8)


@pytest.mark.parametrize("slack_ts", [None, "", "soon", "9" * 40])
def test_without_a_usable_slack_timestamp_it_was_sent_on_arrival(slack_ts: str | None) -> None:
    req = request(slack_ts)
    stamp_sent_at(req, NOW)
    assert sent_at_of(req) == NOW


@pytest.mark.parametrize("stamp", [[], [""], ["yesterday"], ["2024-03-11T17:00:00"]])
def test_a_missing_or_unreadable_stamp_reads_as_none(stamp: list[str]) -> None:
    assert sent_at_of(BoltRequest(body="", headers={SENT_AT: stamp})) is None
    assert sent_at_of(None) is None


def test_the_advance_button_carries_its_step_and_an_old_one_the_click_time() -> None:
    assert advance_value("12:0:1", None) == (12, Intent(at=Where(0, 1)))
    req = BoltRequest(body="", headers={SENT_AT: [NOW.isoformat()]})
    assert advance_value("12", req) == (12, Intent(sent_at=NOW))
    for garbage in ("12:0", "12:a:1", "x", "12:0:1:2"):
        with pytest.raises(UsageError):
            advance_value(garbage, req)
