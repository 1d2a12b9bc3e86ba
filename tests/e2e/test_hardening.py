"""Hardening, end to end: property-based inputs against the running `rollout-bot serve`.

Whatever arrives at `POST /slack/events` (any slash-command text, interaction payloads with
missing or wrong-typed fields, unknown ids, odd events, bad signatures, garbage bodies,
Slack's retries), the bot answers HTTP without a 5xx within Slack's 3 seconds, answers the
person who acted wherever Slack gave it a way to (response_url, a modal, the status
message), never shows a stack trace, and logs no unhandled exception.

The bot's log is read back after every example: a record with a traceback, Bolt's
"Failed to run an internal function" (a lazy listener died) or Flask's "Exception on
/slack/events" (a 500) fails the example. `bot.answers` "unexpected error" records are
failures too: the user got "something went wrong", but the input should have been refused
politely.

Tests marked xfail(strict=True) show bugs found here; see their reasons.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.devtools.local_slack import APP_ID, Call, LocalSlack
from bot.edge.parsing import USAGES
from storage import models as storage_models
from storage.db import Database
from storage.enums import EventKind
from storage.models import ChecklistItem, Event, Phase, Rollout, SlackMessage
from tests.conftest import SIGNING_SECRET, BotProcess
from tests.driver import FORM, Response, SlackDriver, sign
from tests.e2e_rollouts import Scenario
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e

# Slack gives up on an ack after 3 s.
ACK_LIMIT_S = 3.0
# How long the bot may take to answer through response_url, a modal or the status message.
ANSWER_TIMEOUT_S = 6.0
# Inputs the bot cannot answer (no response_url, no channel): once the bot's work queue is
# empty, how long the work claimed last has to fail in the log before the example counts as quiet.
SETTLE_S = 0.25

PROPERTY = settings(
    deadline=None,
    database=None,  # no .hypothesis/ folder in the project
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)

Params = dict[str, Any]


# --- the bot's log ------------------------------------------------------------------------

RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.MULTILINE)
PROBLEM_MARKERS = (
    "Traceback (most recent call last)",
    "Failed to run an internal function",  # Bolt: a lazy listener raised
    "Exception on /slack/events",  # Flask: a 500
    "unhandled error in a listener",  # bot.app's Bolt error handler
    "unexpected error, ref",  # bot.answers: answered, but with "something went wrong"
)


# The work-queue database of each running bot (by URL), to see when its queued work is done.
BOT_DATABASES: dict[str, Database] = {}

try:  # the work queue is new and may move; without it there is only the settle time
    from storage.urls import queue_url
except ImportError:  # pragma: no cover

    def queue_url(url: str) -> str:
        return url


def quiesce(bot: BotProcess, timeout: float = 5.0, settle: float = SETTLE_S) -> None:
    """Waits until the work behind earlier acks has run: the bot's queue of lazy work (where it
    has one, `pending_work`) is empty, and `settle` more for the work claimed last."""
    pending = getattr(storage_models, "PendingWork", None)
    db = BOT_DATABASES.get(bot.url)
    deadline = time.monotonic() + timeout
    while pending is not None and db is not None and time.monotonic() < deadline:
        try:
            with db.reading() as session:
                if not session.scalar(select(func.count()).select_from(pending)):
                    break
        except SQLAlchemyError:
            break
        time.sleep(0.02)
    time.sleep(settle)


class LogWatch:
    """What the bot logged since the last look."""

    def __init__(self, bot: BotProcess) -> None:
        self.bot = bot
        self.path = bot.log_path
        self.offset = self.path.stat().st_size

    def new(self) -> str:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        return data.decode("utf-8", errors="replace")

    def problems(self) -> list[str]:
        return problems_in(self.new())


def problems_in(text: str) -> list[str]:
    """Each log record that shows an unhandled exception, as its first line and its last."""
    starts = [m.start() for m in RECORD_START.finditer(text)] + [len(text)]
    found = []
    for begin, end in itertools.pairwise(starts):
        record = text[begin:end].rstrip()
        if any(marker in record for marker in PROBLEM_MARKERS):
            lines = record.splitlines()
            found.append(lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}")
    return found


# --- HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    response: Response
    elapsed: float
    at: float  # time.time() before sending, comparable with LocalSlack's Call.at
    path: str  # the response_url's path ("" when the request had none)
    trigger_id: str


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def timed_post(
    driver: SlackDriver, body: str, content_type: str, **kwargs: Any
) -> tuple[Response, float, float]:
    at = time.time()
    started = time.monotonic()
    response = driver.post_raw(body, content_type, **kwargs)
    return response, time.monotonic() - started, at


def send_command(
    driver: SlackDriver,
    slack: LocalSlack,
    text: str,
    *,
    channel: str,
    user: str = "W111",
    headers: dict[str, str] | None = None,
    response_name: str | None = None,
) -> Sent:
    """`/rollout {text}` as Slack sends it, with a response_url and trigger_id of its own."""
    response_url = slack.response_url(response_name or f"hard-{uuid.uuid4().hex[:12]}")
    trigger = _trigger_id()
    fields = {
        "token": "verification_token",
        "api_app_id": APP_ID,
        "team_id": driver.team_id,
        "team_domain": "test-domain",
        "channel_id": channel,
        "channel_name": channel.lower(),
        "user_id": user,
        "user_name": user.lower(),
        "command": "/rollout",
        "text": text,
        "response_url": response_url,
        "trigger_id": trigger,
    }
    response, elapsed, at = timed_post(driver, urlencode(fields), FORM, headers=headers)
    return Sent(response, elapsed, at, urlsplit(response_url).path, trigger)


def send_payload(driver: SlackDriver, payload: Any, *, headers: dict[str, str] | None = None) -> Sent:
    """An interaction payload (form field `payload`) as Slack sends it."""
    path = ""
    trigger = ""
    if isinstance(payload, dict):
        url = payload.get("response_url")
        path = urlsplit(url).path if isinstance(url, str) else ""
        trigger = str(payload.get("trigger_id", ""))
    body = urlencode({"payload": json.dumps(payload)})
    response, elapsed, at = timed_post(driver, body, FORM, headers=headers)
    return Sent(response, elapsed, at, path, trigger)


def send_event(driver: SlackDriver, body: Any) -> Sent:
    response, elapsed, at = timed_post(driver, json.dumps(body), "application/json")
    return Sent(response, elapsed, at, "", "")


def healthz(bot: BotProcess, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(f"{bot.url}/healthz", timeout=timeout) as answer:
            return int(answer.status)
    except HTTPError as error:
        return int(error.code)


# --- answers ------------------------------------------------------------------------------


def ack_answer(response: Response) -> Params | None:
    """The answer carried by the ack itself (a JSON body with text or blocks)."""
    if not response.body.strip():
        return None
    try:
        body = json.loads(response.body)
    except ValueError:
        return None
    if isinstance(body, dict) and (body.get("text") or body.get("blocks") or body.get("errors")):
        return body
    return None


def answers_to(slack: LocalSlack, sent: Sent, channels: Collection[str], user: str | None) -> list[Params]:
    """What the bot said back to this request after the ack: posts to its response_url, a modal
    opened with its trigger_id, an ephemeral to the user, an edit of a status message in one of
    `channels` (a checklist click is answered by the status message itself)."""

    def answers(call: Call) -> bool:
        if call.at < sent.at:
            return False
        if call.method == "response_url":
            return bool(sent.path) and call.path == sent.path
        if call.method == "views.open":
            return bool(sent.trigger_id) and call.params.get("trigger_id") == sent.trigger_id
        if call.method == "chat.postEphemeral":
            return call.params.get("channel") in channels and call.params.get("user") == user
        return call.method == "chat.update" and call.params.get("channel") in channels

    return [call.params for call in slack.calls() if answers(call)]


def wait_answer(
    slack: LocalSlack,
    sent: Sent,
    channels: Collection[str] = (),
    user: str | None = None,
    *,
    also: Callable[[], list[Params]] | None = None,
    timeout: float = ANSWER_TIMEOUT_S,
) -> list[Params]:
    deadline = time.monotonic() + timeout
    while True:
        found = answers_to(slack, sent, channels, user) + (also() if also else [])
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


SPECIAL_MENTION = re.compile(r"<!(channel|here|everyone|subteam)")


def mrkdwn_texts(node: Any, top: bool = True) -> Iterator[str]:
    """Every text Slack renders as mrkdwn (where <!channel> would notify): the message's `text`
    and mrkdwn text objects; plain_text shows mentions literally."""
    if isinstance(node, dict):
        if top and isinstance(node.get("text"), str):
            yield node["text"]
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for key, value in node.items():
            if node.get("type") == "plain_text" or (top and key == "text"):
                continue
            yield from mrkdwn_texts(value, top=False)
    elif isinstance(node, list):
        for value in node:
            yield from mrkdwn_texts(value, top=False)


def assert_no_traceback_shown(*answers: Params | None) -> None:
    """No stack trace reaches the user, and nothing typed comes back as a live @channel."""
    for answer in answers:
        if answer is not None:
            shown = json.dumps(answer, ensure_ascii=False)
            assert "Traceback" not in shown, shown[:2000]
            assert 'File "' not in shown, shown[:2000]
            live = [t for t in mrkdwn_texts(answer) if SPECIAL_MENTION.search(t)]
            assert not live, f"a special mention would notify: {live}"


def assert_acked(sent: Sent, *, allow_4xx: bool = False) -> None:
    status = sent.response.status
    assert status < 500, f"HTTP {status}: {sent.response.body[:300]!r}"
    if not allow_4xx:
        assert status == 200, f"HTTP {status}: {sent.response.body[:300]!r}"
    assert sent.elapsed < ACK_LIMIT_S, f"acked after {sent.elapsed:.2f}s"


def assert_quiet_log(log: LogWatch, what: object, settle: bool = False) -> None:
    """No unhandled error logged; with `settle`, first let the request's queued work run."""
    if settle:
        quiesce(log.bot)
    problems = log.problems()
    assert not problems, f"the bot logged unhandled errors for {what!r}:\n" + "\n".join(problems)


def assert_alive(bot: BotProcess) -> None:
    assert bot.proc is not None and bot.proc.poll() is None, f"rollout-bot exited:\n{bot.log()}"
    assert healthz(bot) == 200


def is_postgres(bot: BotProcess) -> bool:
    return str(getattr(bot, "database_url", "")).startswith("postgres")


def new_channel() -> str:
    return "C" + uuid.uuid4().hex[:10].upper()


def new_team() -> str:
    return "T" + uuid.uuid4().hex[:8].upper()


def new_driver(bot: BotProcess, slack: LocalSlack, team: str | None = None) -> SlackDriver:
    return SlackDriver(bot.url, SIGNING_SECRET, slack, team_id=team or new_team(), channel_id=new_channel())


def started_rollout(driver: SlackDriver, slack: LocalSlack, db: Database, channel: str, feature: str) -> int:
    """`/rollout start {feature}` in `channel`; the rollout's id once its status message is up."""
    sent = send_command(driver, slack, f"start {feature}", channel=channel)
    assert sent.response.status == 200, sent.response
    slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel, timeout=10)

    def stored() -> int | None:
        with db.reading() as session:
            return session.scalars(
                select(Rollout.id).where(Rollout.team_id == driver.team_id, Rollout.feature == feature)
            ).first()

    rollout_id: int = wait_until(stored, what=f"rollout {feature}")
    wait_until(lambda: status_ts(db, rollout_id), what="the status message's ts")
    return rollout_id


def status_ts(db: Database, rollout_id: int) -> str | None:
    with db.reading() as session:
        return session.scalars(
            select(SlackMessage.ts).where(
                SlackMessage.rollout_id == rollout_id, SlackMessage.purpose == "status"
            )
        ).first()


def item_ids(db: Database, rollout_id: int) -> list[int]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(ChecklistItem.id)
                .where(ChecklistItem.rollout_id == rollout_id)
                .order_by(ChecklistItem.id)
            )
        )


@pytest.fixture(scope="module")
def module_db(bot_server: BotProcess) -> Iterator[Database]:
    """The running bot's database, for fixtures shared by a module's tests."""
    database = Database(bot_server.database_url)  # type: ignore[attr-defined]
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def queue_db(bot_server: BotProcess) -> Iterator[Database]:
    """Where the bot queues the work behind its acks (its own database, or a file beside it)."""
    database = Database(queue_url(bot_server.database_url))  # type: ignore[attr-defined]
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _quiet_start(bot_server: BotProcess, queue_db: Database) -> None:
    """Each test starts once the work behind the previous test's requests has run, so what that
    work logs is not laid at this test's door."""
    BOT_DATABASES[bot_server.url] = queue_db
    quiesce(bot_server, settle=0.1)


# --- 1. slash commands ----------------------------------------------------------------------

SUBCOMMANDS = [*USAGES, "START", "Status", "bogus", "", "--help", "rollout"]
# fmt: off
FRAGMENTS = [
    '"', "'", "\u201c", "\u201d", "\u2018", "\u2019", '"quoted name"', "'half",
    "<!channel>", "<!here>", "<!everyone>", "<@U1|x>", "<@W123ABC>", "<@bogus>", "<#C123|launches>",
    "<#C1>", "<https://evil.example|click>", "--owner", "--stakeholders", "--flag", "--service",
    "--tz", "--bogus", "--", "-", "--OWNER", "\x00", "\n", "\r\n", "\t", "\x1b[31m", "\u200b",
    "\u202e", "&amp;", "&lt;", "*bold*", "`code`", "```", "~strike~", "_it_", ">quote", "\\",
    "😀", "🚀🚀", "ñandú", "日本語", "add", "remove", "daily", "weekly", "off", "25:99", "09:30",
    "24:00", "Mars/Olympus", "America/New_York", "../../etc/passwd", "standard", "backend",
    "conservative", "aggressive", "nope", "0", "-1", "99999999999999999999", "1e308", "NaN",
    "%s", "{feature}", "{{ 7*7 }}", "{% raw %}", "'; DROP TABLE rollout; --", "None", "null",
]
# fmt: on
word = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(min_size=1, max_size=12),
    st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=12),
)
# NUL is left out here: Postgres refuses it in text, a bug shown on its own by
# test_nul_characters_in_commands_are_answered_politely (it would make this property fail at
# random on Postgres).
command_text = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda sub, words: " ".join([sub, *words]),
        st.sampled_from(SUBCOMMANDS),
        st.lists(word, max_size=8),
    ),
    st.builds(  # very long: feature names, reasons, updates past every limit
        lambda sub, filler, n: f"{sub} {filler * n}",
        st.sampled_from(["start", "status", "pause", "rollback", "update", "digest", "bogus"]),
        st.sampled_from(["x", "é", "😀", "a b ", '"', "<!channel> "]),
        st.integers(min_value=70, max_value=4000),
    ),
).map(lambda text: text.replace("\x00", ""))


def busy_workspace(bot: BotProcess, slack: LocalSlack, db: Database) -> tuple[SlackDriver, str]:
    """A workspace of its own with one open rollout in a "busy" channel, so commands that need
    a rollout reach it."""
    driver = new_driver(bot, slack)
    busy = new_channel()
    started_rollout(driver, slack, db, busy, "busy-feature")
    return driver, busy


@pytest.fixture(scope="module")
def command_world(bot_server: BotProcess, slack: LocalSlack, module_db: Database) -> tuple[SlackDriver, str]:
    return busy_workspace(bot_server, slack, module_db)


@pytest.fixture(scope="module")
def nul_world(bot_server: BotProcess, slack: LocalSlack, module_db: Database) -> tuple[SlackDriver, str]:
    return busy_workspace(bot_server, slack, module_db)


@settings(PROPERTY, max_examples=80)
@given(text=command_text, in_busy_channel=st.booleans())
@example(text="", in_busy_channel=False)
@example(text="start", in_busy_channel=False)
@example(text='start "unclosed', in_busy_channel=False)
@example(text="start <!channel>", in_busy_channel=False)
@example(text="status busy-feature", in_busy_channel=False)
@example(text="advance", in_busy_channel=True)
@example(text="update <!channel> <@U1|x> ship it", in_busy_channel=True)
@example(text="start " + "x" * 5000, in_busy_channel=False)
@example(text="pause busy-feature " + "why " * 200, in_busy_channel=False)
@example(text="digest busy-feature weekly 25:99", in_busy_channel=False)
@example(text="approvers busy-feature add <@U1|x>", in_busy_channel=False)
@example(text="start x --tz Mars/Olympus", in_busy_channel=False)
@example(text="start y --owner <@U1|x> --stakeholders <#C123|launches> --flag a.b", in_busy_channel=False)
@example(text="metrics", in_busy_channel=True)
@example(text="\x1b\r\n\t\x7f", in_busy_channel=False)
def test_any_command_text_is_acked_in_time_and_answered(
    command_world: tuple[SlackDriver, str],
    bot_server: BotProcess,
    slack: LocalSlack,
    text: str,
    in_busy_channel: bool,
) -> None:
    driver, busy = command_world
    channel = busy if in_busy_channel else new_channel()

    check_command(bot_server, slack, driver, text, channel)


def check_command(bot: BotProcess, slack: LocalSlack, driver: SlackDriver, text: str, channel: str) -> None:
    """Acked in time; answered in the ack, or after it (at the response_url, with a modal, or
    for a start by the status message in the channel); no traceback shown or logged."""
    log = LogWatch(bot)
    sent = send_command(driver, slack, text, channel=channel)
    assert_acked(sent)
    acked = ack_answer(sent.response)
    assert_no_traceback_shown(acked)
    starting = acked is not None and "Starting" in str(acked.get("text", ""))
    if acked is None or starting:

        def status_posted() -> list[Params]:
            return [
                c.params
                for c in slack.calls("chat.postMessage")
                if starting and c.at >= sent.at and c.params.get("channel") == channel
            ]

        later = wait_answer(slack, sent, also=status_posted)
        assert later, f"no answer to /rollout {text!r} within {ANSWER_TIMEOUT_S}s"
        assert_no_traceback_shown(*later)
    assert_quiet_log(log, text)


NUL_TEXTS = {
    "start-feature": "start nul\x00name",
    "start-service": "start nul-service --service a\x00b",
    "status-feature": "status nul\x00name",
    "pause-reason": "pause busy-feature why\x00not",
    "update-text": "update busy-feature hello\x00world",
}


@pytest.mark.parametrize("text", list(NUL_TEXTS.values()), ids=list(NUL_TEXTS))
def test_nul_characters_in_commands_are_answered_politely(
    nul_world: tuple[SlackDriver, str],
    bot_server: BotProcess,
    slack: LocalSlack,
    text: str,
) -> None:
    """Slack passes NUL through in command text; SQLite stores it, Postgres refuses it."""
    driver, busy = nul_world
    check_command(bot_server, slack, driver, text, busy)


# --- 2. interactions ------------------------------------------------------------------------


@dataclass
class Clickable:
    rollout_id: int
    channel: str
    message: Params  # the status message as it was last rendered (stale for some)


@dataclass
class World:
    """A workspace with rollouts to click on: one open, one whose first phase's checklist rows
    were deleted, one deleted outright (its status message left stale), and one in another
    workspace."""

    driver: SlackDriver
    channel: str
    own: int
    gutted: int
    deleted: int
    foreign: int
    clickables: list[Clickable]
    item_ids: list[int]

    def __repr__(self) -> str:  # keeps hypothesis' failure reports short
        return f"World(team={self.driver.team_id}, own={self.own}, gutted={self.gutted}, deleted={self.deleted}, foreign={self.foreign})"

    @property
    def channels(self) -> list[str]:
        return [c.channel for c in self.clickables]

    def rollout_ids(self) -> list[int]:
        return [c.rollout_id for c in self.clickables]

    def messages(self) -> list[Params]:
        return [c.message for c in self.clickables]


def _message(slack: LocalSlack, db: Database, channel: str, rollout_id: int) -> Params:
    ts = status_ts(db, rollout_id)
    assert ts is not None
    return slack.message(channel, ts)


@pytest.fixture(scope="module")
def world(bot_server: BotProcess, slack: LocalSlack, module_db: Database) -> World:
    """Shared by the module's interaction tests: clicks may pause or advance the open rollout,
    which only changes what the answers say."""
    bot_db = module_db
    driver = new_driver(bot_server, slack)
    stranger = new_driver(bot_server, slack)
    clickables = []
    for who, feature in ((driver, "clicked"), (driver, "gutted"), (driver, "deleted"), (stranger, "foreign")):
        channel = new_channel()
        rollout_id = started_rollout(who, slack, bot_db, channel, f"{feature}-feature")
        clickables.append(Clickable(rollout_id, channel, _message(slack, bot_db, channel, rollout_id)))
    own, gutted, deleted, foreign = (c.rollout_id for c in clickables)
    items = item_ids(bot_db, own) + item_ids(bot_db, gutted) + item_ids(bot_db, foreign)
    with bot_db.transaction() as session:
        phase_ids = select(Phase.id).where(Phase.rollout_id == gutted, Phase.position == 0)
        session.execute(delete(ChecklistItem).where(ChecklistItem.phase_id.in_(phase_ids)))
        session.execute(delete(Rollout).where(Rollout.id == deleted))
    with bot_db.reading() as session:
        assert session.get(Rollout, deleted) is None, "the rollout was not deleted (no cascade?)"
    return World(
        driver=driver,
        channel=clickables[0].channel,
        own=own,
        gutted=gutted,
        deleted=deleted,
        foreign=foreign,
        clickables=clickables,
        item_ids=[*items, max(items) + 1000],
    )


def envelope(world: World, kind: str, **fields: Any) -> Params:
    """The outside of an interaction payload as Slack sends it."""
    user = "W111"
    return {
        "type": kind,
        "user": {"id": user, "username": "w111", "name": "w111", "team_id": world.driver.team_id},
        "api_app_id": APP_ID,
        "token": "verification_token",
        "trigger_id": _trigger_id(),
        "team": {"id": world.driver.team_id, "domain": "test-domain"},
        "is_enterprise_install": False,
        **fields,
    }


def block_actions(
    world: World, action: Any, message: Any = None, channel: str | None = None, **fields: Any
) -> Params:
    channel = channel or world.channel
    payload = envelope(
        world,
        "block_actions",
        container={"type": "message", "message_ts": "1700000000.000100", "channel_id": channel},
        channel={"id": channel, "name": channel.lower()},
        response_url=world.driver.slack.response_url(f"click-{uuid.uuid4().hex[:12]}"),
        actions=[action],
        state={"values": {}},
        **fields,
    )
    if message is not None:
        payload["message"] = message
    return payload


BUTTONS = ["advance", "snapshot", "pause", "resume", "rollback", "advance_anyway"]
# ("rollback" left out: a pick runs it at once and would close the rollout the other clicks need)
PICKABLE = ["status", "advance", "snapshot", "pause", "resume", "complete", "baseline", "metrics"]


def _checkbox_blocks(message: Params) -> list[tuple[str, list[str], list[str]]]:
    """(block_id, option values, initially ticked values) of each checklist in a message."""
    found = []
    for block in message.get("blocks", []):
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("type") == "checkboxes":
                found.append(
                    (
                        block["block_id"],
                        [o["value"] for o in element.get("options", [])],
                        [o["value"] for o in element.get("initial_options") or []],
                    )
                )
    return found


@st.composite
def realistic_click(draw: st.DrawFn, world: World) -> Params:
    """What Slack can really send: the bot's own buttons and checkboxes, clicked on status
    messages that may be stale, whose rollout or checklist rows may be gone, or that belong to
    another workspace; ids swapped for ones that do not exist or are someone else's."""
    target = draw(st.sampled_from(world.clickables))
    rollout_id = draw(st.sampled_from([target.rollout_id] * 4 + [*world.rollout_ids(), 987654321]))
    kind = draw(st.sampled_from(["button", "pick", "checkboxes", "checkboxes"]))
    if kind == "button":
        action_id = draw(st.sampled_from(BUTTONS[:-1]))
        action: Params = {
            "type": "button",
            "action_id": action_id,
            "block_id": "controls",
            "value": str(rollout_id),
        }
    elif kind == "pick":
        action = {
            "type": "button",
            "action_id": f"pick_rollout:{draw(st.integers(0, 5))}",
            "block_id": "pick",
            "value": f"{draw(st.sampled_from(PICKABLE))}:{rollout_id}",
        }
    else:
        block_id, options, ticked = draw(st.sampled_from(_checkbox_blocks(target.message)))
        if rollout_id != target.rollout_id:
            block_id = re.sub(r"^checklist:\d+:", f"checklist:{rollout_id}:", block_id)
        # Like a Slack client: the shown selection with one box flipped, or (a crossed click,
        # a stale message) any selection of this rollout's and other rollouts' items.
        flipped = set(ticked) ^ {draw(st.sampled_from(options))}
        values = draw(
            st.one_of(
                st.just(sorted(flipped)),
                st.lists(st.sampled_from([str(i) for i in world.item_ids]), max_size=4, unique=True),
            )
        )
        action = {
            "type": "checkboxes",
            "action_id": "checklist_toggle",
            "block_id": block_id,
            "selected_options": [
                {"value": v, "text": {"type": "mrkdwn", "text": f"item {v}"}} for v in values
            ],
        }
    action["action_ts"] = f"{time.time():.6f}"
    message = draw(st.sampled_from([target.message, None]))
    return block_actions(world, action, message=message, channel=target.channel)


def _answerable(payload: Params) -> bool:
    """Payloads that carry a response_url and name a listener of the bot."""
    return isinstance(payload.get("response_url"), str)


def check_interaction(
    bot: BotProcess,
    slack: LocalSlack,
    world: World,
    payload: Any,
    *,
    expect_answer: bool,
    allow_4xx: bool = False,
) -> None:
    log = LogWatch(bot)
    sent = send_payload(world.driver, payload)
    assert_acked(sent, allow_4xx=allow_4xx)
    assert_no_traceback_shown(ack_answer(sent.response))
    if expect_answer and sent.response.status == 200:
        answers = wait_answer(slack, sent, world.channels, "W111")
        assert answers, f"no answer within {ANSWER_TIMEOUT_S}s to {json.dumps(payload)[:600]}"
        assert_no_traceback_shown(*answers)
        assert_quiet_log(log, payload)
    else:
        assert_quiet_log(log, payload, settle=True)


@settings(PROPERTY, max_examples=60)
@given(data=st.data())
def test_clicks_on_stale_missing_and_foreign_rollouts_are_answered(
    world: World, bot_server: BotProcess, slack: LocalSlack, data: st.DataObject
) -> None:
    payload = data.draw(realistic_click(world))
    check_interaction(bot_server, slack, world, payload, expect_answer=True)


@pytest.fixture
def int32_ids_on_postgres() -> None:
    """Ids past Postgres' INTEGER range are refused like any other foreign id (they once
    reached the database and failed there)."""


GARBAGE_VALUES = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.integers(min_value=2**31 - 2, max_value=2**31 + 2).map(str),
    st.integers(min_value=2**63, max_value=2**80).map(str),
    st.sampled_from(
        ["", " 1", "1 ", "-1", "+1", "0x10", "1_000", "²", "١٢", "1.5", "NaN", "status:", ":", "::"]
    ),
)
WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.just({}),
)
ANY_VALUE = st.one_of(GARBAGE_VALUES, WRONG_TYPES)
# Which message the click comes from: an index into World.messages(), none, or not an object.
MESSAGE_CHOICE = st.one_of(
    st.none(), st.integers(0, 3), st.sampled_from(["x", {"blocks": "x"}, {"blocks": ["x"]}])
)


@st.composite
def garbage_action(draw: st.DrawFn) -> Params:
    """The bot's own action ids with values and fields Slack would not send: not numbers, too
    big, wrong types, options that are not objects, block ids that are not the bot's."""
    action_id = draw(st.sampled_from([*BUTTONS, "pick_rollout:1", "checklist_toggle"]))
    action: Params = {"type": "button", "action_id": action_id}
    if draw(st.integers(0, 4)):
        action["value"] = draw(ANY_VALUE)
    if action_id == "checklist_toggle":
        action["type"] = "checkboxes"
        action["block_id"] = draw(
            st.one_of(
                st.builds(lambda v: f"checklist:{v}:0:t0", GARBAGE_VALUES), st.text(max_size=30), WRONG_TYPES
            )
        )
        action["selected_options"] = draw(
            st.one_of(
                st.lists(st.builds(lambda v: {"value": v}, ANY_VALUE), max_size=3),
                st.lists(ANY_VALUE, max_size=3),
                WRONG_TYPES,
                st.text(max_size=5),
            )
        )
    return action


def _pick_message(world: World, choice: Any) -> Any:
    if isinstance(choice, int) and not isinstance(choice, bool):
        return world.messages()[choice]
    return choice


@settings(PROPERTY, max_examples=60)
@given(action=garbage_action(), message=MESSAGE_CHOICE)
@example(action={"type": "button", "action_id": "advance", "value": "²"}, message=None)
@example(action={"type": "button", "action_id": "advance", "value": "2147483648"}, message=None)
@example(action={"type": "button", "action_id": "advance", "value": "99999999999999999999"}, message=None)
@example(action={"type": "button", "action_id": "advance_anyway", "value": "zz"}, message=None)
@example(action={"type": "button", "action_id": "pick_rollout:1", "value": "bogus:1"}, message=None)
@example(
    action={
        "type": "checkboxes",
        "action_id": "checklist_toggle",
        "block_id": "checklist:1:0:t0",
        "selected_options": ["1"],
    },
    message=None,
)
@example(
    action={
        "type": "checkboxes",
        "action_id": "checklist_toggle",
        "block_id": "checklist:1:0:t0",
        "selected_options": [],
    },
    message="x",
)
def test_clicks_with_garbage_values_are_answered_politely(
    world: World,
    bot_server: BotProcess,
    slack: LocalSlack,
    action: Params,
    message: Any,
    int32_ids_on_postgres: None,
) -> None:
    payload = block_actions(
        world, {**action, "action_ts": f"{time.time():.6f}"}, message=_pick_message(world, message)
    )
    check_interaction(bot_server, slack, world, payload, expect_answer=True)


def _shape_case(name: str, mutate: Callable[[Params], None], marks: Any = ()) -> Any:
    return pytest.param(mutate, id=name, marks=marks)


def _drop(key: str) -> Callable[[Params], None]:
    return lambda p: p.pop(key, None)


def _put(key: str, value: Any) -> Callable[[Params], None]:
    return lambda p: p.__setitem__(key, value)


@pytest.mark.parametrize(
    "mutate",
    [
        _shape_case("without-actions", _drop("actions")),
        _shape_case("actions-is-a-string", _put("actions", "x")),
        _shape_case("actions-is-empty", _put("actions", [])),
        _shape_case("action-is-a-string", _put("actions", ["x"])),
        _shape_case("action-without-action-id", _put("actions", [{"type": "button", "value": "1"}])),
        _shape_case("action-id-is-a-number", _put("actions", [{"type": "button", "action_id": 5}])),
        _shape_case("without-team", _drop("team")),
        _shape_case("team-is-a-string", _put("team", "T1")),
        _shape_case("user-is-a-string", _put("user", "W1")),
        _shape_case("channel-is-a-string", _put("channel", "C1")),
        _shape_case("without-response-url", _drop("response_url")),
        _shape_case("type-is-a-number", _put("type", 5)),
        _shape_case("without-type", _drop("type")),
    ],
)
def test_block_actions_with_missing_or_wrong_typed_fields_never_5xx(
    world: World, bot_server: BotProcess, slack: LocalSlack, mutate: Callable[[Params], None]
) -> None:
    payload = block_actions(world, {"type": "button", "action_id": "advance", "value": str(world.own)})
    mutate(payload)
    # With a listener to run and a response_url to answer at, the person hears back.
    answerable = isinstance(payload.get("actions"), list) and payload.get("type") == "block_actions"
    check_interaction(
        bot_server, slack, world, payload, expect_answer=answerable and _answerable(payload), allow_4xx=True
    )


@pytest.mark.parametrize(
    "payload", ["[1, 2]", '"x"', "null", "{not json", ""], ids=["list", "string", "null", "not-json", "empty"]
)
def test_payload_that_is_not_a_json_object_is_refused_without_5xx(
    bot_server: BotProcess, slack: LocalSlack, payload: str
) -> None:
    log = LogWatch(bot_server)
    response, _, _ = timed_post(new_driver(bot_server, slack), urlencode({"payload": payload}), FORM)
    assert 400 <= response.status < 500, (response.status, response.body[:200])
    assert_quiet_log(log, payload)


@settings(PROPERTY, max_examples=15)
@given(
    action_id=st.one_of(
        st.sampled_from(["approve_step", "ADVANCE", "advance ", "pick_rollout", "open"]), st.text(max_size=20)
    )
)
@example(action_id="approve_step")
def test_unknown_action_ids_are_acked_and_answered(
    world: World, bot_server: BotProcess, slack: LocalSlack, action_id: str
) -> None:
    known = {*BUTTONS, "checklist_toggle", "open_rollout"}
    if action_id in known or re.fullmatch(r"pick_rollout:\d+", action_id):
        return
    payload = block_actions(world, {"type": "button", "action_id": action_id, "value": str(world.own)})
    check_interaction(bot_server, slack, world, payload, expect_answer=True)


# --- modals ----------------------------------------------------------------------------------

CALLBACKS = ["start_rollout", "advance_override", "rollback_confirm", "edit_metrics", "import_plan"]
INPUT_BLOCKS = [
    "start_feature",
    "start_template",
    "start_owner",
    "start_stakeholders",
    "start_flag",
    "reason",
    "import_name",
    "import_text",
]


@st.composite
def metadata(draw: st.DrawFn) -> Any:
    """private_metadata: the bot's own FormContext (channel "{channel}" is filled in by the
    test), or garbage."""
    token = draw(
        st.one_of(
            st.sampled_from(["{own}", "{deleted}", "{foreign}", "{own}:0:0", "987654321"]), GARBAGE_VALUES
        )
    )
    return draw(
        st.one_of(
            st.just({"channel_id": "{channel}", "token": token}),
            st.sampled_from(["", "{}", "[]", "null", "{]", '{"channel_id": 5}', '{"token": "1"}', "garbage"]),
            st.text(max_size=30),
            st.builds(lambda c: {"channel_id": c, "token": token}, ANY_VALUE),
        )
    )


@st.composite
def view_state(draw: st.DrawFn) -> Any:
    field = st.fixed_dictionaries(
        {"type": st.just("plain_text_input")},
        optional={
            "value": st.one_of(st.text(max_size=100), WRONG_TYPES),
            "selected_option": st.one_of(
                st.none(), st.just({"value": "standard"}), st.just({"value": "nope"}), st.just("x")
            ),
            "selected_user": st.one_of(st.none(), st.just("U1"), st.integers()),
            "selected_conversations": st.one_of(
                st.none(), st.lists(st.just("C1"), max_size=2), st.just("C1")
            ),
        },
    )
    values = st.dictionaries(
        st.sampled_from(INPUT_BLOCKS), st.fixed_dictionaries({"value": field}), max_size=4
    )
    return draw(
        st.one_of(
            st.none(), st.just("x"), st.builds(lambda v: {"values": v}, st.one_of(values, st.just("x")))
        )
    )


def _fill(meta: Any, world: World) -> Any:
    if isinstance(meta, dict):
        ids = {"{own}": str(world.own), "{deleted}": str(world.deleted), "{foreign}": str(world.foreign)}
        token = str(meta.get("token", ""))
        for key, value in ids.items():
            token = token.replace(key, value)
        channel = world.channel if meta.get("channel_id") == "{channel}" else meta.get("channel_id")
        return json.dumps({"channel_id": channel, "token": token})
    return meta


def view_submission(world: World, callback_id: str, meta: Any, state: Any) -> Params:
    view: Params = {
        "id": f"V{uuid.uuid4().hex[:10].upper()}",
        "type": "modal",
        "team_id": world.driver.team_id,
        "callback_id": callback_id,
        "hash": f"{int(time.time())}.abc",
        "private_metadata": _fill(meta, world),
        "blocks": [],
    }
    if state is not None:
        view["state"] = state
    return envelope(world, "view_submission", view=view, response_urls=[])


def check_view(bot: BotProcess, slack: LocalSlack, world: World, payload: Params) -> None:
    log = LogWatch(bot)
    sent = send_payload(world.driver, payload)
    assert_acked(sent, allow_4xx=True)
    acked = ack_answer(sent.response)
    assert_no_traceback_shown(acked)
    meta = payload["view"]["private_metadata"]
    try:
        channel = json.loads(meta).get("channel_id") if isinstance(meta, str) else None
    except (ValueError, AttributeError):
        channel = None
    if sent.response.status == 200 and acked is None and channel == world.channel:
        # Saved after the ack: the person hears how it went in the channel the form came from.
        def posted() -> list[Params]:
            return [
                c.params
                for c in slack.calls("chat.postMessage")
                if c.at >= sent.at and c.params.get("channel") == world.channel
            ]

        answers = wait_answer(slack, sent, world.channels, "W111", also=posted)
        assert answers, f"no answer within {ANSWER_TIMEOUT_S}s to {json.dumps(payload)[:600]}"
        assert_no_traceback_shown(*answers)
        assert_quiet_log(log, payload)
    else:
        assert_quiet_log(log, payload, settle=True)


@settings(PROPERTY, max_examples=25)
@given(callback_id=st.sampled_from(CALLBACKS), meta=metadata(), state=view_state())
@example(callback_id="start_rollout", meta="garbage", state=None)
@example(
    callback_id="start_rollout",
    meta="{]",
    state={"values": {"start_feature": {"value": {"type": "plain_text_input", "value": "form-feature"}}}},
)
@example(
    callback_id="start_rollout",
    meta="{}",
    state={"values": {"start_feature": {"value": {"type": "plain_text_input", "value": 5}}}},
)
@example(
    callback_id="advance_override",
    meta="{]",
    state={"values": {"reason": {"value": {"type": "plain_text_input", "value": "why"}}}},
)
@example(
    callback_id="rollback_confirm", meta={"channel_id": "{channel}", "token": "abc"}, state={"values": {}}
)
@example(callback_id="edit_metrics", meta="{]", state={"values": {}})
@example(callback_id="edit_metrics", meta="{}", state="x")
@example(callback_id="rollback_confirm", meta={"channel_id": "{channel}", "token": "2147483648"}, state=None)
def test_modal_submissions_with_missing_state_or_garbage_metadata(
    world: World,
    bot_server: BotProcess,
    slack: LocalSlack,
    callback_id: str,
    meta: Any,
    state: Any,
    int32_ids_on_postgres: None,
) -> None:
    check_view(bot_server, slack, world, view_submission(world, callback_id, meta, state))


@settings(PROPERTY, max_examples=30)
@given(
    callback_id=st.sampled_from(["advance_override", "rollback_confirm", "edit_metrics"]),
    target=st.sampled_from(["{own}", "{deleted}", "{foreign}", "987654321"]),
    reason=st.text(min_size=1, max_size=200).filter(lambda t: t.strip() and "\x00" not in t),
)
def test_real_forms_about_missing_or_foreign_rollouts_are_answered(
    world: World, bot_server: BotProcess, slack: LocalSlack, callback_id: str, target: str, reason: str
) -> None:
    """Forms as the bot opens them (its own FormContext, a typed reason), submitted after their
    rollout was deleted, for another workspace's rollout, or for one that never existed."""
    token = f"{target}:0:0" if callback_id == "advance_override" else target
    state = {"values": {"reason": {"value": {"type": "plain_text_input", "value": reason}}}}
    payload = view_submission(world, callback_id, {"channel_id": "{channel}", "token": token}, state)
    check_view(bot_server, slack, world, payload)


def test_unknown_callback_id_is_acked(world: World, bot_server: BotProcess, slack: LocalSlack) -> None:
    payload = view_submission(
        world, "renamed_in_v2", {"channel_id": "{channel}", "token": "1"}, {"values": {}}
    )
    log = LogWatch(bot_server)
    sent = send_payload(world.driver, payload)
    assert sent.response.status == 200, (sent.response.status, sent.response.body)
    assert_quiet_log(log, payload, settle=True)


@pytest.mark.parametrize(
    "callback_id",
    [
        pytest.param(5, id="int"),
        pytest.param(None, id="null"),
        pytest.param({}, id="object"),
        pytest.param(["x"], id="list"),
        pytest.param(True, id="bool"),
    ],
)
def test_callback_id_that_is_not_a_string_is_refused_quietly(
    world: World, bot_server: BotProcess, slack: LocalSlack, callback_id: Any
) -> None:
    payload = view_submission(world, "x", {"channel_id": "{channel}", "token": "1"}, {"values": {}})
    payload["view"]["callback_id"] = callback_id
    log = LogWatch(bot_server)
    sent = send_payload(world.driver, payload)
    assert_acked(sent, allow_4xx=True)
    assert_quiet_log(log, payload, settle=sent.response.status == 200)


# --- events ----------------------------------------------------------------------------------

EVENT = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["app_mention", "app_home_opened"])},
        optional={
            "user": st.one_of(st.just("W111"), ANY_VALUE),
            "channel": st.one_of(st.just("C1"), WRONG_TYPES),
            "tab": st.one_of(st.sampled_from(["home", "messages", "about"]), WRONG_TYPES),
            "ts": st.one_of(st.just("1700000000.000100"), WRONG_TYPES),
            "thread_ts": st.one_of(st.just("1700000000.000100"), WRONG_TYPES),
            "text": st.one_of(st.text(max_size=30), WRONG_TYPES),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["message", "reaction_added", "team_join", ""]), WRONG_TYPES)}
    ),
    st.just({}),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


def event_body(team: str, event: Any, **extra: Any) -> Params:
    return {
        "token": "verification_token",
        "team_id": team,
        "api_app_id": APP_ID,
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "event": event,
        **extra,
    }


@settings(PROPERTY, max_examples=40)
@given(event=EVENT)
@example(event={"type": "app_mention"})
@example(event={"type": "app_home_opened", "tab": "home"})
@example(event="x")
@example(event={"type": "app_mention", "channel": 5})
@example(event={"type": {}})
def test_odd_events_are_acked_without_errors(bot_server: BotProcess, slack: LocalSlack, event: Any) -> None:
    driver = new_driver(bot_server, slack)
    log = LogWatch(bot_server)
    sent = send_event(driver, event_body(driver.team_id, event))
    assert_acked(sent, allow_4xx=True)
    assert_quiet_log(log, event, settle=sent.response.status == 200)


@settings(PROPERTY, max_examples=10)
@given(
    event=st.fixed_dictionaries(
        {"type": st.sampled_from(["app_mention", "app_home_opened", "message", "reaction_added"])},
        optional={
            "tab": st.sampled_from(["home", "messages", "about"]),
            "text": st.text(max_size=50),
            "thread_ts": st.just("1700000000.000100"),
        },
    )
)
@example(event={"type": "app_home_opened", "tab": "home"})
@example(event={"type": "app_mention", "text": "<@U0BOT> hi"})
def test_well_formed_events_are_acked_in_time(
    bot_server: BotProcess, slack: LocalSlack, event: Params
) -> None:
    """Events as Slack sends them (user, channel, ts present), whatever else they carry."""
    driver = new_driver(bot_server, slack)
    event = {"user": "W111", "channel": driver.channel_id, "ts": "1700000000.000200", **event}
    log = LogWatch(bot_server)
    sent = send_event(driver, event_body(driver.team_id, event))
    assert_acked(sent, allow_4xx=event["type"] not in ("app_mention", "app_home_opened"))
    assert_quiet_log(log, event, settle=True)


def test_opening_the_app_home_publishes_it(
    bot_server: BotProcess, slack: LocalSlack, bot_db: Database
) -> None:
    driver = new_driver(bot_server, slack)
    started_rollout(driver, slack, bot_db, new_channel(), "home-feature")
    log = LogWatch(bot_server)
    event = {"type": "app_home_opened", "user": "W111", "channel": "D0HOME", "tab": "home"}
    sent = send_event(driver, event_body(driver.team_id, event))
    assert_acked(sent)
    slack.wait_for(
        "views.publish", lambda c: c.at >= sent.at and c.params.get("user_id") == "W111", timeout=3
    )
    assert_quiet_log(log, event)


# --- 3. malformed HTTP -----------------------------------------------------------------------


def _command_body(team: str) -> str:
    return urlencode(
        {
            "team_id": team,
            "channel_id": new_channel(),
            "user_id": "W111",
            "command": "/rollout",
            "text": "list",
            "response_url": "http://127.0.0.1:9/response/nowhere",
            "trigger_id": _trigger_id(),
        }
    )


def post_unsigned(bot: BotProcess, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(f"{bot.url}/slack/events", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), answer.read().decode("utf-8", "replace")
    except HTTPError as error:
        return int(error.code), error.read().decode("utf-8", "replace")


@settings(PROPERTY, max_examples=60)
@given(
    flaw=st.sampled_from(
        ["signature", "wrong-secret", "stale", "future", "no-timestamp", "no-signature", "no-headers"]
    ),
    # Printable ASCII: gunicorn itself answers 400 to control characters in a header.
    signature=st.one_of(
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
        st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: "v0=" + h),
    ),
    skew=st.integers(min_value=301, max_value=10**8),
)
def test_bad_signatures_and_stale_timestamps_get_401(
    bot_server: BotProcess, flaw: str, signature: str, skew: int
) -> None:
    body = _command_body(new_team())
    now = int(time.time())
    stamp = str(now)
    headers = {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body),
    }
    if flaw == "signature":
        headers["X-Slack-Signature"] = signature
    elif flaw == "wrong-secret":
        headers["X-Slack-Signature"] = sign("not-the-secret", stamp, body)
    elif flaw in ("stale", "future"):
        stamp = str(now - skew if flaw == "stale" else now + skew)
        # Correctly signed for that timestamp: only its age is wrong (a replayed request).
        headers.update(
            {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body)}
        )
    elif flaw == "no-timestamp":
        del headers["X-Slack-Request-Timestamp"]
    elif flaw == "no-signature":
        del headers["X-Slack-Signature"]
    else:
        headers = {"Content-Type": FORM}
    # Header values must be latin-1 to be sent at all; Slack's are ASCII.
    headers = {
        k: v.encode("latin-1", "replace").decode("latin-1").replace("\n", " ").replace("\r", " ")
        for k, v in headers.items()
    }
    log = LogWatch(bot_server)
    started = time.monotonic()
    status, answer = post_unsigned(bot_server, body.encode(), headers)
    assert status == 401, (flaw, status, answer[:200])
    assert time.monotonic() - started < ACK_LIMIT_S
    assert_quiet_log(log, flaw)


@pytest.mark.parametrize("stamp", ["abc", "", "1.5", "١٢٣"])
def test_non_numeric_timestamp_gets_401(bot_server: BotProcess, stamp: str) -> None:
    body = _command_body(new_team())
    headers = {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body),
    }
    headers = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
    log = LogWatch(bot_server)
    status, answer = post_unsigned(bot_server, body.encode(), headers)
    assert status == 401, (status, answer[:200])
    assert_quiet_log(log, stamp)


GARBAGE_TYPES = st.sampled_from(
    ["application/json", FORM, "text/plain", "application/octet-stream", "multipart/form-data", ""]
)
GARBAGE_BODIES = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        ["{", "[1,2]", "null", '"x"', "payload=%7B", "payload=", "payload=[]", "a=1&b", "=&=&", '{"type": 5}']
    ),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
)


@settings(PROPERTY, max_examples=30)
@given(content_type=GARBAGE_TYPES, body=GARBAGE_BODIES)
@example(content_type="application/json", body="{not json")
@example(content_type="application/json", body="[1, 2]")
@example(content_type=FORM, body="payload=%7B")
def test_unsigned_garbage_gets_401(bot_server: BotProcess, content_type: str, body: str) -> None:
    headers = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64}
    if content_type:
        headers["Content-Type"] = content_type
    log = LogWatch(bot_server)
    status, answer = post_unsigned(bot_server, body.encode("utf-8", "surrogatepass"), headers)
    assert status == 401, (status, answer[:200])
    assert_quiet_log(log, body)


@settings(PROPERTY, max_examples=30)
@given(content_type=GARBAGE_TYPES, body=GARBAGE_BODIES)
@example(content_type="application/json", body="{not json")
@example(content_type=FORM, body="payload=%7B")
@example(content_type="application/json", body="[1,2]")
def test_signed_garbage_is_never_5xx(
    bot_server: BotProcess, slack: LocalSlack, content_type: str, body: str
) -> None:
    driver = new_driver(bot_server, slack)
    log = LogWatch(bot_server)
    response, elapsed, _ = timed_post(driver, body, content_type)
    assert response.status < 500, (response.status, response.body[:200])
    assert elapsed < ACK_LIMIT_S
    # Only a request the bot took (200) can have queued work that might fail later.
    assert_quiet_log(log, body, settle=response.status == 200)


# --- 4. Slack's retries ----------------------------------------------------------------------

RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


def _count(db: Database, stmt: Any) -> int:
    with db.reading() as session:
        return int(session.scalar(stmt) or 0)


def test_a_retried_start_never_creates_a_second_rollout(
    bot_server: BotProcess, slack: LocalSlack, bot_db: Database
) -> None:
    driver = new_driver(bot_server, slack)
    channel = new_channel()
    name = f"retry-{uuid.uuid4().hex[:8]}"
    fields_path = f"retried-{uuid.uuid4().hex[:8]}"
    # The original, and Slack's retries of the very same request: one at once (while the
    # original's work is still running), more after it is done.
    first = send_command(driver, slack, f"start {name}", channel=channel, response_name=fields_path)
    assert first.response.status == 200
    retries = [
        send_command(
            driver,
            slack,
            f"start {name}",
            channel=channel,
            response_name=fields_path,
            headers={**RETRY, "X-Slack-Retry-Num": n},
        )
        for n in ("1", "2")
    ]
    slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel, timeout=10)
    retries.append(
        send_command(
            driver,
            slack,
            f"start {name}",
            channel=channel,
            response_name=fields_path,
            headers={**RETRY, "X-Slack-Retry-Num": "3"},
        )
    )
    for retry in retries:
        assert retry.response.status == 200 and retry.elapsed < ACK_LIMIT_S
    time.sleep(1.0)
    assert (
        _count(bot_db, select(func.count()).select_from(Rollout).where(Rollout.team_id == driver.team_id))
        == 1
    )
    posts = [
        c
        for c in slack.calls("chat.postMessage")
        if c.params.get("channel") == channel and not c.params.get("thread_ts")
    ]
    assert len(posts) == 1, [p.params.get("text") for p in posts]
    # Nobody was told "already exists" for a request they sent once.
    said = [body(c.params) for c in slack.calls("response_url") if c.path == f"/response/{fields_path}"]
    assert not any("already" in text.lower() for text in said), said


def test_a_retried_advance_click_never_advances_twice(
    bot_server: BotProcess, slack: LocalSlack, datadog: FakeDatadog, bot_db: Database
) -> None:
    driver = new_driver(bot_server, slack)
    sc = Scenario(
        driver, slack, datadog, bot_db, driver.channel_id, feature=f"retry-adv-{uuid.uuid4().hex[:6]}"
    )
    datadog.set_value(sc.errors_match, 1.0)
    sc.start("aggressive")
    sc.ready()

    sent: list[tuple[str, str]] = []
    original = driver.post_raw

    def recording(body: str, content_type: str, **kwargs: Any) -> Response:
        sent.append((body, content_type))
        return original(body, content_type, **kwargs)

    driver.post_raw = recording  # type: ignore[method-assign]
    response, path = sc.click(sc.status_message(), "advance")
    driver.post_raw = original  # type: ignore[method-assign]
    assert response.status == 200
    body, content_type = sent[-1]
    # Slack resends the same payload, with the same response_url, marked as a retry: at once
    # (concurrently with the original's gate check) and again later.
    threads = [
        threading.Thread(
            target=original, args=(body, content_type), kwargs={"headers": {**RETRY, "X-Slack-Retry-Num": n}}
        )
        for n in ("1", "2")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sc.posts_to(path, count=2)
    assert original(body, content_type, headers={**RETRY, "X-Slack-Retry-Num": "3"}).status == 200
    time.sleep(1.5)
    advanced = _count(
        bot_db,
        select(func.count())
        .select_from(Event)
        .where(Event.rollout_id == sc.rollout_id, Event.kind == EventKind.ADVANCED),
    )
    assert advanced == 1
    assert sc.where() == ("active", 1, 0)
    # The one click was answered once: "Checking…" and the verdict, not twice over.
    assert len([c for c in slack.calls("response_url") if c.path == path]) == 2


# --- after all of it -------------------------------------------------------------------------


def test_the_bot_is_still_alive_and_healthy(bot_server: BotProcess) -> None:
    assert_alive(bot_server)
