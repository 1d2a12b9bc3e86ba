"""Queued work goes straight to the lazy function its row names, with Bolt's own arguments,
matched only among the listeners that have a function of that name."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt import Ack, App, BoltRequest, BoltResponse, Respond, Say
from slack_sdk import WebClient

from bot.devtools.local_slack import LocalSlack
from bot.edge.lazy_calls import LazyCalls
from bot.edge.workqueue import LAZY_NAME, LAZY_ONLY

FORM = {"content-type": ["application/x-www-form-urlencoded"]}


def queued(payload: dict[str, Any], function_name: str) -> BoltRequest:
    """A request as the work process takes it from the queue."""
    body = urlencode({"payload": json.dumps(payload)})
    return BoltRequest(body=body, headers={**FORM, LAZY_ONLY: ["1"], LAZY_NAME: [function_name]})


def click(action_id: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": "U1"},
        "channel": {"id": "C1"},
        "response_url": "http://127.0.0.1:9/respond",
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": "7"}],
    }


def submission(callback_id: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": "U1"},
        "view": {"type": "modal", "callback_id": callback_id, "state": {"values": {}}},
    }


class Channel:
    """A small app as ours is built: acks that only ack, work in lazy functions; what ran is
    written down."""

    def __init__(self, slack: LocalSlack) -> None:
        self.said: list[str] = []
        self.app = App(
            client=WebClient(token="xoxb-test", base_url=slack.api_url),
            signing_secret="secret",
            token_verification_enabled=False,
            request_verification_enabled=False,
            process_before_response=True,
        )
        self.app.middleware(self._through_the_chain)

        def ack_now(ack: Ack) -> None:
            ack()

        def rollback(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
            self.said.append(
                f"button rollback of {body['actions'][0]['value']}, answering {respond.response_url}"
            )
            self.said.append(f"client token {client.token}")

        def form_rollback(view: dict[str, Any]) -> None:
            self.said.append(f"form rollback of {view['callback_id']}")

        form_rollback.__name__ = "rollback"  # a form's function of the same name, as ours has

        def mentioned(body: dict[str, Any], say: Say) -> None:
            self.said.append("mention answered")

        def broken(body: dict[str, Any]) -> None:
            self.said.append("broken started")
            raise RuntimeError("out of order")

        self.app.action("rollback")(ack=ack_now, lazy=[rollback])
        self.app.action("broken")(ack=ack_now, lazy=[broken])
        self.app.view("rollback_form")(ack=ack_now, lazy=[form_rollback])
        self.app.action("mention")(ack=ack_now, lazy=[mentioned])

    def _through_the_chain(self, next: Callable[[], BoltResponse]) -> BoltResponse:
        self.said.append("(through Bolt's middleware)")
        return next()


def test_a_queued_click_runs_its_function_with_bolts_arguments_without_the_chain(slack: LocalSlack) -> None:
    channel = Channel(slack)
    LazyCalls(channel.app).dispatch(queued(click("rollback"), "rollback"))
    assert channel.said == [
        "button rollback of 7, answering http://127.0.0.1:9/respond",
        "client token xoxb-test",
    ]


def test_namesakes_are_told_apart_by_their_listeners_matchers(slack: LocalSlack) -> None:
    channel = Channel(slack)
    calls = LazyCalls(channel.app)
    calls.dispatch(queued(submission("rollback_form"), "rollback"))
    calls.dispatch(queued(click("rollback"), "rollback"))
    assert channel.said[0] == "form rollback of rollback_form"
    assert channel.said[1].startswith("button rollback of 7")


def test_a_function_that_needs_the_middleware_goes_through_bolt(slack: LocalSlack) -> None:
    channel = Channel(slack)
    LazyCalls(channel.app).dispatch(queued(click("mention"), "mentioned"))
    assert channel.said == ["(through Bolt's middleware)", "mention answered"]


def test_a_name_no_listener_has_any_more_goes_through_bolt(slack: LocalSlack) -> None:
    channel = Channel(slack)
    LazyCalls(channel.app).dispatch(queued(click("rollback"), "renamed_since"))
    assert channel.said == ["(through Bolt's middleware)"]  # Bolt matches, finds no such function


def test_what_a_function_raises_is_logged_as_bolt_logs_it(
    slack: LocalSlack, caplog: pytest.LogCaptureFixture
) -> None:
    channel = Channel(slack)
    LazyCalls(channel.app).dispatch(queued(click("broken"), "broken"))
    assert channel.said == ["broken started"]
    assert "Failed to run an internal function (out of order)" in caplog.text
