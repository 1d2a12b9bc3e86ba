"""Milestone announcements through the running bot: `rollout-bot serve` takes signed Slack
requests, commits each change with its outbox rows, and its scheduler posts them to the
status message's thread and the stakeholder channels (Slack is the local fake).

The first tests share the session's bot (SQLite, and Postgres when TEST_POSTGRES_URL is set).
The heavy ones start bots of their own on a Postgres database of their own, with a Slack fake
of their own: two replicas on one database, and a replica killed (SIGKILL) between commit and
delivery and replaced. They count announcements by the dedupe key each one carries in its
Slack message metadata.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.delivery.outbox import METADATA_EVENT
from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from storage.enums import OutboxState, SnapshotKind
from storage.models import OutboxMessage, Rollout
from tests.conftest import (
    POSTGRES_URL,
    SIGNING_SECRET,
    BotProcess,
    bot_env,
    fresh_postgres_database,
)
from tests.driver import SlackDriver
from tests.e2e_rollouts import Scenario
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e

Params = dict[str, Any]
# The outbox job runs every 5 s; a thread reply may wait one tick for the status message.
ANNOUNCED_WITHIN = 15.0


def new_channel() -> str:
    return "C" + uuid.uuid4().hex[:10].upper()


def key_of(message: Params) -> str | None:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != METADATA_EVENT:
        return None
    return (metadata.get("event_payload") or {}).get("key")


def announcements(slack: LocalSlack, channel: str) -> list[Params]:
    """Messages the outbox left in `channel` (thread replies too), oldest first."""
    return [m for m in slack.messages(channel) if key_of(m)]


def shown(message: Params) -> str:
    """What a person reads: the sections of the message (its `text` is the push text)."""
    return "\n".join(
        b["text"]["text"] for b in message.get("blocks") or [] if b.get("type") == "section" and b.get("text")
    )


def wait_announced(
    slack: LocalSlack, channel: str, fragment: str, timeout: float = ANNOUNCED_WITHIN
) -> Params:
    """The one announcement in `channel` whose push text or sections have `fragment` (waits for it)."""
    found = wait_until(
        lambda: [m for m in announcements(slack, channel) if fragment in m["text"] + "\n" + shown(m)],
        timeout,
        f"an announcement with {fragment!r} in {channel}",
    )
    assert len(found) == 1, found
    return found[0]


def start(sc: Scenario, stakeholders: str, template: str = "aggressive") -> None:
    """`/rollout start ... --stakeholders <#C|name>`; waits like Scenario.start."""
    sc.datadog.set_value(sc.errors_match, 1.0)
    response = sc.driver.command(f"start {sc.feature} {template} --stakeholders <#{stakeholders}|launches>")
    assert response.status == 200, response
    sc.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == sc.channel, timeout=10)
    sc.rollout_id = wait_until(sc._find_id, what=f"rollout {sc.feature}")
    wait_until(lambda: sc.snapshots(SnapshotKind.BASELINE), what="the baseline snapshot")


def advance(sc: Scenario) -> Params:
    sc.ready()
    reply = sc.command(f"advance {sc.feature}", count=2)
    assert "advanced" in body(reply) or "completed" in body(reply).lower(), body(reply)
    return reply


@pytest.fixture
def stake() -> str:
    return new_channel()


@pytest.fixture
def sc(
    driver: SlackDriver, slack: LocalSlack, datadog: FakeDatadog, bot_db: Database, channel: str
) -> Scenario:
    return Scenario(driver, slack, datadog, bot_db, channel, feature="ann-" + channel.lower())


# --- through the session's bot --------------------------------------------------------------


def test_start_and_advance_are_announced_in_the_thread_and_to_stakeholders(sc: Scenario, stake: str) -> None:
    start(sc, stake)

    thread = wait_announced(sc.slack, sc.channel, "Rollout started")
    assert thread["thread_ts"] == sc.status_ts()
    assert shown(thread).startswith(f":rocket: *{sc.feature}* started with the *Aggressive rollout* plan")
    line = wait_announced(sc.slack, stake, "Rollout started")
    assert "thread_ts" not in line
    link = f"https://example.slack.com/archives/{sc.channel}/p{sc.status_ts().replace('.', '')}"
    assert shown(line) == (
        f":rocket: *{sc.feature}* rollout started by <@{sc.owner}> (owner) with the Aggressive rollout "
        f"plan. First step: 5%. Next: 50% of Gradual Rollout once the gate passes. "
        f"Details: <{link}|status thread>"
    )

    advance(sc)
    thread = wait_announced(sc.slack, sc.channel, "is now at")
    assert thread["thread_ts"] == sc.status_ts()
    assert f"*{sc.feature}* is now at *50%*" in shown(thread)
    line = wait_announced(sc.slack, stake, "moved to 50%")
    assert shown(line).startswith(
        f":arrow_up: *{sc.feature}* moved to 50% of Gradual Rollout by <@{sc.owner}>; the gate passed."
    )
    assert len(announcements(sc.slack, sc.channel)) == 2 and len(announcements(sc.slack, stake)) == 2


def test_the_status_link_is_asked_of_slack_once_and_kept(sc: Scenario, stake: str) -> None:
    start(sc, stake)
    first = wait_announced(sc.slack, stake, "Rollout started")

    sc.command(f"update {sc.feature} halfway there")
    second = wait_announced(sc.slack, stake, ":mega:")

    link = f"https://example.slack.com/archives/{sc.channel}/p{sc.status_ts().replace('.', '')}"
    assert shown(first).endswith(f"Details: <{link}|status thread>")
    assert shown(second).endswith(f"Details: <{link}|status thread>")
    # A permalink never changes: the first post asked Slack and kept it on the message's row.
    asked = [c for c in sc.slack.calls("chat.getPermalink") if c.params.get("channel") == sc.channel]
    assert len(asked) == 1


def test_pause_resume_and_rollback_are_announced(sc: Scenario, stake: str) -> None:
    start(sc, stake)

    sc.command(f"pause {sc.feature} support queue spiking")
    assert "support queue spiking" in shown(wait_announced(sc.slack, sc.channel, "paused at 5%"))
    assert "Why: support queue spiking." in shown(wait_announced(sc.slack, stake, "paused at 5%"))

    sc.command(f"resume {sc.feature}")
    wait_announced(sc.slack, sc.channel, "resumed at 5%")
    wait_announced(sc.slack, stake, "resumed at 5%")

    sc.command(f"rollback {sc.feature} error rate doubled")
    assert "error rate doubled" in shown(wait_announced(sc.slack, sc.channel, "rolled back from 5%"))
    assert "Why: error rate doubled." in shown(wait_announced(sc.slack, stake, "rolled back from 5%"))

    status_ts = sc.status_ts()
    assert all(m["thread_ts"] == status_ts for m in announcements(sc.slack, sc.channel))


def test_an_update_goes_to_both_with_the_text_escaped(sc: Scenario, stake: str) -> None:
    start(sc, stake)

    sc.command(f"update {sc.feature} <!channel> 5% & healthy <https://evil.example|click>")

    escaped = "&lt;!channel&gt; 5% &amp; healthy &lt;https://evil.example|click&gt;"
    thread = wait_announced(sc.slack, sc.channel, ":mega:")
    assert shown(thread).endswith("\n" + escaped), shown(thread)
    assert thread["thread_ts"] == sc.status_ts()
    line = wait_announced(sc.slack, stake, ":mega:")
    link = f"https://example.slack.com/archives/{sc.channel}/p{sc.status_ts().replace('.', '')}"
    assert shown(line) == (
        f":mega: *{sc.feature}* update from <@{sc.owner}> (at 5%): “{escaped}” Details: <{link}|status thread>"
    )
    # The push text is plain: nothing of the text can become a mention or a link either.
    assert line["text"] == f"Update on {sc.feature}: !channel 5% and healthy https://evil.example|click"
    for message in (thread, line):
        assert "<!channel>" not in message["text"] + shown(message)
        assert "<https://evil" not in message["text"] + shown(message)


def test_slack_failing_the_first_two_posts_of_an_announcement_posts_it_once(sc: Scenario, stake: str) -> None:
    start(sc, stake)  # the status message is posted: the posts from here on are the outbox's
    armed = time.time()
    # Only the outbox's posts (they carry its key) take the 500s: a status message another
    # test's bot is still posting must not use them up.
    sc.slack.fail_next(
        "chat.postMessage", times=2, status=500, only=lambda params: key_of(params) is not None
    )
    sc.command(f"update {sc.feature} after the storm")

    wait_announced(sc.slack, sc.channel, "after the storm")
    wait_announced(sc.slack, stake, "after the storm")
    time.sleep(1.0)  # a duplicate would come right behind

    # Whichever announcements took the two 500s (this rollout's, or one still queued by an
    # earlier test), each was posted exactly once. The announcements posted since the 500s were
    # armed, with every attempt at them: a post that arrived just before (the start's own
    # announcements) is stamped with its arrival and may still have been answered with a 500.
    keys = {
        key_of(c.params) for c in sc.slack.calls("chat.postMessage") if c.at >= armed and key_of(c.params)
    }
    attempts = [c for c in sc.slack.calls("chat.postMessage") if key_of(c.params) in keys]
    assert len(attempts) == len(keys) + 2, "the two 500s did not reach the outbox's posts"
    channels = {c.params["channel"] for c in attempts}
    posted = Counter(
        k for channel in channels for m in announcements(sc.slack, channel) if (k := key_of(m)) in keys
    )
    assert posted == dict.fromkeys(keys, 1)
    with sc.db.reading() as s:
        states = s.scalars(select(OutboxMessage.state).where(OutboxMessage.dedupe_key.in_(keys))).all()
    assert len(states) == len(keys) and set(states) == {OutboxState.SENT}


# --- bots of their own on a Postgres database of their own ------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[str]:
    """A fresh, migrated Postgres database no other bot of the test run is using."""
    if not POSTGRES_URL:
        pytest.skip(
            "two replicas need a shared Postgres: set TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test"
        )
    with fresh_postgres_database("rollout_ann") as url:
        yield url


@pytest.fixture
def own_slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


class Fleet:
    """Bots on one database; each rollout gets a driver per bot, so its commands can go to
    whichever replica the test picks."""

    def __init__(self, url: str, slack: LocalSlack, datadog: FakeDatadog, folder: Path) -> None:
        self.url, self.slack, self.datadog, self.folder = url, slack, datadog, folder
        self.bots: list[BotProcess] = []
        self.db = Database(url)

    def start_bots(self, count: int = 1) -> list[BotProcess]:
        """Starts `count` more bots side by side (each takes a moment to answer /healthz)."""
        new = [
            BotProcess(
                bot_env(self.url, self.slack, self.datadog), self.folder / f"bot-{len(self.bots) + i}.log"
            )
            for i in range(count)
        ]
        self.bots += new
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(BotProcess.start, new))
        return new

    def scenario(self, feature: str) -> tuple[Scenario, list[SlackDriver]]:
        channel, team = new_channel(), "T" + uuid.uuid4().hex[:8].upper()
        drivers = [
            SlackDriver(b.url, SIGNING_SECRET, self.slack, team_id=team, channel_id=channel)
            for b in self.bots
        ]
        return Scenario(drivers[0], self.slack, self.datadog, self.db, channel, feature=feature), drivers

    def stop(self) -> None:
        for bot in self.bots:
            bot.kill(signal.SIGKILL)  # nothing left to finish: the test has counted
        self.db.dispose()


@pytest.fixture
def fleet(own_postgres: str, own_slack: LocalSlack, datadog: FakeDatadog, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(own_postgres, own_slack, datadog, tmp_path)
    yield fleet
    fleet.stop()


def outbox_rows(db: Database) -> list[OutboxMessage]:
    with db.reading() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def all_announcements(slack: LocalSlack, channels: set[str]) -> Counter[str]:
    """How many messages carry each outbox key, over `channels`."""
    return Counter(key for c in channels for m in announcements(slack, c) if (key := key_of(m)))


def settle(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Waits for `check`, then a moment more: a late duplicate would show up in that moment."""
    wait_until(check, timeout, what)
    time.sleep(0.5)


ROLLOUTS = 15
# What each rollout goes through, in order, and the milestone key each one announces.
SCRIPT = ["start", "advance", "update", "advance", "advance"]
MILESTONES = ["started", "step:1:0", "update:", "step:1:1", "completed"]


def test_two_replicas_on_one_database_announce_every_milestone_exactly_once(fleet: Fleet) -> None:
    fleet.start_bots(2)
    stake = new_channel()  # every rollout tells the same stakeholder channel
    run = uuid.uuid4().hex[:6]

    def drive(n: int) -> tuple[int, str]:
        sc, drivers = fleet.scenario(f"rep-{run}-{n}")
        for step, action in enumerate(SCRIPT):
            sc.driver = drivers[(n + step) % len(drivers)]  # alternate replicas, command by command
            if action == "start":
                start(sc, stake)
            elif action == "advance":
                advance(sc)
            else:
                sc.command(f"update {sc.feature} step {step} <ok>")
        return sc.rollout_id, sc.channel

    with ThreadPoolExecutor(max_workers=ROLLOUTS) as pool:
        driven = list(pool.map(drive, range(ROLLOUTS)))

    channels = {stake, *(channel for _, channel in driven)}
    expected = ROLLOUTS * len(MILESTONES) * 2
    settle(lambda: len(all_announcements(fleet.slack, channels)) >= expected, f"{expected} announcements", 30)
    counts = all_announcements(fleet.slack, channels)
    duplicates = sum(n - 1 for n in counts.values())
    missing = []
    for rollout_id, channel in driven:
        for milestone in MILESTONES:
            for where in (channel, stake):
                prefix = f"{rollout_id}:{milestone}"
                found = [k for k in counts if k.startswith(prefix) and k.endswith(f":{where}")]
                if len(found) != 1:
                    missing.append((prefix, where, found))
    print(
        f"\ntwo replicas: {ROLLOUTS} rollouts, {ROLLOUTS * len(MILESTONES)} milestones, "
        f"{sum(counts.values())} announcements posted for {expected} expected, "
        f"{duplicates} duplicates, {len(missing)} missing"
    )
    assert duplicates == 0, [k for k, n in counts.items() if n > 1]
    assert missing == []
    assert len(counts) == expected
    rows = outbox_rows(fleet.db)
    assert len(rows) == expected and {r.state for r in rows} == {OutboxState.SENT}
    with fleet.db.reading() as s:
        assert all(r.status.value == "completed" for r in s.scalars(select(Rollout)))


def test_a_replica_killed_between_commit_and_delivery_is_replaced_without_loss_or_repeats(
    fleet: Fleet,
) -> None:
    [first] = fleet.start_bots()
    stake = new_channel()
    run = uuid.uuid4().hex[:6]
    scenarios = [fleet.scenario(f"kill-{run}-{n}")[0] for n in range(4)]
    with ThreadPoolExecutor(max_workers=len(scenarios)) as pool:
        list(pool.map(lambda sc: start(sc, stake), scenarios))
    channels = {stake, *(sc.channel for sc in scenarios)}

    # Slack turns slow: the next post hangs, the rows behind it wait (claimed, or not yet).
    fleet.slack.set_delay("chat.postMessage", 2.0)
    for sc in scenarios:
        sc.command(f"update {sc.feature} before the crash")

    def in_flight() -> list[OutboxMessage]:
        return [r for r in outbox_rows(fleet.db) if r.state == OutboxState.PENDING and r.attempts > 0]

    wait_until(in_flight, 10, "a post in flight")
    time.sleep(0.5)  # the request is with Slack now
    before = all_announcements(fleet.slack, channels)
    first.kill(signal.SIGKILL)
    fleet.slack.set_delay("chat.postMessage", 0.0)

    rows = outbox_rows(fleet.db)
    assert len(rows) == 4 * len(scenarios), "every start and update was committed with its announcements"
    pending = [r for r in rows if r.state == OutboxState.PENDING]
    assert len(pending) >= 2 * len(scenarios), "no update was recorded as sent before the kill"
    # The hung post still lands after the process died; nobody recorded it.
    wait_until(
        lambda: len(all_announcements(fleet.slack, channels)) > len(before), 10, "the hung post to land"
    )
    # The dead process's leases would run out after outbox.LEASE (60 s): move them to now.
    with fleet.db.transaction() as s:
        s.execute(
            update(OutboxMessage).where(OutboxMessage.state == OutboxState.PENDING).values(locked_until=None)
        )

    fleet.start_bots()
    expected = 4 * len(scenarios)
    settle(
        lambda: len(all_announcements(fleet.slack, channels)) >= expected, "every update after the restart"
    )

    counts = all_announcements(fleet.slack, channels)
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"\nkilled replica: {len(pending)} announcements pending at the kill (1 in flight), "
        f"{expected} expected after the restart, {len(counts)} posted, {duplicates} duplicates"
    )
    assert duplicates == 0, [k for k, n in counts.items() if n > 1]
    assert len(counts) == expected
    lookups = fleet.slack.calls("conversations.replies") + fleet.slack.calls("conversations.history")
    assert lookups, "the new process posted the unrecorded attempt without looking for it first"
    rows = outbox_rows(fleet.db)
    assert {r.state for r in rows} == {OutboxState.SENT}
    assert sorted(r.dedupe_key for r in rows) == sorted(counts)
