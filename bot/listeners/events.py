"""Events the bot subscribes to."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, Say

from bot.services import Services


def register(app: App, svc: Services) -> None:
    def mentioned(event: dict[str, Any], say: Say) -> None:
        say(
            text="Hi! I run rollout plans in channels. Type `/rollout help` to see what I can do.",
            thread_ts=event.get("thread_ts") or event.get("ts"),
        )

    app.event("app_mention")(mentioned)
