"""How a listener answers the person who acted."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.edge.listeners.payloads import field
from bot.slackweb.client import error_code
from bot.slackweb.transport import PooledWebhookClient
from messages.blocks import Message

log = logging.getLogger(__name__)


class RespondReplier:
    """Ephemeral answers through the request's response_url; the answer replaces the
    "Checking…" line so the person is left with one message, not two.

    Posted as Bolt's `respond` posts them (the same JSON: tests/edge/test_slack_transport.py),
    over the process's pooled connections (bot/slackweb/transport.py) instead of a new
    connection per answer."""

    def __init__(self, respond: Respond) -> None:
        self._respond = respond
        self._replace = False

    def progress(self, message: Message) -> None:
        self._send(message, replace_original=False)
        self._replace = True

    def __call__(self, message: Message) -> None:
        self._send(message, replace_original=self._replace)

    def _send(self, message: Message, *, replace_original: bool) -> None:
        url = self._respond.response_url
        if url is None:  # Bolt's respond says why it cannot answer
            self._respond(response_type="ephemeral", replace_original=replace_original, **message.as_kwargs())
            return
        # Bolt's respond body: text, then blocks only when there are some.
        body: dict[str, Any] = {"text": message.text}
        if message.blocks:
            body["blocks"] = message.blocks
        body.update(response_type="ephemeral", replace_original=replace_original)
        client = PooledWebhookClient(url=url, proxy=self._respond.proxy, ssl=self._respond.ssl)
        client.send_dict(body)


class EphemeralReplier:
    """Answers to a modal submission, which has no response_url: chat.postEphemeral in the
    channel, or, where the channel refuses the bot (a private channel it is not in), a direct
    message, so the answer is never lost."""

    def __init__(self, client: WebClient, channel_id: str, user_id: str) -> None:
        self._client, self._channel, self._user = client, channel_id, user_id

    def progress(self, message: Message) -> None:
        self(message)

    def __call__(self, message: Message) -> None:
        kwargs: dict[str, Any] = message.as_kwargs()
        try:
            self._client.chat_postEphemeral(channel=self._channel, user=self._user, **kwargs)
        except SlackApiError as exc:
            log.info(
                "ephemeral answer refused in %s (%s); sending it as a DM", self._channel, error_code(exc)
            )
            self._client.chat_postMessage(channel=self._user, **kwargs)


def replier_for(
    body: dict[str, Any], respond: Respond, client: WebClient
) -> RespondReplier | EphemeralReplier:
    """A click on a message answers through its response_url; one in a modal or the Home tab,
    which have none, through an ephemeral message or a DM."""
    if field(body, "response_url"):
        return RespondReplier(respond)
    user_id = field(body, "user", "id")
    return EphemeralReplier(client, field(body, "channel", "id") or user_id, user_id)
