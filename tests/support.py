"""What many tests share: waiting for something to happen, a clock a test moves by hand, and
the Services a use case runs with."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot.config import load_settings
from bot.devtools.local_slack import LocalSlack
from bot.metrics import MetricsSource
from bot.services import Services
from bot.slackweb.client import make_client
from storage.db import Database


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Polls `check` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Clock:
    """The time as a test says it is."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_services(
    db: Database,
    slack: LocalSlack | None = None,
    clock: Callable[[], datetime] | None = None,
    metrics: MetricsSource | None = None,
) -> Services:
    """Services on the test's database; Slack calls go to `slack` without client retries (a
    test that wants a failure sees it at once)."""
    api_url = slack.api_url if slack is not None else "http://127.0.0.1:9/api/"
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": api_url})
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Services(
        settings=settings,
        db=db,
        client=make_client("xoxb-test", api_url, max_retries=0),
        metrics=metrics,
        **extra,
    )


def body(message: Any) -> str:
    """What a message says in full: its first section's mrkdwn. Its `text` is only the push
    text (messages/push.py): the first line, plain, at most 120 characters."""
    blocks = message.get("blocks") if isinstance(message, dict) else getattr(message, "blocks", None)
    for block in blocks or []:
        if block.get("type") == "section" and isinstance(block.get("text"), dict):
            return str(block["text"]["text"])
    return str(message.get("text", "") if isinstance(message, dict) else getattr(message, "text", ""))


def shown_all(message: Any) -> str:
    """Every text of a message's blocks, one per line: a gate report, a status message."""
    blocks = message.get("blocks") if isinstance(message, dict) else getattr(message, "blocks", None)
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                out.append(node["text"])
            for value in node.values():
                if isinstance(value, dict | list):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks or [])
    return "\n".join(out)
