"""What an attacker and a clumsy user found, replayed against `rollout-bot serve`: each test
is one row of that probe, and asserts the fix.

Rows covered elsewhere: two replicas migrating a fresh database together
(`tests/storage/test_migrations.py`)."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urlencode

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.devtools.local_slack import LocalSlack
from storage.db import Database, normalize_url
from storage.models import PlanTemplate
from tests.conftest import SIGNING_SECRET, BotProcess, bot_env, fresh_postgres_database
from tests.driver import SlackDriver
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, wait_until

FORM = "application/x-www-form-urlencoded"


def healthz(bot: BotProcess) -> int:
    try:
        with urllib.request.urlopen(f"{bot.url}/healthz", timeout=5) as answer:
            return int(answer.status)
    except HTTPError as error:
        return int(error.code)


def test_a_400_digit_timestamp_is_refused_not_a_crash(driver: SlackDriver, bot_server: BotProcess) -> None:
    body = urlencode({"command": "/rollout", "text": "help", "team_id": "T1", "user_id": "U1"})
    answer = driver.post_raw(body, FORM, timestamp="9" * 400, signature="v0=" + "0" * 64)
    assert answer.status == 401
    assert "Traceback" not in bot_server.log()[-3000:]


def test_a_signed_command_without_a_team_is_answered(driver: SlackDriver, slack: LocalSlack) -> None:
    response_url = slack.response_url(f"probe-{uuid.uuid4().hex[:8]}")
    fields = {"command": "/rollout", "text": "list", "user_id": "U1", "response_url": response_url}
    assert driver.post_raw(urlencode(fields), FORM).status == 200
    answers = wait_until(
        lambda: [c for c in slack.calls() if c.path.endswith(response_url.rsplit("/", 1)[-1])],
        what="an answer through the response_url",
    )
    assert "does not say who sent it" in str(answers[0].params)


@pytest.fixture
def own_bot(tmp_path: Path, slack: LocalSlack, datadog: FakeDatadog) -> BotProcess:
    return BotProcess(bot_env(f"sqlite:///{tmp_path / 'own.db'}", slack, datadog), tmp_path / "bot.log")


def test_health_fails_when_the_sqlite_file_is_deleted_under_the_bot(
    own_bot: BotProcess, tmp_path: Path
) -> None:
    own_bot.start()
    try:
        assert healthz(own_bot) == 200
        (tmp_path / "own.db").unlink()
        assert healthz(own_bot) == 503
        assert "was removed or replaced" in own_bot.log()
    finally:
        own_bot.kill()


@pytest.mark.postgres
def test_health_fails_when_postgres_will_not_take_writes(
    slack: LocalSlack, datadog: FakeDatadog, tmp_path: Path
) -> None:
    with fresh_postgres_database("rollout_readonly") as url:
        name = make_url(normalize_url(url)).database
        admin = make_url(normalize_url(url)).set(drivername="postgresql", database="postgres")
        bot = BotProcess(bot_env(url, slack, datadog), tmp_path / "bot.log").start()
        try:
            assert healthz(bot) == 200
            with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )
            assert wait_until(lambda: healthz(bot) == 503, what="/healthz to fail on a read-only database")
        finally:
            bot.kill()


# -- shared templates -------------------------------------------------------------------------

SEED = Path(__file__).parent.parent / "fixtures" / "seeds" / "backend-tables-and-doc-service-rollouts.md"


def import_form(driver: SlackDriver, slack: LocalSlack, channel: str, user: str | None = None) -> dict:  # type: ignore[type-arg]
    driver.command("import", user=user)
    return slack.wait_for(  # type: ignore[no-any-return]
        "views.open",
        lambda c: (
            c.params["view"].get("callback_id") == "import_plan"
            and channel in c.params["view"].get("private_metadata", "")
        ),
    )[-1].params["view"]


def answer_containing(slack: LocalSlack, words: str) -> str:
    def found() -> str:
        # Forms are answered with chat.postEphemeral (or a DM), commands through their response_url.
        for call in slack.calls():
            if words in body(call.params):
                return str(body(call.params))
        return ""

    return str(wait_until(found, what=f"an answer saying {words!r}"))


def test_a_nine_byte_plan_is_refused_and_every_start_still_works(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    team_name = f"notes-{uuid.uuid4().hex[:6]}"
    driver.submit_view(
        import_form(driver, slack, channel), {"import_name": team_name, "import_text": "my notes"}
    )
    refusal = answer_containing(slack, f"`{team_name}` is not a plan I can run")
    assert "Nothing was imported" in refusal and "no phases" in refusal
    with bot_db.reading() as session:
        assert session.scalars(select(PlanTemplate).where(PlanTemplate.name == team_name)).first() is None
    driver.command("start after-notes backend")
    slack.wait_for(
        "chat.postMessage", lambda c: c.params.get("channel") == channel and c.params.get("blocks")
    )


def test_a_damaged_stored_template_breaks_nobody_else(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    with bot_db.transaction() as session:
        session.add(
            PlanTemplate(team_id=driver.team_id, name="broken", title="Broken", data={"name": "broken"})
        )
    driver.command("start still-works backend")
    slack.wait_for(
        "chat.postMessage", lambda c: c.params.get("channel") == channel and c.params.get("blocks")
    )
    driver.command("start uses-broken broken")
    assert "can no longer be read" in answer_containing(slack, "`broken` can no longer be read")


def test_only_the_importer_replaces_or_removes_a_template(
    driver: SlackDriver, slack: LocalSlack, channel: str
) -> None:
    seed = SEED.read_text()
    name = f"shared-{uuid.uuid4().hex[:6]}"
    driver.submit_view(import_form(driver, slack, channel), {"import_name": name, "import_text": seed})
    answer_containing(slack, f"Imported template `{name}-1`")
    stranger = "W" + uuid.uuid4().hex[:8].upper()
    driver.submit_view(
        import_form(driver, slack, channel, user=stranger),
        {"import_name": name, "import_text": seed},
        user=stranger,
    )
    assert f"<@{driver.user_id}>" in answer_containing(slack, f"`{name}-1` was imported by")
    driver.command(f"templates remove {name}-2", user=stranger)
    answer_containing(slack, f"`{name}-2` was imported by")
    driver.command(f"templates remove {name}-2")
    answer_containing(slack, f"Template `{name}-2` removed")
    driver.command("templates")
    listed = answer_containing(slack, f"• `{name}-1`: ")  # other workspaces list their own
    assert "imported by" in listed and f"`{name}-2`" not in listed


# -- names and inputs -------------------------------------------------------------------------


def test_look_alike_names_find_the_open_rollout_or_are_refused(
    driver: SlackDriver, slack: LocalSlack, channel: str
) -> None:
    base = f"look-{uuid.uuid4().hex[:6]}"
    driver.command(f"start {base}")
    slack.wait_for(
        "chat.postMessage",
        lambda c: c.params.get("channel") == channel and c.params.get("blocks"),
        timeout=30,
    )
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in base)
    for variant in (base.replace("-", "\u2011"), base[:2] + "\u200b" + base[2:], full_width):
        driver.command(f'start "{variant}"')
    wait_until(
        lambda: sum(f"*{base}* already has an open rollout" in body(c.params) for c in slack.calls()) == 3,
        what="three 'already has an open rollout' answers",
    )
    # Refused in the ack itself, before anything is stored.
    cyrillic = driver.command("start \u0441" + base[1:])  # a Cyrillic first letter
    assert "mixes Cyrillic and Latin letters" in str(cyrillic.json())
    invisible = driver.command('start "\u200b\u200c"')
    assert "made only of invisible characters" in str(invisible.json())


def test_two_hundred_stakeholder_channels_are_refused(driver: SlackDriver, slack: LocalSlack) -> None:
    channels = " ".join(f"<#C{i:08d}|c{i}>" for i in range(200))
    answer = driver.command(f"start many-stakeholders --stakeholders {channels}")
    assert "200 stakeholder channels is too many; the limit is 20" in str(answer.json())


def test_the_start_form_checks_the_flag_as_the_command_does(
    driver: SlackDriver, slack: LocalSlack, channel: str
) -> None:
    driver.command("start")
    view = slack.wait_for(
        "views.open",
        lambda c: channel in (c.params.get("view") or {}).get("private_metadata", ""),
        timeout=30,
    )[-1].params["view"]
    answer = driver.submit_view(
        view, {"start_feature": "form-flag", "start_template": "standard", "start_flag": "x} OR *"}
    )
    assert answer.json()["response_action"] == "errors"
    assert "is not a flag key" in answer.json()["errors"]["start_flag"]


def test_a_service_name_that_would_rewrite_the_query_is_refused(driver: SlackDriver) -> None:
    answer = driver.command('start svc-probe --service "x} OR service:*"')
    assert "is not a service name Datadog accepts" in str(answer.json())


# -- the status message converges -------------------------------------------------------------


def checkbox_values(message: dict) -> list[str]:  # type: ignore[type-arg]
    return [
        option["value"]
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("type") == "checkboxes"
        for option in element["options"]
    ]


def ticked_values(message: dict) -> set[str]:  # type: ignore[type-arg]
    return {
        option["value"]
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("type") == "checkboxes"
        for option in element.get("initial_options", [])
    }


def test_ticks_slack_refused_to_show_reach_the_status_message_and_the_clickers_are_told(
    tmp_path: Path, datadog: FakeDatadog
) -> None:
    with LocalSlack() as slack:
        env = bot_env(f"sqlite:///{tmp_path / 'own.db'}", slack, datadog, ROLLOUT_DUE_SECONDS="1")
        bot = BotProcess(env, tmp_path / "bot.log").start()
        try:
            channel = "C" + uuid.uuid4().hex[:10].upper()
            driver = SlackDriver(bot.url, SIGNING_SECRET, slack, team_id="T0PROBE", channel_id=channel)
            driver.command("start converge standard")
            slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel, 30)
            message = slack.messages(channel)[0]
            boxes = checkbox_values(message)[:5]
            slack.fail_next("chat.update", times=15, status=500)
            people = [f"W0PEOPLE{i}" for i in range(5)]
            for person, box in zip(people, boxes, strict=True):
                assert driver.toggle(message, box, user=person).status == 200
            told = wait_until(
                lambda: [c for c in slack.calls() if "Your tick is saved" in body(c.params)],
                what="the clickers told their ticks are not shown yet",
            )
            assert told
            shown = wait_until(
                lambda: ticked_values(slack.messages(channel)[0]) >= set(boxes) or None,
                timeout=30,
                what="the status message showing all five ticks",
            )
            assert shown
        finally:
            bot.kill()
