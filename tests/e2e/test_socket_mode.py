"""Socket Mode, end to end: `rollout-bot serve` with SLACK_APP_TOKEN connects to a local Socket
Mode server (tests/fakes/socket_mode.py) at the URL the local Slack's `apps.connections.open`
hands out, and a rollout goes from start to an advance over the socket: a slash command, block
actions and a view submission, each acked by its envelope id, with the connection dropped
once on the way. Acks never wait on the work: an advance whose Datadog read takes seconds is
acked at once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from storage.enums import EventKind
from tests.conftest import BotProcess, bot_env
from tests.e2e.observe_support import readyz, scrape, task_ids, total
from tests.e2e_rollouts import Scenario
from tests.fakes.datadog_api import FakeDatadog
from tests.fakes.socket_mode import SocketDriver, SocketModeServer
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e

SLOW_DATADOG_S = 3.0


@pytest.fixture
def server() -> Iterator[SocketModeServer]:
    with SocketModeServer() as found:
        yield found


@pytest.fixture
def own_slack(server: SocketModeServer) -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        fake.set_socket_url(server.url)
        yield fake


@pytest.fixture
def bot(tmp_path: Path, own_slack: LocalSlack, datadog: FakeDatadog) -> Iterator[BotProcess]:
    env = bot_env(
        f"sqlite:///{tmp_path / 'socket.db'}", own_slack, datadog, SLACK_APP_TOKEN="xapp-1-A111-test"
    )
    env.pop("SLACK_SIGNING_SECRET")
    process = BotProcess(env, tmp_path / "bot.log").start()
    yield process
    process.kill()


def test_a_rollout_from_start_to_an_advance_over_socket_mode(
    bot: BotProcess, server: SocketModeServer, own_slack: LocalSlack, datadog: FakeDatadog, tmp_path: Path
) -> None:
    server.wait_connected()
    assert own_slack.calls("apps.connections.open")
    channel = "C" + uuid.uuid4().hex[:10].upper()
    driver = SocketDriver(server, own_slack, team_id="TSOCK", channel_id=channel)
    db = Database(f"sqlite:///{tmp_path / 'socket.db'}")
    sc = Scenario(driver, own_slack, datadog, db, channel, feature="sock-" + channel.lower())
    try:
        # a slash command: acked by its envelope, the status message posted by the work process
        datadog.set_value(sc.errors_match, 1.0)
        sc.start("aggressive")
        assert "Starting" in body(driver.acked[0]["payload"])

        # a block action
        status = sc.status_message()
        driver.toggle(status, str(task_ids(db, sc.rollout_id)[0]))
        own_slack.wait_for("chat.update", lambda c: c.params.get("ts") == status["ts"], timeout=10)

        # Slack drops the connection; the bot connects again by itself
        server.drop()
        server.wait_connected(count=2)
        assert len(own_slack.calls("apps.connections.open")) >= 2

        # an advance whose Datadog read is slow is acked at once; the gate blocks it
        sc.ready()
        datadog.set_value(sc.errors_match, 1.5, delay=SLOW_DATADOG_S)
        sent = time.monotonic()
        driver.command(f"advance {sc.feature}")
        assert time.monotonic() - sent < SLOW_DATADOG_S / 2, "the ack waited on the work"
        blocked = driver.wait_reply(timeout=20, count=2)
        assert "*Error rate* 1.00% → 1.50%" in str(blocked), blocked

        # "Advance anyway": a block action opens a form, its submission (a view) advances
        driver.click({**blocked, "ts": "1700000000.000001"}, "advance_anyway")
        view = sc.opened_view("advance_override")
        driver.submit_view(view, {"reason": "internal canary cohort"})
        wait_until(lambda: sc.where() == ("active", 1, 0), what="the rollout at its next step")
        assert [kind for kind, _, _ in sc.events(EventKind.OVERRIDDEN)] == [EventKind.OVERRIDDEN]

        # every envelope was acked by its id, and the socket's requests are counted
        assert len(driver.acked) == 5 and len(server.acks) == 5
        samples = scrape(bot.url)
        assert total(samples, "rollout_bot_requests_total", kind="command", outcome="acked") == 2
        assert total(samples, "rollout_bot_requests_total", kind="action", outcome="acked") == 2
        assert total(samples, "rollout_bot_requests_total", kind="view", outcome="acked") == 1
        assert total(samples, "rollout_bot_gate_decisions_total", decision="overridden") == 1
        assert readyz(bot.url)[0] == 200
    finally:
        db.dispose()
