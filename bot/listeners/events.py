"""Events the bot subscribes to."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, Say
from slack_sdk.errors import SlackApiError

from bot import home
from bot.services import Services
from bot.slack import error_code

log = logging.getLogger(__name__)


def register(app: App, svc: Services) -> None:
    def mentioned(event: dict[str, Any], say: Say) -> None:
        say(
            text="Hi! I run rollout plans in channels. Type `/rollout help` to see what I can do.",
            thread_ts=event.get("thread_ts") or event.get("ts"),
        )

    def home_opened(event: dict[str, Any], context: dict[str, Any]) -> None:
        if event.get("tab") != "home":
            return
        try:
            home.publish(svc, context["team_id"], event["user"])
        except SlackApiError as exc:
            log.warning("Home tab not published: %s", error_code(exc))

    app.event("app_mention")(mentioned)
    app.event("app_home_opened")(home_opened)
