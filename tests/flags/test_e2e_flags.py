"""The flag follows the plan, end to end: `rollout-bot serve` in a child process (SQLite and
Postgres) with FLAG_PROVIDER=unleash against the REAL Unleash of tests/flags/conftest.py,
signed Slack requests, the local Slack and Datadog stand-ins, and every flag state read back
from Unleash's own admin API (not through the provider under test).

The bot runs its watch every minute (ROLLOUT_WATCH_MINUTES=1) and claims due work every second
(ROLLOUT_DUE_SECONDS=1); where a test needs the watch, it moves the watch's due time to now,
as if its period had passed.

Plan: the built-in `aggressive` (5% -> 50% -> 100%; "Error rate" as success metric, +0.2 pp,
and as rollback trigger, +1 pp), and `autoback`, the same with on_trigger = "rollback".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.devtools.local_slack import LocalSlack
from bot.domain.plans.catalog import get_template, plan_to_dict
from storage.db import Database
from storage.enums import EventKind
from storage.models import DueJob, PlanTemplate, Rollout
from tests.conftest import BACKENDS, SIGNING_SECRET, BotProcess, bot_env, fresh_postgres_database
from tests.driver import SlackDriver
from tests.e2e_rollouts import Scenario, steps_text
from tests.fakes.datadog_api import FakeDatadog
from tests.flags.conftest import ENVIRONMENT, PROJECT, UnleashAdmin, UnleashServer
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fslack() -> Iterator[LocalSlack]:
    """A Slack of this module's own: these tests make it fail."""
    with LocalSlack() as fake:
        yield fake


@pytest.fixture(scope="module")
def fdatadog() -> Iterator[FakeDatadog]:
    with FakeDatadog() as fake:
        yield fake


@pytest.fixture(scope="module", params=BACKENDS)
def flag_bot(
    request: pytest.FixtureRequest,
    unleash_server: UnleashServer,
    fslack: LocalSlack,
    fdatadog: FakeDatadog,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BotProcess]:
    folder = tmp_path_factory.mktemp(f"flag-bot-{request.param}")
    with _database(request.param, folder) as url:
        env = bot_env(
            url,
            fslack,
            fdatadog,
            FLAG_PROVIDER="unleash",
            UNLEASH_URL=unleash_server.url,
            UNLEASH_API_TOKEN=unleash_server.token,
            UNLEASH_PROJECT=PROJECT,
            UNLEASH_ENVIRONMENT=ENVIRONMENT,
            ROLLOUT_WATCH_MINUTES="1",
            ROLLOUT_DUE_SECONDS="1",
        )
        bot = BotProcess(env, folder / "bot.log").start(timeout=40)
        bot.database_url = url  # type: ignore[attr-defined]
        db = Database(url)
        autoback = replace(get_template("aggressive"), name="autoback", on_trigger="rollback")
        with db.transaction() as session:
            session.add(
                PlanTemplate(team_id="", name="autoback", title="Autoback", data=plan_to_dict(autoback))
            )
        db.dispose()
        try:
            yield bot
        finally:
            bot.kill()


class _database:
    def __init__(self, backend: str, folder: Path) -> None:
        self.backend, self.folder = backend, folder
        self._pg: Any = None

    def __enter__(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.folder / 'rollouts.db'}"
        self._pg = fresh_postgres_database("rollout_flags")
        return str(self._pg.__enter__())

    def __exit__(self, *exc: object) -> None:
        if self._pg is not None:
            self._pg.__exit__(*exc)


@pytest.fixture
def bot_db(flag_bot: BotProcess) -> Iterator[Database]:
    database = Database(flag_bot.database_url)  # type: ignore[attr-defined]
    yield database
    database.dispose()


@pytest.fixture
def sc(flag_bot: BotProcess, fslack: LocalSlack, fdatadog: FakeDatadog, bot_db: Database) -> Scenario:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    team = "T" + uuid.uuid4().hex[:8].upper()
    driver = SlackDriver(flag_bot.url, SIGNING_SECRET, fslack, team_id=team, channel_id=channel)
    return Scenario(driver, fslack, fdatadog, bot_db, channel)


def flagged(sc: Scenario, admin: UnleashAdmin, template: str = "aggressive", errors: float = 1.0) -> str:
    """A flag in Unleash, and a rollout of the same name started on it."""
    flag = admin.create_flag("rb-e2e")
    sc.feature = flag
    sc.datadog.set_value(sc.hits_match, 100.0)  # the error rate is 100 × errors ÷ hits
    sc.datadog.set_value(sc.errors_match, errors)
    sc.start(template)
    return flag


def bot_strategy(admin: UnleashAdmin, flag: str) -> dict[str, Any]:
    (mine,) = [s for s in admin.strategies(flag) if s.get("title") == "Rollout Bot"]
    return mine


def rollout_of(admin: UnleashAdmin, flag: str) -> tuple[str, bool]:
    """(the bot's strategy's rollout, the environment switched on), as Unleash says."""
    return bot_strategy(admin, flag)["parameters"]["rollout"], admin.enabled(flag)


def run_watch_now(sc: Scenario) -> datetime:
    """Makes the rollout's watch due now, as if its period had passed; returns when."""
    now = datetime.now(UTC)
    with sc.db.transaction() as s:
        s.execute(
            update(DueJob)
            .where(DueJob.rollout_id == sc.rollout_id, DueJob.kind == "watch")
            .values(due_at=now - timedelta(seconds=1))
        )
    return now


def watched_since(sc: Scenario, moment: datetime) -> bool:
    with sc.db.reading() as s:
        stmt = select(DueJob.last_run_at).where(DueJob.rollout_id == sc.rollout_id, DueJob.kind == "watch")
        last = s.scalars(stmt).first()
    return last is not None and last >= moment


def test_start_with_a_missing_flag_is_refused_clearly(sc: Scenario) -> None:
    sc.feature = "rb-missing-" + uuid.uuid4().hex[:8]
    reply = sc.command(f"start {sc.feature} aggressive")
    assert body(reply) == (
        f":no_entry_sign: There is no flag `{sc.feature}` in Unleash (no flag {sc.feature} in Unleash "
        "project default). Create it there first, or name the flag this rollout should drive with "
        "`--flag key`. Nothing was started."
    )
    with sc.db.reading() as s:
        assert s.scalars(select(Rollout).where(Rollout.feature == sc.feature)).all() == []
    assert not [c for c in sc.slack.calls("chat.postMessage") if c.params.get("channel") == sc.channel]


def test_advance_sets_the_flag_in_unleash(sc: Scenario, unleash_admin: UnleashAdmin) -> None:
    flag = flagged(sc, unleash_admin)
    assert rollout_of(unleash_admin, flag) == ("5", True)  # the 5% canary, set at start
    sc.datadog.set_value(sc.errors_match, 1.1)
    sc.ready()

    reply = sc.advance()

    assert body(reply) == f":arrow_up: *{flag}* advanced from 5% to *50%*: the gate passed."
    assert f"Unleash flag `{flag}`: 5% → 50%" in str(reply["blocks"])
    strategy = bot_strategy(unleash_admin, flag)
    assert strategy["parameters"] == {"rollout": "50", "stickiness": "default", "groupId": flag}
    assert unleash_admin.enabled(flag)
    assert [(d["before"], d["after"]) for _, _, d in sc.events(EventKind.FLAG_SET)] == [
        (0.0, 5.0),
        (5.0, 50.0),
    ]
    assert "at 50%, as planned" in steps_text(sc.wait_status("step *50%*"))


def test_a_failed_flag_write_moves_nothing(sc: Scenario, unleash_admin: UnleashAdmin) -> None:
    flag = flagged(sc, unleash_admin)
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.ready()
    # Archived in Unleash: the bot's write is refused with Unleash's own 404.
    status, _ = unleash_admin.call("DELETE", f"/api/admin/projects/{PROJECT}/features/{flag}")
    assert status == 202

    reply = sc.advance()

    assert body(reply).startswith(":no_entry_sign: Unleash did not take the flag change, so")
    assert f"did not advance: flag {flag} does not exist in Unleash project default" in body(reply)
    assert sc.where() == ("active", 0, 0)
    assert sc.events(EventKind.ADVANCED) == []
    ((_, actor, data),) = sc.events(EventKind.FLAG_WRITE_FAILED)
    assert (actor, data["wanted"], data["why"]) == (sc.owner, 50.0, "advance")


def test_rollback_sets_0_percent_even_when_slack_is_failing(
    sc: Scenario, unleash_admin: UnleashAdmin
) -> None:
    flag = flagged(sc, unleash_admin)
    sc.slack.fail_next("chat.update", times=1000, error="internal_error")
    sc.slack.fail_next("chat.postMessage", times=1000, error="internal_error")
    try:
        clicked = time.monotonic()
        sc.driver.command(f"rollback {flag} error spike")
        wait_until(lambda: rollout_of(unleash_admin, flag) == ("0", False), 10, "the flag at 0% in Unleash")
        took = time.monotonic() - clicked
        wait_until(lambda: sc.where()[0] == "rolled_back", 10, "the rollback committed")
    finally:
        sc.slack.reset()
    assert took < 10
    assert [(d["before"], d["after"], d["why"]) for _, _, d in sc.events(EventKind.FLAG_SET)][-1] == (
        5.0,
        0.0,
        "rollback",
    )


def test_a_fired_trigger_with_on_trigger_rollback_rolls_the_flag_back_within_one_watch_period(
    sc: Scenario, unleash_admin: UnleashAdmin
) -> None:
    flag = flagged(sc, unleash_admin, template="autoback")
    assert rollout_of(unleash_admin, flag) == ("5", True)
    sc.datadog.set_value(sc.errors_match, 2.5)  # +1.5 pp over the baseline: the trigger fires

    fired = run_watch_now(sc)
    wait_until(lambda: rollout_of(unleash_admin, flag) == ("0", False), 30, "the flag at 0% in Unleash")

    assert datetime.now(UTC) - fired < timedelta(minutes=1)  # one watch period
    wait_until(lambda: sc.where()[0] == "rolled_back", 10, "the rollback committed")
    kinds = [k for k, _, _ in sc.events(EventKind.TRIGGER_FIRED, EventKind.FLAG_SET, EventKind.ROLLED_BACK)]
    assert kinds[-3:] == [EventKind.TRIGGER_FIRED, EventKind.FLAG_SET, EventKind.ROLLED_BACK]


def test_drift_is_detected_and_reported_once(sc: Scenario, unleash_admin: UnleashAdmin) -> None:
    flag = flagged(sc, unleash_admin)
    mine = bot_strategy(unleash_admin, flag)
    unleash_admin.update_strategy(  # someone sets 40% by hand in Unleash's UI
        flag,
        mine["id"],
        {
            **{k: mine[k] for k in ("name", "title", "constraints")},
            "parameters": {**mine["parameters"], "rollout": "40"},
        },
    )

    def drift_posts() -> list[dict[str, Any]]:
        return [m for m in sc.slack.messages(sc.channel) if "but the plan says" in m.get("text", "")]

    run_watch_now(sc)
    (post,) = wait_until(drift_posts, 30, "the drift alert")
    assert "says *40%* in" in body(post) and "the plan says *5%*" in body(post)
    for _ in range(2):  # two more watches: the same drift is not told again
        moment = run_watch_now(sc)
        wait_until(lambda moment=moment: watched_since(sc, moment), 30, "another watch")
    assert len(drift_posts()) == 1
    assert len(sc.events(EventKind.FLAG_DRIFT)) == 1
    assert ":warning: at 40%, but the plan says 5%" in steps_text(sc.status_message())

    # "Set the flag to 5% (the plan)" puts the plan back on the flag.
    sc.click(post, "flag_apply_plan")
    wait_until(lambda: rollout_of(unleash_admin, flag) == ("5", True), 15, "the plan's 5% back in Unleash")
