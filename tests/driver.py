"""Send real, signed Slack requests to a running bot, so end-to-end tests read like a
conversation in a channel.

Example::

    def test_owner_approves_the_first_step(bot_url: str, slack: LocalSlack) -> None:
        driver = SlackDriver(bot_url, SIGNING_SECRET, slack)
        driver.command("start checkout-v2")
        assert "Started" in driver.wait_reply()["text"]
        card = slack.messages("C111")[-1]
        driver.click(card, "approve_step")
        slack.wait_for("chat.update")
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode, urlsplit
from urllib.request import Request, urlopen

from bot.devtools.local_slack import APP_ID, BOT_ID, BOT_USER_ID, LocalSlack

FORM = "application/x-www-form-urlencoded"
TOKEN = "verification_token"
ENTERPRISE_ID = "E111"
ENTERPRISE_NAME = "Org Name"
TEAM_DOMAIN = "test-domain"

Params = dict[str, Any]
Block = dict[str, Any]
Element = dict[str, Any]
# submit_view keys: (block_id, action_id), or block_id alone when the block has one input.
ValueKey = str | tuple[str, str]

# element type -> (its key in state.values, the field rendering it, its value when empty)
_STATE_FIELDS: dict[str, tuple[str, str, Any]] = {
    "plain_text_input": ("value", "initial_value", None),
    "number_input": ("value", "initial_value", None),
    "email_text_input": ("value", "initial_value", None),
    "url_text_input": ("value", "initial_value", None),
    "static_select": ("selected_option", "initial_option", None),
    "radio_buttons": ("selected_option", "initial_option", None),
    "multi_static_select": ("selected_options", "initial_options", []),
    "checkboxes": ("selected_options", "initial_options", []),
    "users_select": ("selected_user", "initial_user", None),
    "multi_users_select": ("selected_users", "initial_users", []),
    "conversations_select": ("selected_conversation", "initial_conversation", None),
    "multi_conversations_select": (
        "selected_conversations",
        "initial_conversations",
        [],
    ),
    "channels_select": ("selected_channel", "initial_channel", None),
    "multi_channels_select": ("selected_channels", "initial_channels", []),
    "datepicker": ("selected_date", "initial_date", None),
    "timepicker": ("selected_time", "initial_time", None),
}


def sign(signing_secret: str, timestamp: str, body: str) -> str:
    """Slack's request signature: v0= + HMAC-SHA256(secret, "v0:{timestamp}:{body}")."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Response:
    """What the bot answered; ``headers`` names are lower-cased."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class SlackDriver:
    """Plays the Slack side: a user typing commands, clicking and submitting modals."""

    def __init__(
        self,
        base_url: str,
        signing_secret: str,
        slack: LocalSlack,
        team_id: str = "T111",
        channel_id: str = "C111",
        user_id: str = "W111",
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/slack/events"
        self.signing_secret = signing_secret
        self.slack = slack
        self.team_id = team_id
        self.channel_id = channel_id
        self.user_id = user_id
        self._reply_url: str | None = None

    # -- what a user does ------------------------------------------------------------

    def command(
        self,
        text: str,
        *,
        user: str | None = None,
        channel: str | None = None,
        command: str = "/rollout",
    ) -> Response:
        """Type ``{command} {text}``; what the bot posts to its response_url: replies()."""
        user, channel = user or self.user_id, channel or self.channel_id
        self._reply_url = self._response_url("command")
        fields = {
            "token": TOKEN,
            "api_app_id": APP_ID,
            "team_id": self.team_id,
            "team_domain": TEAM_DOMAIN,
            "enterprise_id": ENTERPRISE_ID,
            "enterprise_name": ENTERPRISE_NAME,
            "is_enterprise_install": "false",
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "response_url": self._reply_url,
            "trigger_id": _trigger_id(),
        }
        return self.post_raw(urlencode(fields), FORM)

    def click(
        self,
        message: Params,
        action_id: str,
        value: str | None = None,
        *,
        user: str | None = None,
        channel: str | None = None,
    ) -> Response:
        """Click the button ``action_id`` (with ``value``, if given) in ``message``."""

        def wanted(element: Element) -> bool:
            return (
                element.get("type") == "button"
                and element.get("action_id") == action_id
                and (value is None or element.get("value") == value)
            )

        block_id, button = _find(message["blocks"], wanted, f"button {action_id!r}")
        action = {
            "type": "button",
            "action_id": action_id,
            "block_id": block_id,
            "text": button.get("text"),
            "action_ts": _action_ts(),
        }
        if "value" in button:
            action["value"] = button["value"]
        state = _rendered_state(message["blocks"])
        return self._block_actions(message, action, state, user=user, channel=channel)

    def toggle(self, message: Params, option_value: str, *, user: str | None = None) -> Response:
        """Tick or untick the checkbox ``option_value`` in ``message`` as rendered.

        Pass the message as it is now (re-read it from LocalSlack after the bot updated
        it): like a Slack client, the new selection starts from its initial_options.
        """

        def wanted(element: Element) -> bool:
            return element.get("type") == "checkboxes" and any(
                option["value"] == option_value for option in element.get("options", [])
            )

        block_id, boxes = _find(message["blocks"], wanted, f"checkbox {option_value!r}")
        ticked = {option["value"] for option in boxes.get("initial_options", [])}
        ticked ^= {option_value}
        selected = [option for option in boxes["options"] if option["value"] in ticked]
        action_id = boxes["action_id"]
        action = {
            "type": "checkboxes",
            "action_id": action_id,
            "block_id": block_id,
            "selected_options": selected,
            "action_ts": _action_ts(),
        }
        state = _rendered_state(message["blocks"])
        state[block_id][action_id]["selected_options"] = selected
        return self._block_actions(message, action, state, user=user)

    def submit_view(
        self, view: Params, values: Mapping[ValueKey, Any], *, user: str | None = None
    ) -> Response:
        """Submit ``view`` (as the bot opened it) with ``values`` typed in.

        Options are given by value: a str for static_select / radio_buttons, a list for
        checkboxes / multi_static_select. Fields left out keep their initial value.
        """
        state = _rendered_state(view["blocks"])
        for key, value in values.items():
            block_id, element = _find_input(view["blocks"], key)
            state_key = _STATE_FIELDS[element["type"]][0]
            state[block_id][element["action_id"]][state_key] = _submitted(element, value)
        view_id = view.get("id") or f"V{uuid.uuid4().hex[:10].upper()}"
        submitted_view = {
            "id": view_id,
            "team_id": self.team_id,
            "private_metadata": "",
            "callback_id": "",
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "clear_on_close": False,
            "notify_on_close": False,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "external_id": "",
            "app_installed_team_id": self.team_id,
            "bot_id": BOT_ID,
            **view,
            "state": {"values": state},
        }
        payload = {
            **self._interaction("view_submission", user),
            "view": submitted_view,
            "response_urls": [],
        }
        return self.post_raw(urlencode({"payload": json.dumps(payload)}), FORM)

    # -- what the bot said back ------------------------------------------------------

    def replies(self) -> list[Params]:
        """What the bot posted to the newest command's response_url, oldest first."""
        path = self._reply_path()
        return [call.params for call in self.slack.calls("response_url") if call.path == path]

    def wait_reply(self, timeout: float = 5.0, count: int = 1) -> Params:
        """Wait for the ``count``-th post to the newest command's response_url."""
        path = self._reply_path()
        calls = self.slack.wait_for("response_url", lambda call: call.path == path, timeout, count)
        return calls[count - 1].params

    # -- raw HTTP --------------------------------------------------------------------

    def post_raw(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | str | None = None,
        signature: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POST ``body`` signed now, unless ``timestamp``/``signature`` say otherwise."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        request_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature or sign(self.signing_secret, stamp, body),
            **(headers or {}),
        }
        request = Request(self.url, body.encode(), request_headers, method="POST")
        try:
            with urlopen(request, timeout=10) as answer:
                return _response(answer.status, answer.headers.items(), answer.read())
        except HTTPError as error:
            return _response(error.code, error.headers.items(), error.read())

    # -- payload building ------------------------------------------------------------

    def _block_actions(
        self,
        message: Params,
        action: Params,
        state: Params,
        *,
        user: str | None,
        channel: str | None = None,
    ) -> Response:
        channel = channel or message.get("channel") or self.channel_id
        container = {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
        }
        rendered = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team_id,
            "text": "",
            **{key: value for key, value in message.items() if key != "channel"},
        }
        payload = {
            **self._interaction("block_actions", user),
            "container": container,
            "channel": {"id": channel, "name": channel.lower()},
            "message": rendered,
            "state": {"values": state},
            "response_url": self._response_url("action"),
            "actions": [action],
        }
        return self.post_raw(urlencode({"payload": json.dumps(payload)}), FORM)

    def _interaction(self, kind: str, user: str | None) -> Params:
        user = user or self.user_id
        return {
            "type": kind,
            "user": {
                "id": user,
                "username": user.lower(),
                "name": user.lower(),
                "team_id": self.team_id,
            },
            "api_app_id": APP_ID,
            "token": TOKEN,
            "trigger_id": _trigger_id(),
            "team": {
                "id": self.team_id,
                "domain": TEAM_DOMAIN,
                "enterprise_id": ENTERPRISE_ID,
                "enterprise_name": ENTERPRISE_NAME,
            },
            "enterprise": {"id": ENTERPRISE_ID, "name": ENTERPRISE_NAME},
            "is_enterprise_install": False,
        }

    def _response_url(self, kind: str) -> str:
        return self.slack.response_url(f"{kind}-{uuid.uuid4().hex[:12]}")

    def _reply_path(self) -> str:
        if self._reply_url is None:
            raise AssertionError("no command sent yet, so no response_url to read")
        return urlsplit(self._reply_url).path


def _response(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> Response:
    lowered = {name.lower(): value for name, value in headers}
    return Response(status, lowered, body.decode("utf-8"))


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def _action_ts() -> str:
    return f"{time.time():.6f}"


def _elements(blocks: list[Block]) -> Iterator[tuple[str, Element]]:
    """Every interactive element with the block_id of the block holding it."""
    for block in blocks:
        block_id = block.get("block_id", "")
        if block["type"] == "input":
            yield block_id, block["element"]
        elif block["type"] == "actions":
            for element in block.get("elements", []):
                yield block_id, element
        elif block["type"] == "section" and "accessory" in block:
            yield block_id, block["accessory"]


def _find(blocks: list[Block], wanted: Callable[[Element], bool], what: str) -> tuple[str, Element]:
    found = [(block_id, element) for block_id, element in _elements(blocks) if wanted(element)]
    if not found:
        raise AssertionError(f"no {what} in blocks: {json.dumps(blocks)}")
    return found[0]


def _find_input(blocks: list[Block], key: ValueKey) -> tuple[str, Element]:
    block_id, action_id = key if isinstance(key, tuple) else (key, None)
    found = [
        (found_block, element)
        for found_block, element in _elements(blocks)
        if found_block == block_id
        and element.get("type") in _STATE_FIELDS
        and action_id in (None, element.get("action_id"))
    ]
    if len(found) != 1:
        raise AssertionError(f"{key!r} matches {len(found)} elements; key by (block_id, action_id)")
    return found[0]


def _rendered_state(blocks: list[Block]) -> dict[str, dict[str, Params]]:
    """state.values as Slack reports it for blocks nobody has touched yet."""
    state: dict[str, dict[str, Params]] = {}
    for block_id, element in _elements(blocks):
        fields = _STATE_FIELDS.get(element.get("type", ""))
        if fields is None or "action_id" not in element:
            continue
        state_key, initial_key, empty = fields
        state.setdefault(block_id, {})[element["action_id"]] = {
            "type": element["type"],
            # A copy, so a test changing the payload cannot change the message.
            state_key: copy.deepcopy(element.get(initial_key, empty)),
        }
    return state


def _submitted(element: Element, value: Any) -> Any:
    """Slack reports chosen options as option objects; tests name them by value."""
    if not _STATE_FIELDS[element["type"]][1].startswith("initial_option"):
        return value
    if isinstance(value, str):
        return _option(element, value)
    return [_option(element, item) for item in value]


def _option(element: Element, value: str) -> Params:
    groups = [element.get("options", [])]
    groups += [group["options"] for group in element.get("option_groups", [])]
    for options in groups:
        for option in options:
            if option["value"] == value:
                return dict(option)
    raise AssertionError(f"no option {value!r} in {element.get('action_id')!r}")
