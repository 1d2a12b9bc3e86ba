"""A freeze, end to end: signed Slack requests to the real `rollout-bot serve` (SQLite and
Postgres), Datadog answered by the local fake. A workspace admin adds a freeze that covers
today; the owner's `/rollout advance` is refused with the freeze's name and end and an
"Advance anyway…" button, whose form takes the advance through with a reason, recorded like
any override. Auto-advance is switched on from the command and off from the status message.

Each test has a workspace of its own (the `driver` fixture), so the freeze holds nobody else's
rollouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from storage.enums import EventKind
from tests.driver import SlackDriver
from tests.e2e_rollouts import Scenario, buttons, new_user
from tests.fakes.datadog_api import FakeDatadog
from tests.support import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def sc(
    driver: SlackDriver, slack: LocalSlack, datadog: FakeDatadog, bot_db: Database, channel: str
) -> Scenario:
    return Scenario(driver, slack, datadog, bot_db, channel)


def test_a_freeze_refuses_the_owners_advance_and_advance_anyway_takes_it_through_with_a_reason(
    sc: Scenario, slack: LocalSlack
) -> None:
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.start("aggressive")
    sc.ready()
    admin = new_user()
    slack.set_admin(admin)
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=1), today + timedelta(days=1)  # today, in any time zone

    refused_add = sc.command(f'freeze add {first} {last} "release freeze"')
    assert refused_add["text"] == ":no_entry_sign: Only workspace admins can add a freeze."
    added = sc.command(f'freeze add {first} {last} "release freeze"', user=admin)
    assert f"“release freeze”: no advance from {first} to {last}" in added["text"]

    refused = sc.refused_advance()
    assert refused["text"].startswith(
        f":no_entry_sign: *{sc.feature}* is not advanced now: freeze “release freeze” until "
    )
    assert "America/Los_Angeles. Advance anyway with a reason, or wait until then." in refused["text"]
    assert buttons(refused) == [("advance_anyway", f"{sc.rollout_id}:0:0")]
    assert sc.where() == ("active", 0, 0)

    sc.click({**refused, "ts": "1700000000.000001"}, "advance_anyway")
    view = sc.opened_view("advance_override")
    reason = "the fix a paying customer waits for"
    assert sc.driver.submit_view(view, {"reason": reason}).status == 200

    (answer,) = sc.ephemerals(sc.owner)
    assert answer["text"] == f":warning: Advanced anyway from 5% to *50%*. Reason: {reason}"
    assert sc.where() == ("active", 1, 0)
    [(_, who, data)] = sc.events(EventKind.OVERRIDDEN)
    assert who == sc.owner and data["reason"] == reason
    assert data["blockers"][0].startswith("Not an allowed time: freeze “release freeze” until ")
    sc.wait_status("Now at *50%* of *Gradual Rollout*")


def test_auto_advance_is_switched_on_by_command_and_off_from_the_status_message(sc: Scenario) -> None:
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.start("aggressive")

    on = sc.command(f"auto on {sc.feature}")
    assert on["text"].startswith(f":robot_face: *{sc.feature}*: auto-advance is on")
    status = sc.wait_status("auto: next check at ")
    assert ("auto_off", str(sc.rollout_id)) in buttons(status)

    sc.click(status, "auto_off")
    wait_until(lambda: not sc.rollout().auto_advance, what="auto-advance off")
    wait_until(lambda: ("auto_on", str(sc.rollout_id)) in buttons(sc.status_message()), what="the On button")
    assert "auto:" not in str(sc.status_message())
    assert [data for _, _, data in sc.events(EventKind.AUTO_CHANGED)] == [{"auto": True}, {"auto": False}]
