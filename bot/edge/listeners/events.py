"""Events the bot subscribes to. Acked at once (Slack retries an event it waits for); the
work comes after, and an event missing what it needs is ignored with a log line."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Say
from slack_sdk.errors import SlackApiError

from bot.edge import home
from bot.edge.listeners.payloads import field
from bot.services import Services
from bot.slackweb.client import error_code

log = logging.getLogger(__name__)

HELLO = "Hi! I run rollout plans in channels. Type `/rollout help` to see what I can do."


def register(app: App, svc: Services) -> None:
    def ack_now(ack: Ack) -> None:
        ack()

    def mentioned(event: dict[str, Any], say: Say) -> None:
        if not field(event, "channel"):
            log.info("app_mention without a channel ignored")
            return
        try:
            say(text=HELLO, thread_ts=field(event, "thread_ts") or field(event, "ts") or None)
        except SlackApiError as exc:
            log.warning("could not answer a mention: %s", error_code(exc))

    def home_opened(event: dict[str, Any], context: dict[str, Any]) -> None:
        user, team = field(event, "user"), str(context.get("team_id") or "")
        if field(event, "tab") != "home" or not user or not team:
            return
        try:
            home.publish(svc, team, user)
        except SlackApiError as exc:
            log.warning("Home tab not published: %s", error_code(exc))

    app.event("app_mention")(ack=ack_now, lazy=[mentioned])
    app.event("app_home_opened")(ack=ack_now, lazy=[home_opened])
