"""What an operator sees of a real `rollout-bot serve` (its own, logging JSON): `/metrics` after a
scripted session, every log line as JSON with the rollout on the lines about it, `/readyz`
going red while the outbox is stuck and green once it drains."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from tests.conftest import SIGNING_SECRET, BotProcess, bot_env, fresh_postgres_database
from tests.driver import SlackDriver
from tests.e2e.observe_support import json_lines, readyz, scrape, task_ids, total
from tests.e2e_rollouts import Scenario
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e

SECRETS = ("xoxb-test-token", SIGNING_SECRET, "test-api-key", "test-app-key")


@pytest.fixture
def own_slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.fixture(
    params=[
        ("sqlite", 1),
        ("sqlite", 2),
        pytest.param(("postgres", 2), marks=pytest.mark.postgres),
    ],
    ids=["sqlite-one-web-worker", "sqlite-two-web-workers", "postgres-two-web-workers"],
)
def bot(
    request: pytest.FixtureRequest, tmp_path: Path, own_slack: LocalSlack, datadog: FakeDatadog
) -> Iterator[BotProcess]:
    backend, workers = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'obs.db'}"
    else:
        url = request.getfixturevalue("obs_postgres")
    env = bot_env(
        url,
        own_slack,
        datadog,
        LOG_FORMAT="json",
        WEB_CONCURRENCY=str(workers),
        READY_OUTBOX_STUCK_SECONDS="2",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = BotProcess(env, tmp_path / "bot.log").start()
    process.database_url = url  # type: ignore[attr-defined]
    yield process
    process.kill()


@pytest.fixture
def obs_postgres() -> Iterator[str]:
    with fresh_postgres_database("rollout_obs") as url:
        yield url


@pytest.fixture
def sc(bot: BotProcess, own_slack: LocalSlack, datadog: FakeDatadog) -> Iterator[Scenario]:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    driver = SlackDriver(bot.url, SIGNING_SECRET, own_slack, team_id="TOBS", channel_id=channel)
    db = Database(bot.database_url)  # type: ignore[attr-defined]
    yield Scenario(driver, own_slack, datadog, db, channel, feature="obs-" + channel.lower())
    db.dispose()


def announced(slack: LocalSlack, channel: str, fragment: str) -> None:
    wait_until(
        lambda: [m for m in slack.messages(channel) if fragment in m.get("text", "") + "\n" + body(m)],
        what=f"{fragment!r} in {channel}",
        timeout=20,
    )


def test_a_session_moves_the_counters_logs_json_with_the_rollout_and_readiness_follows_the_outbox(
    bot: BotProcess, sc: Scenario
) -> None:
    stake = "C" + uuid.uuid4().hex[:10].upper()
    before = scrape(bot.url)
    assert total(before, "rollout_bot_requests_total") == 0

    # start, with a stakeholder channel: its announcements go through the outbox
    sc.datadog.set_value(sc.errors_match, 1.0)
    assert (
        sc.driver.command(f"start {sc.feature} aggressive --stakeholders <#{stake}|launches>").status == 200
    )
    sc.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == sc.channel, timeout=10)
    sc.rollout_id = wait_until(sc._find_id, what="the rollout")
    announced(sc.slack, stake, "Rollout started")

    # ticks
    status = sc.status_message()
    assert sc.driver.toggle(status, str(task_ids(sc.db, sc.rollout_id)[0])).status == 200
    sc.slack.wait_for("chat.update", lambda c: c.params.get("ts") == status["ts"], timeout=10)

    # an advance while Datadog fails: no data, blocked
    sc.ready()
    sc.datadog.fail(sc.errors_match, 500)
    blocked = sc.command(f"advance {sc.feature}", count=2)
    assert "advanced" not in body(blocked)

    # an announcement while Slack rate-limits: posted once, after a retry
    # Green once what the session queued is delivered (a loaded machine may take a moment).
    wait_until(lambda: readyz(bot.url)[0] == 200, what="/readyz green before the rate limit")
    sc.slack.fail_next("chat.postMessage", status=429, retry_after=4)
    sc.command(f"update {sc.feature} holding at 5%")
    red = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(readyz(bot.url)), what="/readyz red")
    assert red[1]["checks"]["outbox"]["ok"] is False and red[1]["checks"]["database"]["ok"] is True
    announced(sc.slack, stake, "holding at 5%")
    announced(sc.slack, sc.channel, "holding at 5%")
    green = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(readyz(bot.url)), what="/readyz green")
    assert all(check["ok"] for check in green[1]["checks"].values())

    after = scrape(bot.url)
    # the web process: requests by kind, and how fast they were acked
    assert total(after, "rollout_bot_requests_total", kind="command", outcome="acked") >= 3
    assert total(after, "rollout_bot_requests_total", kind="action", outcome="acked") >= 1
    assert total(after, "rollout_bot_ack_seconds_count", kind="command") >= 3
    # the work process's metrics, through the shared folder
    listeners = {
        dict(labels).get("listener") for name, labels in after if name == "rollout_bot_work_seconds_count"
    }
    assert listeners >= {"work", "toggle"}, listeners
    assert total(after, "rollout_bot_work_seconds_count", outcome="ok") >= 4
    assert total(after, "rollout_bot_outbox_delivered_total") >= 4
    assert total(after, "rollout_bot_outbox_retried_total", error="ratelimited") >= 1
    assert total(after, "rollout_bot_datadog_query_seconds_count", outcome="ok") >= 1  # the baseline
    assert total(after, "rollout_bot_datadog_query_seconds_count", outcome="error") >= 1
    assert total(after, "rollout_bot_gate_decisions_total", decision="blocked") == 1
    assert total(after, "rollout_bot_gate_decisions_total", decision="advanced") == 0
    # read from the database at the scrape
    assert total(after, "rollout_bot_outbox_pending") == 0
    assert total(after, "rollout_bot_work_queue_depth") == 0
    assert ("rollout_bot_work_heartbeat_age_seconds", ()) in after

    # every line is JSON; the lines about the rollout carry its id
    time.sleep(0.5)
    lines = json_lines(bot.log_path)
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    about = [
        line
        for line in lines
        if line.get("feature") == sc.feature
        or sc.feature in line["message"]
        or line["logger"] in ("bot.metrics.datadog", "bot.delivery.outbox")
    ]
    assert any(line["logger"] == "bot.metrics.datadog" for line in about), lines
    assert any(line["logger"] == "bot.delivery.outbox" and "ratelimited" in line["message"] for line in about)
    for line in about:
        assert line.get("rollout_id") == sc.rollout_id, line
    text = bot.log_path.read_text()
    for secret in SECRETS:
        assert secret not in text
