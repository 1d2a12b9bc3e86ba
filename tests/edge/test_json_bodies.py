"""Once installed, Bolt parses Slack's JSON bodies with `storage.json_text.loads` and gets what
`json.loads` gives (clicks carrying their whole message, events, bodies with what orjson would
read differently), and slack_sdk's clients send and read what the stdlib's would."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt import BoltRequest
from slack_bolt.request import internals
from slack_sdk.errors import SlackApiError

from bot.devtools.local_slack import LocalSlack
from bot.edge import form_bodies, json_bodies
from bot.slackweb.transport import PooledWebClient, PooledWebhookClient
from storage import json_text
from storage.json_text import loads
from tests.storage.test_json_text import typed

FORM = {"content-type": ["application/x-www-form-urlencoded"]}
JSON = {"content-type": ["application/json"]}


def checklist_click(items: int = 60) -> dict[str, object]:
    """A click as Slack sends it: the clicked status message, blocks and all (24 KB)."""
    blocks = [
        {
            "type": "section",
            "block_id": f"checklist:1:0:t{i}",
            "text": {
                "type": "mrkdwn",
                "text": f'*Step {i}* check <https://x.test/d?i={i}|the board> ✅ "now" 100%',
            },
            "accessory": {
                "type": "checkboxes",
                "action_id": "checklist_toggle",
                "options": [{"text": {"type": "mrkdwn", "text": "done"}, "value": f"item-{i}"}],
            },
        }
        for i in range(items)
    ]
    return {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "acme"},
        "user": {"id": "U1", "username": "ann", "team_id": "T1"},
        "container": {"type": "message", "message_ts": "1733058800.123456", "is_ephemeral": False},
        "trigger_id": "1234567890123.1234567890.abcdef",
        "message": {"type": "message", "ts": "1733058800.123456", "bot_id": "B1", "blocks": blocks},
        "state": {"values": {}},
        "actions": [
            {"action_id": "checklist_toggle", "action_ts": "1733058801.000100", "selected_options": []}
        ],
        "response_url": "https://hooks.slack.test/actions/T1/1/abc",
    }


BODIES = [
    checklist_click(),
    {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_home_opened", "user": "U1"}},
    {"type": "view_submission", "view": {"state": {"values": {"b": {"a": {"value": "é\u2028\ud800"}}}}}},
    {"big": 123456789012345678901234567890, "nan": float("nan"), "inf": float("-inf"), "f": 0.1},
]


@pytest.mark.parametrize("payload", BODIES, ids=["click", "event", "lone_surrogate", "big_int_nan"])
def test_bolt_reads_a_body_as_json_loads_does(payload: dict[str, object]) -> None:
    form_bodies.install()
    json_bodies.install()
    text = json.dumps(payload)  # Slack's escapes
    click = BoltRequest(body=urlencode({"payload": text}), headers=dict(FORM))
    assert typed(click.body) == typed(json.loads(text))
    for body in (text, json.dumps(payload, ensure_ascii=False)):
        event = BoltRequest(body=body, headers=dict(JSON))
        assert typed(event.body) == typed(json.loads(body))


def test_the_click_is_read_by_orjson_and_bolt_keeps_the_stdlibs_other_names() -> None:
    json_bodies.install()
    assert internals.json.loads is loads
    assert internals.json.dumps is json_text.dumps
    assert internals.json.JSONDecodeError is json.JSONDecodeError
    with pytest.raises(json.JSONDecodeError):
        BoltRequest(body="{not json", headers=dict(JSON))


def test_slack_sdk_sends_and_reads_what_the_stdlib_would() -> None:
    """A `chat.update` of a whole status message and a response_url reply reach Slack with the
    values `json.dumps` would have sent, and Slack's answer (the message again) reads as
    `json.loads` reads it."""
    json_bodies.install()
    blocks = checklist_click()["message"]["blocks"]  # type: ignore[index]
    with LocalSlack() as slack:
        client = PooledWebClient(token="xoxb-test", base_url=slack.api_url)
        posted = client.chat_postMessage(channel="C1", text="Rollout ✅ \u2028", blocks=blocks)
        updated = client.chat_update(channel="C1", ts=posted["ts"], text="x é", blocks=blocks[:3])
        PooledWebhookClient(slack.response_url("r")).send(text="done ✅", blocks=blocks[:1])
        with pytest.raises(SlackApiError):
            client.chat_update(channel="C1", ts="9.9", text="gone")
        post, update = slack.calls("chat.postMessage")[-1], slack.calls("chat.update")[-2]
        reply = slack.calls("response_url")[-1]
    assert post.params == {"channel": "C1", "text": "Rollout ✅ \u2028", "blocks": blocks}
    assert update.params == {"channel": "C1", "ts": posted["ts"], "text": "x é", "blocks": blocks[:3]}
    assert reply.params == {"text": "done ✅", "blocks": blocks[:1]}
    assert typed(updated.data) == typed(json.loads(json.dumps(updated.data)))
    assert updated["message"]["blocks"][0]["text"] == blocks[0]["text"]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Calls of `SLACK_JSON.loads` and `dumps`, counted: what the modules installed into call."""
    json_bodies.install()
    calls = {"loads": 0, "dumps": 0}

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return call

    for name in calls:
        monkeypatch.setattr(
            json_bodies.SLACK_JSON, name, counting(name, getattr(json_bodies.SLACK_JSON, name))
        )
    yield calls


def test_bolt_and_slack_sdk_really_call_it(counted: dict[str, int]) -> None:
    """Not only the attribute set: Bolt's parse of a click, a Web API call (its body and Slack's
    answer) and a response_url reply each go through it."""
    BoltRequest(body=urlencode({"payload": json.dumps(checklist_click(3))}), headers=dict(FORM))
    assert counted == {"loads": 1, "dumps": 0}
    blocks = checklist_click(3)["message"]["blocks"]  # type: ignore[index]
    with LocalSlack() as slack:
        PooledWebClient(token="xoxb-test", base_url=slack.api_url).chat_postMessage(
            channel="C1", text="x", blocks=blocks
        )
        assert counted["dumps"] >= 1 and counted["loads"] >= 2
        before = counted["dumps"]
        PooledWebhookClient(slack.response_url("r")).send(text="done", blocks=blocks[:1])
        assert counted["dumps"] > before


def test_a_module_that_no_longer_reads_json_by_that_name_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A new Bolt that parses with something of its own: nothing is put in its place, and the
    log says so."""
    own = ModuleType("own_json")
    monkeypatch.setattr(internals, "json", own)
    with caplog.at_level(logging.WARNING, logger="bot.edge.json_bodies"):
        json_bodies.install()
    assert internals.json is own
    assert "slack_bolt.request.internals no longer reads JSON" in caplog.text
