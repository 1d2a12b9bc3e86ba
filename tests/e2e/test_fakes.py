"""The stand-ins themselves: LocalSlack answers like Slack, SlackDriver talks like it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from slack_bolt import Ack, App, BoltRequest, Respond, Say
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import (
    FixedValueRetryIntervalCalculator,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from bot.devtools.local_slack import AUTH_TEST, BOT_ID, BOT_USER_ID, TEAM_ID, LocalSlack, Posted
from tests.driver import FORM, SlackDriver

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SECRET = "test-signing-secret"
APPROVE_BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Step 1*"}},
    {
        "type": "actions",
        "block_id": "step",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "step-1",
                "text": {"type": "plain_text", "text": "Approve"},
            }
        ],
    },
]
PLAN_VIEW: dict[str, Any] = {
    "type": "modal",
    "callback_id": "new_plan",
    "private_metadata": '{"channel": "C111"}',
    "title": {"type": "plain_text", "text": "New rollout"},
    "submit": {"type": "plain_text", "text": "Create"},
    "blocks": [
        {
            "type": "input",
            "block_id": "name",
            "label": {"type": "plain_text", "text": "Feature"},
            "element": {"type": "plain_text_input", "action_id": "value"},
        },
        {
            "type": "input",
            "block_id": "phase",
            "label": {"type": "plain_text", "text": "First phase"},
            "element": {
                "type": "static_select",
                "action_id": "value",
                "options": [
                    {"text": {"type": "plain_text", "text": "Beta"}, "value": "beta"},
                    {"text": {"type": "plain_text", "text": "GA"}, "value": "ga"},
                ],
            },
        },
        {
            "type": "input",
            "block_id": "owners",
            "label": {"type": "plain_text", "text": "Owners"},
            "element": {"type": "multi_users_select", "action_id": "value"},
        },
        {
            "type": "input",
            "block_id": "channel",
            "label": {"type": "plain_text", "text": "Channel"},
            "element": {
                "type": "conversations_select",
                "action_id": "value",
                "initial_conversation": "C111",
            },
        },
    ],
}


def _option(value: str) -> dict[str, Any]:
    return {"text": {"type": "mrkdwn", "text": value}, "value": value}


def _checklist_message(ticked: list[str]) -> dict[str, Any]:
    boxes = {
        "type": "checkboxes",
        "action_id": "check_item",
        "options": [_option("flags"), _option("dashboards"), _option("runbook")],
    }
    if ticked:
        boxes["initial_options"] = [_option(value) for value in ticked]
    return {
        "channel": "C111",
        "ts": "1700000000.000100",
        "text": "Checklist",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "Before beta"}},
            {"type": "actions", "block_id": "checklist", "elements": [boxes]},
        ],
    }


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: LocalSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=slack.api_url)


# -- LocalSlack ----------------------------------------------------------------------


def test_web_client_posts_updates_and_opens_views(slack: LocalSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C111", text="Step 1", blocks=APPROVE_BLOCKS)
    reply = client.chat_postMessage(channel="C111", text="done", thread_ts=posted["ts"])
    client.chat_update(channel="C111", ts=posted["ts"], text="Step 1 approved")
    view = client.views_open(trigger_id="1.2.abc", view=PLAN_VIEW)["view"]
    joined = client.conversations_join(channel="C222")

    assert posted["ts"] == "1700000000.000100"
    assert reply["ts"] > posted["ts"]
    assert posted["message"]["bot_id"] and posted["message"]["user"]
    assert slack.calls("chat.postMessage")[0].params["blocks"] == APPROVE_BLOCKS
    card = slack.message("C111", posted["ts"])
    assert card["text"] == "Step 1 approved"
    assert [block["block_id"] for block in card["blocks"]] == ["blk0", "step"]
    assert [message["ts"] for message in slack.messages("C111")] == [
        posted["ts"],
        reply["ts"],
    ]
    assert slack.messages("C111")[1]["thread_ts"] == posted["ts"]
    assert view["id"].startswith("V") and view["callback_id"] == "new_plan"
    assert slack.calls("views.open")[0].params["view"]["blocks"] == PLAN_VIEW["blocks"]
    assert joined["channel"]["id"] == "C222"


def test_form_bodies_have_their_json_fields_decoded(slack: LocalSlack, client: WebClient) -> None:
    blocks = [{"type": "divider"}]
    client.api_call(
        "chat.postMessage",
        params={"channel": "C111", "text": "x", "blocks": json.dumps(blocks)},
    )

    [call] = slack.calls("chat.postMessage")
    assert call.params["blocks"] == blocks
    assert call.headers["content-type"] == FORM


def test_answers_like_slack_for_the_other_methods(slack: LocalSlack, client: WebClient) -> None:
    slack.set_admin("W222")
    auth = client.auth_test()
    ephemeral = client.chat_postEphemeral(channel="C111", user="W111", text="only you")
    link = client.chat_getPermalink(channel="C111", message_ts="1700000000.000100")
    home = client.views_publish(user_id="W111", view={"type": "home", "blocks": []})
    updated = client.views_update(view_id=home["view"]["id"], view=PLAN_VIEW)

    assert auth["team_id"] == "T111" and "chat:write" in auth.headers["x-oauth-scopes"]
    assert ephemeral["message_ts"]
    assert link["permalink"] == "https://example.slack.com/archives/C111/p1700000000000100"
    assert updated["view"]["id"] == home["view"]["id"]
    assert client.users_info(user="W111")["user"]["is_admin"] is False
    admin = client.users_info(user="W222")["user"]
    assert admin["is_admin"] is True and admin["tz"] == "America/Los_Angeles"
    with pytest.raises(SlackApiError) as unknown:
        client.api_call("reactions.add")
    assert unknown.value.response["error"] == "unknown_method"


def test_auth_test_agrees_with_the_recorded_answer() -> None:
    """The package cannot read tests/fixtures, so it carries the recorded auth.test values;
    only the team is moved, to the workspace SlackDriver's requests come from."""
    fixture = FIXTURES / "slack" / "auth_test_response.bolt-python.json"
    recorded = json.loads(fixture.read_text())["payload"]

    assert {**recorded, "team_id": "T111"} == AUTH_TEST
    assert (AUTH_TEST["team_id"], AUTH_TEST["user_id"], AUTH_TEST["bot_id"]) == (TEAM_ID, BOT_USER_ID, BOT_ID)


def test_on_post_sees_what_the_bot_shows_in_order() -> None:
    shown: list[Posted] = []
    with LocalSlack(shown.append, admins={"W222"}) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        posted = client.chat_postMessage(channel="C111", text="Step 1", blocks=APPROVE_BLOCKS)
        client.chat_postMessage(channel="C111", text="done", thread_ts=posted["ts"])
        client.chat_update(channel="C111", ts=posted["ts"], text="Step 1 approved")
        client.chat_postEphemeral(channel="C111", user="W111", text="only you")
        client.views_open(trigger_id="1.2.abc", view=PLAN_VIEW)
        WebhookClient(slack.response_url("cmd-1")).send(text="Started")
        slack.reply({"text": "Everyone sees this", "response_type": "in_channel"})
        slack.fail_next("chat.postMessage", error="channel_not_found")
        with pytest.raises(SlackApiError):
            client.chat_postMessage(channel="C111", text="lost")
        admin = client.users_info(user="W222")["user"]["is_admin"]

    assert [(p.kind, p.text) for p in shown] == [
        ("message", "Step 1"),
        ("message", "done"),
        ("update", "Step 1 approved"),
        ("ephemeral", "only you"),
        ("view", "New rollout"),
        ("reply", "Started"),
        ("message", "Everyone sees this"),
    ]
    assert shown[0].channel == "C111" and shown[0].ts == posted["ts"]
    assert [block["block_id"] for block in shown[2].blocks] == ["blk0", "step"]
    assert shown[1].thread_ts == posted["ts"] and shown[5].ts == ""
    assert admin is True


def test_requires_a_bot_token(slack: LocalSlack) -> None:
    with pytest.raises(SlackApiError) as error:
        WebClient(base_url=slack.api_url).chat_postMessage(channel="C111", text="hi")

    assert error.value.response["error"] == "not_authed"


def test_files_upload_v2_round_trip(slack: LocalSlack, client: WebClient) -> None:
    upload = client.files_upload_v2(channel="C111", filename="plan.md", content="# Plan", title="Plan")

    assert upload["file"]["name"] == "plan.md" and upload["file"]["size"] == 6
    assert slack.calls("upload_url")[0].params["data"] == b"# Plan"


def test_response_url_posts_are_recorded(slack: LocalSlack) -> None:
    answer = WebhookClient(slack.response_url("cmd-1")).send(text="Started")

    assert (answer.status_code, answer.body) == (200, "ok")
    [call] = slack.calls("response_url")
    assert call.params == {"text": "Started"} and call.path == "/response/cmd-1"


def test_rate_limit_retry_honours_retry_after(slack: LocalSlack, client: WebClient) -> None:
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    assert client.chat_postMessage(channel="C111", text="hi")["ok"]
    first, second = slack.calls("chat.postMessage")
    assert second.at - first.at >= 1.0
    assert len(slack.messages("C111")) == 1


def test_server_error_retry_recovers(slack: LocalSlack, client: WebClient) -> None:
    fixed = FixedValueRetryIntervalCalculator(0.01)
    client.retry_handlers.append(ServerErrorRetryHandler(1, fixed))
    slack.fail_next("chat.update", status=500)
    posted = client.chat_postMessage(channel="C111", text="hi")

    assert client.chat_update(channel="C111", ts=posted["ts"], text="edited")["ok"]
    assert len(slack.calls("chat.update")) == 2


def test_injected_errors_are_used_up_in_order(slack: LocalSlack, client: WebClient) -> None:
    slack.fail_next("chat.postMessage", error="channel_not_found")
    slack.fail_next("chat.postMessage", times=2, status=503)

    with pytest.raises(SlackApiError) as error:
        client.chat_postMessage(channel="C111", text="hi")
    assert error.value.response["error"] == "channel_not_found"
    for _ in range(2):
        with pytest.raises(SlackApiError) as server_error:
            client.chat_postMessage(channel="C111", text="hi")
        assert server_error.value.response.status_code == 503
    assert client.chat_postMessage(channel="C111", text="hi")["ok"]


def test_an_aimed_failure_passes_the_other_calls_by(slack: LocalSlack, client: WebClient) -> None:
    slack.fail_next("chat.postMessage", error="msg_too_long", only=lambda params: params["channel"] == "C222")

    assert client.chat_postMessage(channel="C111", text="not this one")["ok"]
    with pytest.raises(SlackApiError) as error:
        client.chat_postMessage(channel="C222", text="this one")
    assert error.value.response["error"] == "msg_too_long"
    assert client.chat_postMessage(channel="C222", text="used up")["ok"]


def test_bot_must_join_a_channel_before_posting(slack: LocalSlack, client: WebClient) -> None:
    slack.set_not_in_channel("C222")
    slack.set_not_in_channel("G333", private=True)

    with pytest.raises(SlackApiError) as outside:
        client.chat_postMessage(channel="C222", text="hi")
    assert outside.value.response["error"] == "not_in_channel"
    client.conversations_join(channel="C222")
    assert client.chat_postMessage(channel="C222", text="hi")["ok"]
    with pytest.raises(SlackApiError) as private:
        client.conversations_join(channel="G333")
    assert private.value.response["error"] == "method_not_supported_for_channel_type"


def test_wait_for_blocks_until_the_call_arrives(slack: LocalSlack, client: WebClient) -> None:
    slack.set_delay("chat.postMessage", 0.2)
    poster = threading.Thread(target=client.chat_postMessage, kwargs={"channel": "C111", "text": "late"})
    started = time.monotonic()
    poster.start()

    slack.wait_for("chat.postMessage", lambda call: call.params["text"] == "late")
    assert time.monotonic() - started >= 0.2
    assert slack.messages("C111")[0]["text"] == "late"
    poster.join()


def test_wait_for_timeout_lists_what_was_called(slack: LocalSlack, client: WebClient) -> None:
    client.auth_test()

    with pytest.raises(AssertionError, match=r"chat\.update.*\['auth\.test'\]"):
        slack.wait_for("chat.update", timeout=0.05)


def test_clear_calls_keeps_messages_and_reset_forgets_everything(
    slack: LocalSlack, client: WebClient
) -> None:
    slack.set_not_in_channel("C222")
    slack.fail_next("auth.test")
    client.chat_postMessage(channel="C111", text="hi")
    slack.clear_calls()
    assert slack.calls() == [] and len(slack.messages("C111")) == 1

    slack.reset()
    assert slack.messages("C111") == []
    assert client.auth_test()["ok"]
    assert client.chat_postMessage(channel="C222", text="hi")["ts"] == "1700000000.000100"


# -- SlackDriver ----------------------------------------------------------------------


Answer = tuple[int, dict[str, str], str]


@dataclass
class _Received:
    body: str
    headers: dict[str, str]


@dataclass
class _Recorder:
    """Plays a bot that answers 200 to everything and keeps what it was sent."""

    url: str = ""
    received: list[_Received] = field(default_factory=list)

    def record(self, body: str, headers: dict[str, str]) -> Answer:
        self.received.append(_Received(body, headers))
        return 200, {}, ""

    def payload(self) -> dict[str, Any]:
        return dict(json.loads(dict(parse_qsl(self.received[-1].body))["payload"]))


@contextmanager
def _serve(handle: Callable[[str, dict[str, str]], Answer]) -> Iterator[str]:
    """Plays the bot's web server: every POST goes to ``handle(body, headers)``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, answer_headers, answer = handle(body, headers)
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.encode())))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, format: str, *args: Any) -> None:
            """Keep pytest's output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    recording = _Recorder()
    with _serve(recording.record) as url:
        recording.url = url
        yield recording


def test_driver_signs_requests_like_slack(slack: LocalSlack, recorder: _Recorder) -> None:
    driver = SlackDriver(recorder.url, SECRET, slack)
    verifier = SignatureVerifier(SECRET)

    driver.command("status checkout-v2", user="W222")
    command = recorder.received[-1]
    assert verifier.is_valid_request(command.body, command.headers)
    fields = dict(parse_qsl(command.body))
    assert fields["user_id"] == "W222" and fields["text"] == "status checkout-v2"
    assert fields["command"] == "/rollout" and fields["is_enterprise_install"] == "false"
    assert fields["response_url"].startswith(slack.response_url(""))

    driver.post_raw("{}", "application/json", headers={"X-Slack-Retry-Num": "1"})
    retried = recorder.received[-1]
    assert verifier.is_valid_request(retried.body, retried.headers)
    assert retried.headers["x-slack-retry-num"] == "1"

    driver.post_raw("a=1", FORM, timestamp=int(time.time()) - 600)
    stale = recorder.received[-1]
    assert not verifier.is_valid_request(stale.body, stale.headers)

    driver.post_raw("a=1", FORM, signature="v0=" + "0" * 64)
    forged = recorder.received[-1]
    assert not verifier.is_valid_request(forged.body, forged.headers)


@pytest.mark.parametrize(
    ("ticked", "option", "selected"),
    [
        ([], "dashboards", ["dashboards"]),
        (["runbook"], "flags", ["flags", "runbook"]),
        (["flags", "dashboards"], "flags", ["dashboards"]),
    ],
)
def test_toggle_sends_the_new_selection(
    slack: LocalSlack,
    recorder: _Recorder,
    ticked: list[str],
    option: str,
    selected: list[str],
) -> None:
    SlackDriver(recorder.url, SECRET, slack).toggle(_checklist_message(ticked), option)

    payload = recorder.payload()
    [action] = payload["actions"]
    assert (action["type"], action["action_id"], action["block_id"]) == (
        "checkboxes",
        "check_item",
        "checklist",
    )
    assert [chosen["value"] for chosen in action["selected_options"]] == selected
    state = payload["state"]["values"]["checklist"]["check_item"]
    assert state["selected_options"] == action["selected_options"]
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1700000000.000100",
        "channel_id": "C111",
        "is_ephemeral": False,
    }


@dataclass
class _Bot:
    url: str
    submitted_views: list[dict[str, Any]]


@pytest.fixture
def bot(slack: LocalSlack) -> Iterator[_Bot]:
    """A small Bolt app behind a real HTTP server, using LocalSlack as its Web API."""
    app = App(
        signing_secret=SECRET,
        client=WebClient(token="xoxb-test", base_url=slack.api_url),
    )
    submissions: list[dict[str, Any]] = []

    @app.command("/rollout")
    def start(ack: Ack, command: dict[str, str], respond: Respond, say: Say) -> None:
        ack(f"Starting {command['text']}")
        respond("Started")
        say(text="Step 1", blocks=APPROVE_BLOCKS)

    @app.command("/newplan")
    def new_plan(ack: Ack, command: dict[str, str], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=command["trigger_id"], view=PLAN_VIEW)

    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        text = f"{body['actions'][0]['value']} approved by <@{body['user']['id']}>"
        client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], text=text)

    @app.view("new_plan")
    def create(ack: Ack, view: dict[str, Any]) -> None:
        if not view["state"]["values"]["name"]["value"]["value"]:
            ack(response_action="errors", errors={"name": "Name the feature"})
            return
        ack()
        submissions.append(view)

    def dispatch(body: str, headers: dict[str, str]) -> Answer:
        request_headers: dict[str, str | Sequence[str]] = dict(headers)
        answer = app.dispatch(BoltRequest(body=body, headers=request_headers))
        return answer.status, answer.first_headers(), answer.body

    with _serve(dispatch) as url:
        yield _Bot(url, submissions)


def test_a_conversation_through_bolt(slack: LocalSlack, bot: _Bot) -> None:
    driver = SlackDriver(bot.url, SECRET, slack)

    ack = driver.command("checkout-v2")
    assert (ack.status, ack.body) == (200, "Starting checkout-v2")
    assert driver.wait_reply()["text"] == "Started"
    slack.wait_for("chat.postMessage")
    [card] = slack.messages("C111")

    assert driver.click(card, "approve", "step-1").status == 200
    slack.wait_for("chat.update")
    assert slack.message("C111", card["ts"])["text"] == "step-1 approved by <@W111>"
    assert driver.replies() == [{"text": "Started"}]


def test_a_modal_through_bolt(slack: LocalSlack, bot: _Bot) -> None:
    driver = SlackDriver(bot.url, SECRET, slack)
    driver.command("", command="/newplan")
    [opened] = slack.wait_for("views.open")
    view = opened.params["view"]

    refused = driver.submit_view(view, {"name": "", "phase": "beta"})
    assert refused.json() == {
        "response_action": "errors",
        "errors": {"name": "Name the feature"},
    }
    accepted = driver.submit_view(
        view,
        {"name": "checkout-v2", ("phase", "value"): "ga", "owners": ["W111", "W222"]},
    )

    assert (accepted.status, accepted.body) == (200, "")
    [submitted] = bot.submitted_views
    assert submitted["callback_id"] == "new_plan"
    assert submitted["private_metadata"] == '{"channel": "C111"}'
    values = submitted["state"]["values"]
    assert values["name"]["value"] == {
        "type": "plain_text_input",
        "value": "checkout-v2",
    }
    assert values["phase"]["value"]["selected_option"]["value"] == "ga"
    assert values["owners"]["value"]["selected_users"] == ["W111", "W222"]
    assert values["channel"]["value"]["selected_conversation"] == "C111"


def test_bolt_refuses_a_bad_signature(slack: LocalSlack, bot: _Bot) -> None:
    driver = SlackDriver(bot.url, "not-the-secret", slack)

    assert driver.command("status").status == 401
