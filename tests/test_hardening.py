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

import json
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from bot.parsing import USAGES
from storage.db import Database
from storage.enums import EventKind
from storage.models import ChecklistItem, Event, Phase, Rollout, SlackMessage
from tests.conftest import SIGNING_SECRET, BotProcess
from tests.driver import FORM, Response, SlackDriver, sign
from tests.e2e_rollouts import Scenario, wait_until
from tests.fakes.datadog_api import FakeDatadog
from tests.fakes.slack_api import APP_ID, FakeSlack

pytestmark = pytest.mark.e2e

# Slack gives up on an ack after 3 s.
ACK_LIMIT_S = 3.0
# How long the bot may take to answer through response_url, a modal or the status message.
ANSWER_TIMEOUT_S = 6.0
# Inputs the bot cannot answer (no response_url, no channel): how long a lazy listener has to
# fail in the log before the example counts as quiet.
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


class LogWatch:
    """What the bot logged since the last look."""

    def __init__(self, bot: BotProcess) -> None:
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
    for begin, end in zip(starts, starts[1:], strict=False):
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
    at: float  # time.time() before sending, comparable with FakeSlack's Call.at
    path: str  # the response_url's path ("" when the request had none)
    trigger_id: str


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def timed_post(driver: SlackDriver, body: str, content_type: str, **kwargs: Any) -> tuple[Response, float, float]:
    at = time.time()
    started = time.monotonic()
    response = driver.post_raw(body, content_type, **kwargs)
    return response, time.monotonic() - started, at


def send_command(
    driver: SlackDriver,
    slack: FakeSlack,
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


def answers_to(slack: FakeSlack, sent: Sent, channel: str | None, user: str | None) -> list[Params]:
    """What the bot said back to this request after the ack: posts to its response_url, a modal
    opened with its trigger_id, an ephemeral to the user in the channel, an edit of a message
    in the channel (a checklist click is answered by the status message itself)."""
    found: list[Params] = []
    for call in slack.calls():
        if call.at < sent.at:
            continue
        if call.method == "response_url" and sent.path and call.path == sent.path:
            found.append(call.params)
        elif call.method == "views.open" and sent.trigger_id and call.params.get("trigger_id") == sent.trigger_id:
            found.append(call.params)
        elif (
            call.method == "chat.postEphemeral"
            and channel
            and call.params.get("channel") == channel
            and call.params.get("user") == user
        ):
            found.append(call.params)
        elif call.method == "chat.update" and channel and call.params.get("channel") == channel:
            found.append(call.params)
    return found


def wait_answer(
    slack: FakeSlack,
    sent: Sent,
    channel: str | None,
    user: str | None,
    *,
    also: Callable[[], list[Params]] | None = None,
    timeout: float = ANSWER_TIMEOUT_S,
) -> list[Params]:
    deadline = time.monotonic() + timeout
    while True:
        found = answers_to(slack, sent, channel, user) + (also() if also else [])
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def assert_no_traceback_shown(*answers: Params | None) -> None:
    for answer in answers:
        if answer is not None:
            shown = json.dumps(answer, ensure_ascii=False)
            assert "Traceback" not in shown, shown[:2000]
            assert 'File "' not in shown, shown[:2000]


def assert_acked(sent: Sent, *, allow_4xx: bool = False) -> None:
    status = sent.response.status
    assert status < 500, f"HTTP {status}: {sent.response.body[:300]!r}"
    if not allow_4xx:
        assert status == 200, f"HTTP {status}: {sent.response.body[:300]!r}"
    assert sent.elapsed < ACK_LIMIT_S, f"acked after {sent.elapsed:.2f}s"


def assert_quiet_log(log: LogWatch, what: object, settle: float = 0.0) -> None:
    if settle:
        time.sleep(settle)
    problems = log.problems()
    assert not problems, f"the bot logged unhandled errors for {what!r}:\n" + "\n".join(problems)


def assert_alive(bot: BotProcess) -> None:
    assert bot.proc is not None and bot.proc.poll() is None, f"rollout-bot exited:\n{bot.log()}"
    assert healthz(bot) == 200


def new_channel() -> str:
    return "C" + uuid.uuid4().hex[:10].upper()


def new_team() -> str:
    return "T" + uuid.uuid4().hex[:8].upper()


def new_driver(bot: BotProcess, slack: FakeSlack, team: str | None = None) -> SlackDriver:
    return SlackDriver(bot.url, SIGNING_SECRET, slack, team_id=team or new_team(), channel_id=new_channel())


def started_rollout(driver: SlackDriver, slack: FakeSlack, db: Database, channel: str, feature: str) -> int:
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
            select(SlackMessage.ts).where(SlackMessage.rollout_id == rollout_id, SlackMessage.purpose == "status")
        ).first()


def item_ids(db: Database, rollout_id: int) -> list[int]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(ChecklistItem.id).where(ChecklistItem.rollout_id == rollout_id).order_by(ChecklistItem.id)
            )
        )


# --- 1. slash commands ----------------------------------------------------------------------

SUBCOMMANDS = [*USAGES, "START", "Status", "bogus", "", "--help", "rollout"]
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
word = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(min_size=1, max_size=12),
    st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=12),
)
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
)


@pytest.fixture
def command_world(bot_server: BotProcess, slack: FakeSlack, bot_db: Database) -> Iterator[tuple[SlackDriver, str]]:
    """A workspace of its own with one open rollout in a "busy" channel, so commands that need
    a rollout reach it."""
    driver = new_driver(bot_server, slack)
    busy = new_channel()
    started_rollout(driver, slack, bot_db, busy, "busy-feature")
    yield driver, busy


@PROPERTY
@settings(max_examples=100)
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
@example(text="\x00\x1b\r\n\t", in_busy_channel=False)
def test_any_command_text_is_acked_in_time_and_answered(
    command_world: tuple[SlackDriver, str],
    bot_server: BotProcess,
    slack: FakeSlack,
    text: str,
    in_busy_channel: bool,
) -> None:
    driver, busy = command_world
    channel = busy if in_busy_channel else new_channel()
    log = LogWatch(bot_server)

    sent = send_command(driver, slack, text, channel=channel)

    assert_acked(sent)
    acked = ack_answer(sent.response)
    assert_no_traceback_shown(acked)
    starting = acked is not None and "Starting" in str(acked.get("text", ""))
    if acked is None or starting:
        # Answered after the ack: at the response_url, with a modal, or (a start) by the
        # status message posted in the channel.
        def status_posted() -> list[Params]:
            return [
                c.params
                for c in slack.calls("chat.postMessage")
                if starting and c.at >= sent.at and c.params.get("channel") == channel
            ]

        later = wait_answer(slack, sent, None, None, also=status_posted)
        assert later, f"no answer to /rollout {text!r} within {ANSWER_TIMEOUT_S}s"
        assert_no_traceback_shown(*later)
    assert_quiet_log(log, text)


# --- 2. interactions ------------------------------------------------------------------------


@dataclass
class World:
    """A workspace with rollouts to click on: one open, one whose checklist rows were deleted,
    one deleted outright (its status message left stale), and one in another workspace."""

    driver: SlackDriver
    channel: str
    own: int
    own_message: Params
    gutted: int
    gutted_message: Params
    deleted: int
    deleted_message: Params
    foreign: int
    foreign_message: Params
    item_ids: list[int]

    def rollout_ids(self) -> list[int]:
        return [self.own, self.gutted, self.deleted, self.foreign]

    def messages(self) -> list[Params]:
        return [self.own_message, self.gutted_message, self.deleted_message, self.foreign_message]


def _message(slack: FakeSlack, db: Database, channel: str, rollout_id: int) -> Params:
    ts = status_ts(db, rollout_id)
    assert ts is not None
    return slack.message(channel, ts)


@pytest.fixture
def world(bot_server: BotProcess, slack: FakeSlack, bot_db: Database) -> World:
    driver = new_driver(bot_server, slack)
    channel, other_channel, foreign_channel = new_channel(), new_channel(), new_channel()
    own = started_rollout(driver, slack, bot_db, channel, "clicked-feature")
    gutted = started_rollout(driver, slack, bot_db, other_channel, "gutted-feature")
    deleted = started_rollout(driver, slack, bot_db, new_channel(), "deleted-feature")
    stranger = new_driver(bot_server, slack)
    foreign = started_rollout(stranger, slack, bot_db, foreign_channel, "foreign-feature")
    messages = {
        rid: _message(slack, bot_db, ch, rid)
        for rid, ch in ((own, channel), (gutted, other_channel), (foreign, foreign_channel))
    }
    with bot_db.reading() as session:
        deleted_channel = session.get_one(Rollout, deleted).channel_id
    messages[deleted] = _message(slack, bot_db, deleted_channel, deleted)
    items = item_ids(bot_db, own) + item_ids(bot_db, gutted) + item_ids(bot_db, foreign)
    with bot_db.transaction() as session:
        phase_ids = select(Phase.id).where(Phase.rollout_id == gutted, Phase.position == 0)
        session.execute(delete(ChecklistItem).where(ChecklistItem.phase_id.in_(phase_ids)))
        session.execute(delete(Rollout).where(Rollout.id == deleted))
    with bot_db.reading() as session:
        assert session.get(Rollout, deleted) is None, "the rollout was not deleted (no cascade?)"
    return World(
        driver=driver,
        channel=channel,
        own=own,
        own_message=messages[own],
        gutted=gutted,
        gutted_message=messages[gutted],
        deleted=deleted,
        deleted_message=messages[deleted],
        foreign=foreign,
        foreign_message=messages[foreign],
        item_ids=items + [max(items) + 1000, 0],
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


def block_actions(world: World, action: Any, message: Any = None, **fields: Any) -> Params:
    payload = envelope(
        world,
        "block_actions",
        container={"type": "message", "message_ts": "1700000000.000100", "channel_id": world.channel},
        channel={"id": world.channel, "name": world.channel.lower()},
        response_url=world.driver.slack.response_url(f"click-{uuid.uuid4().hex[:12]}"),
        actions=[action],
        state={"values": {}},
        **fields,
    )
    if message is not None:
        payload["message"] = message
    return payload


BUTTONS = ["advance", "snapshot", "pause", "resume", "rollback", "advance_anyway"]


@st.composite
def realistic_click(draw: st.DrawFn, world: World) -> Params:
    """What Slack can really send: the bot's own buttons and checkboxes, on messages that may
    be stale, whose rollout may be gone, whose items may be gone, or from another workspace."""
    message = draw(st.sampled_from(world.messages()))
    kind = draw(st.sampled_from(["button", "button", "pick", "checkboxes", "checkboxes"]))
    rollout_id = draw(st.sampled_from([*world.rollout_ids(), 987654321]))
    if kind == "button":
        action_id = draw(st.sampled_from(BUTTONS[:-1]))
        action = {"type": "button", "action_id": action_id, "block_id": "controls", "value": str(rollout_id)}
    elif kind == "pick":
        sub = draw(st.sampled_from(["status", "advance", "snapshot", "pause", "resume", "complete", "update"]))
        action = {
            "type": "button",
            "action_id": f"pick_rollout:{draw(st.integers(0, 5))}",
            "block_id": "pick",
            "value": f"{sub}:{rollout_id}",
        }
    else:
        shown = [
            o["value"]
            for b in message.get("blocks", [])
            for e in b.get("elements", [])
            if e.get("type") == "checkboxes"
            for o in e.get("initial_options") or []
        ]
        values = draw(st.lists(st.sampled_from(world.item_ids), max_size=4, unique=True))
        if draw(st.booleans()):
            values += [int(v) for v in shown]
        action = {
            "type": "checkboxes",
            "action_id": "checklist_toggle",
            "block_id": f"checklist:{rollout_id}:{draw(st.integers(0, 3))}:t0",
            "selected_options": [
                {"value": str(v), "text": {"type": "mrkdwn", "text": f"item {v}"}} for v in dict.fromkeys(values)
            ],
        }
    action["action_ts"] = f"{time.time():.6f}"
    return block_actions(world, action, message=draw(st.sampled_from([message, None])))


def _answerable(payload: Params) -> bool:
    """Payloads that carry a response_url and name a listener of the bot."""
    return isinstance(payload.get("response_url"), str)


def check_interaction(
    bot: BotProcess, slack: FakeSlack, world: World, payload: Any, *, expect_answer: bool, allow_4xx: bool = False
) -> None:
    log = LogWatch(bot)
    sent = send_payload(world.driver, payload)
    assert_acked(sent, allow_4xx=allow_4xx)
    assert_no_traceback_shown(ack_answer(sent.response))
    if expect_answer and sent.response.status == 200:
        answers = wait_answer(slack, sent, world.channel, "W111")
        assert answers, f"no answer within {ANSWER_TIMEOUT_S}s to {json.dumps(payload)[:600]}"
        assert_no_traceback_shown(*answers)
        assert_quiet_log(log, payload)
    else:
        assert_quiet_log(log, payload, settle=SETTLE_S)


@PROPERTY
@settings(max_examples=80)
@given(data=st.data())
def test_clicks_on_stale_missing_and_foreign_rollouts_are_answered(
    world: World, bot_server: BotProcess, slack: FakeSlack, data: st.DataObject
) -> None:
    payload = data.draw(realistic_click(world))
    check_interaction(bot_server, slack, world, payload, expect_answer=True)


