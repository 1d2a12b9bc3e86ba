"""What an attacker found about the work behind the acks, replayed against `rollout-bot serve`:
each test is one row of that probe, and asserts the fix (bot/edge/workqueue.py).

- kill -9 of `serve` during checklist clicks lost clicks that were acked;
- with two replicas on one Postgres, killing one lost the commands its work process held;
- a rollback form submitted while the queue could not be written got its 200 and then nothing;
- Slack's retries were ignored outright (an event whose first delivery failed on our side was
  never handled), and the same signed command sent twice posted two updates."""

from __future__ import annotations

import json
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.devtools.local_slack import APP_ID, LocalSlack
from bot.edge.listeners.events import HELLO
from bot.ids import Action, Block
from storage.db import Database, normalize_url
from storage.enums import EventKind, ItemKind, RolloutStatus
from storage.models import ChecklistItem, Event, PendingWork, Phase, Rollout
from storage.urls import queue_url
from tests.conftest import BACKENDS, SIGNING_SECRET, BotProcess, bot_env, fresh_postgres_database
from tests.driver import FORM, Response, SlackDriver
from tests.e2e_rollouts import Scenario
from tests.fakes.datadog_api import FakeDatadog
from tests.support import wait_until

CLICKS = 50
KILL_AFTER = 20
LEASE = {"WORK_LEASE_SECONDS": "2"}
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


@pytest.fixture(params=BACKENDS)
def own_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'own.db'}"
    else:
        with fresh_postgres_database("rollout_work") as url:
            yield url


@pytest.fixture
def own_slack() -> Iterator[LocalSlack]:
    """A Slack of the test's own: its delays must not slow anyone else's bot."""
    with LocalSlack() as fake:
        yield fake


def new_channel() -> str:
    return "C" + uuid.uuid4().hex[:10].upper()


def scenario(bot: BotProcess, slack: LocalSlack, datadog: FakeDatadog, db: Database) -> Scenario:
    channel = new_channel()
    team = "T" + uuid.uuid4().hex[:8].upper()
    driver = SlackDriver(bot.url, SIGNING_SECRET, slack, team_id=team, channel_id=channel)
    return Scenario(driver, slack, datadog, db, channel, feature=f"work-{uuid.uuid4().hex[:6]}")


def count(db: Database, stmt: Any) -> int:
    with db.reading() as session:
        return int(session.scalar(stmt) or 0)


def pending_rows(url: str) -> int:
    queue = Database(queue_url(url))
    try:
        return count(queue, select(func.count()).select_from(PendingWork))
    finally:
        queue.dispose()


# --- kill -9 during checklist clicks ---------------------------------------------------------


def add_boxes(db: Database, rollout_id: int, n: int) -> list[int]:
    """`n` more tasks in the rollout's first phase, so every click can tick a box of its own."""
    with db.transaction() as session:
        phase = session.scalars(
            select(Phase).where(Phase.rollout_id == rollout_id, Phase.position == 0)
        ).one()
        boxes = [
            ChecklistItem(
                phase_id=phase.id,
                rollout_id=rollout_id,
                position=100 + i,
                kind=ItemKind.TASK,
                text=f"box {i}",
            )
            for i in range(n)
        ]
        session.add_all(boxes)
        session.flush()
        return [box.id for box in boxes]


def checklist_message(rollout_id: int, ts: str, channel: str, ids: list[int]) -> dict[str, Any]:
    """The boxes as a status message renders them, none ticked yet."""
    blocks = [
        {
            "type": "actions",
            "block_id": f"{Block.CHECKLIST}:{rollout_id}:0:t{n}",
            "elements": [
                {
                    "type": "checkboxes",
                    "action_id": Action.CHECKLIST_TOGGLE.value,
                    "options": [
                        {"text": {"type": "mrkdwn", "text": f"box {i}"}, "value": str(i)}
                        for i in ids[start : start + 10]
                    ],
                }
            ],
        }
        for n, start in enumerate(range(0, len(ids), 10))
    ]
    return {"ts": ts, "channel": channel, "blocks": blocks}


def ticked(db: Database, ids: list[int]) -> int:
    stmt = select(func.count()).select_from(ChecklistItem)
    return count(db, stmt.where(ChecklistItem.id.in_(ids), ChecklistItem.checked_at.is_not(None)))


def checked_events(db: Database, rollout_id: int) -> list[int]:
    with db.reading() as session:
        stmt = select(Event.data).where(Event.rollout_id == rollout_id, Event.kind == EventKind.ITEM_CHECKED)
        return [int(data["item_id"]) for data in session.scalars(stmt)]


def test_kill_9_during_50_clicks_loses_none_and_applies_none_twice(
    own_url: str, own_slack: LocalSlack, datadog: FakeDatadog, tmp_path: Path
) -> None:
    bot = BotProcess(bot_env(own_url, own_slack, datadog, **LEASE), tmp_path / "bot.log").start()
    db = Database(own_url)
    try:
        sc = scenario(bot, own_slack, datadog, db)
        sc.start("aggressive")
        ids = add_boxes(db, sc.rollout_id, CLICKS)
        message = checklist_message(sc.rollout_id, sc.status_ts(), sc.channel, ids)
        # Each refresh of the status message takes a while, so work is in flight at the kill.
        own_slack.set_delay("chat.update", 0.2)

        def click(item: int) -> Response:
            # Fifty people, each ticking a box of their own from the same message.
            return sc.driver.toggle(message, str(item), user=f"WCLICK{item}")

        with ThreadPoolExecutor(max_workers=4) as pool:
            before = list(pool.map(click, ids[:KILL_AFTER]))
        bot.kill(signal.SIGKILL)
        waiting, applied_at_kill = pending_rows(own_url), ticked(db, ids)
        bot.start()
        after = [click(item) for item in ids[KILL_AFTER:]]
        acked = sum(1 for r in before + after if r.status == 200)
        assert acked == CLICKS
        wait_until(lambda: ticked(db, ids) == CLICKS, timeout=60, what="every acked click applied")
        time.sleep(3)  # leases run out and anything claimed twice would have landed by now
        events = checked_events(db, sc.rollout_id)
        print(
            f"\n{own_url.split(':')[0]}: clicks sent {CLICKS}, acked {acked}; at the kill {applied_at_kill} "
            f"applied and {waiting} rows still queued; in the end applied {ticked(db, ids)}"
        )
        assert sorted(e for e in events if e in ids) == sorted(ids)  # each exactly once
        assert len(events) == CLICKS
    finally:
        bot.kill(signal.SIGKILL)
        db.dispose()


# --- two replicas, one killed ----------------------------------------------------------------


@pytest.mark.postgres
def test_a_replica_killed_mid_work_loses_none_of_its_acked_commands(
    own_slack: LocalSlack, datadog: FakeDatadog, tmp_path: Path
) -> None:
    with fresh_postgres_database("rollout_replicas") as url:
        doomed = BotProcess(bot_env(url, own_slack, datadog, **LEASE), tmp_path / "a.log").start()
        survivor = BotProcess(bot_env(url, own_slack, datadog, **LEASE), tmp_path / "b.log").start()
        db = Database(url)
        try:
            team, channel = "T" + uuid.uuid4().hex[:8].upper(), new_channel()
            to_doomed = SlackDriver(doomed.url, SIGNING_SECRET, own_slack, team_id=team, channel_id=channel)
            to_survivor = SlackDriver(
                survivor.url, SIGNING_SECRET, own_slack, team_id=team, channel_id=channel
            )
            features = [f"replica-{n}" for n in range(20)]
            for feature in features:
                assert to_survivor.command(f"start {feature} aggressive").status == 200
            started = select(func.count()).select_from(Rollout).where(Rollout.team_id == team)
            wait_until(lambda: count(db, started) == 20, timeout=60, what="20 rollouts")
            own_slack.set_delay("chat.update", 0.3)

            with ThreadPoolExecutor(max_workers=4) as pool:
                first = list(pool.map(lambda f: to_doomed.command(f"pause {f} probe"), features[:10]))
            doomed.kill(signal.SIGKILL)
            waiting = pending_rows(url)
            rest = [to_survivor.command(f"pause {f} probe") for f in features[10:]]
            assert all(r.status == 200 for r in first + rest)

            paused = started.where(Rollout.status == RolloutStatus.PAUSED)
            wait_until(lambda: count(db, paused) == 20, timeout=60, what="all 20 pauses applied")
            time.sleep(3)
            events = (
                select(func.count())
                .select_from(Event)
                .join(Rollout, Rollout.id == Event.rollout_id)
                .where(Rollout.team_id == team, Event.kind == EventKind.PAUSED)
            )
            print(f"pauses acked 20, queued when a replica died {waiting}, applied {count(db, events)}")
            assert count(db, events) == 20
        finally:
            doomed.kill(signal.SIGKILL)
            survivor.kill()
            db.dispose()


# --- the queue cannot be written -------------------------------------------------------------


def close_the_queue(url: str, tmp_path: Path) -> None:
    """SQLite: the queue file replaced by a folder. Postgres: inserts into it refused."""
    if url.startswith("sqlite"):
        path = Path(queue_url(url)[len("sqlite:///") :])
        shutil.move(path, tmp_path / "moved-away.db")
        path.mkdir()
        return
    with psycopg.connect(
        make_url(normalize_url(url)).set(drivername="postgresql").render_as_string(False)
    ) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_work() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'queue closed'; END $$ "
            "LANGUAGE plpgsql"
        )
        conn.execute(
            "CREATE TRIGGER closed BEFORE INSERT ON pending_work FOR EACH ROW EXECUTE FUNCTION refuse_work()"
        )


def reopen_the_queue(url: str) -> None:
    with psycopg.connect(
        make_url(normalize_url(url)).set(drivername="postgresql").render_as_string(False)
    ) as conn:
        conn.execute("DROP TRIGGER closed ON pending_work")


def mention(driver: SlackDriver, event_id: str, *, headers: dict[str, str] | None = None) -> Response:
    body = {
        "token": "verification_token",
        "team_id": driver.team_id,
        "api_app_id": APP_ID,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {
            "type": "app_mention",
            "user": driver.user_id,
            "text": "<@UBOT> hello",
            "ts": f"{time.time():.6f}",
            "channel": driver.channel_id,
        },
    }
    return driver.post_raw(json.dumps(body), "application/json", headers=headers)


def hellos(slack: LocalSlack, channel: str) -> int:
    return len(
        [
            c
            for c in slack.calls("chat.postMessage")
            if c.params.get("channel") == channel and c.params.get("text") == HELLO
        ]
    )


def test_a_rollback_form_the_queue_cannot_take_is_answered_by_dm(
    own_url: str, own_slack: LocalSlack, datadog: FakeDatadog, tmp_path: Path
) -> None:
    bot = BotProcess(bot_env(own_url, own_slack, datadog), tmp_path / "bot.log").start()
    db = Database(own_url)
    try:
        sc = scenario(bot, own_slack, datadog, db)
        sc.start("aggressive")
        sc.click(sc.status_message(), Action.ROLLBACK.value)
        view = sc.opened_view("rollback_confirm")
        close_the_queue(own_url, tmp_path)

        submitted = sc.driver.submit_view(view, {"reason": "errors doubled"})
        assert submitted.status == 200
        dm = own_slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == sc.owner, timeout=10)
        text = dm[0].params["text"]
        assert "could not take your rollback" in text and "nothing was rolled back" in text, text
        # An event the queue cannot take is refused, so Slack delivers it again.
        event_id = f"Ev{uuid.uuid4().hex[:10].upper()}"
        assert mention(sc.driver, event_id).status == 503
        time.sleep(1)
        assert sc.where()[0] == "active"
        rolled = select(func.count()).select_from(Event).where(Event.kind == EventKind.ROLLED_BACK)
        assert count(db, rolled) == 0
        if not own_url.startswith("sqlite"):
            reopen_the_queue(own_url)
            assert mention(sc.driver, event_id, headers=RETRY).status == 200
            wait_until(lambda: hellos(own_slack, sc.channel) == 1, what="the retried mention answered")
    finally:
        bot.kill()
        db.dispose()


# --- Slack's retries and duplicates (the shared bot) -----------------------------------------


def test_a_retry_whose_first_delivery_never_arrived_is_handled_once(
    driver: SlackDriver, slack: LocalSlack, channel: str
) -> None:
    event_id = f"Ev{uuid.uuid4().hex[:10].upper()}"
    # The first delivery failed before it reached us; Slack's retry is all we get.
    assert mention(driver, event_id, headers=RETRY).status == 200
    wait_until(lambda: hellos(slack, channel) == 1, what="the retried mention answered")
    # Its own retry, after that, is acked and dropped.
    assert mention(driver, event_id, headers={**RETRY, "X-Slack-Retry-Num": "2"}).status == 200
    assert mention(driver, event_id).status == 200
    time.sleep(1.5)
    assert hellos(slack, channel) == 1


def test_the_same_signed_command_twice_posts_one_update(
    driver: SlackDriver, slack: LocalSlack, bot_db: Database, channel: str
) -> None:
    feature = f"twice-{uuid.uuid4().hex[:6]}"
    driver.command(f"start {feature} aggressive")
    slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel, timeout=10)
    fields = {
        "team_id": driver.team_id,
        "channel_id": channel,
        "user_id": driver.user_id,
        "command": "/rollout",
        "text": f"update {feature} the canary looks fine",
        "response_url": slack.response_url(f"twice-{uuid.uuid4().hex[:8]}"),
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}",
    }
    body = urlencode(fields)
    assert driver.post_raw(body, FORM).status == 200
    assert driver.post_raw(body, FORM).status == 200
    sent = (
        select(func.count())
        .select_from(Event)
        .join(Rollout, Rollout.id == Event.rollout_id)
        .where(Rollout.team_id == driver.team_id, Event.kind == EventKind.UPDATE_SENT)
    )
    wait_until(lambda: count(bot_db, sent) >= 1, what="the update")
    time.sleep(1.5)
    assert count(bot_db, sent) == 1
    answers = [
        c for c in slack.calls("response_url") if c.path.endswith(fields["response_url"].rsplit("/", 1)[-1])
    ]
    assert len(answers) == 1
