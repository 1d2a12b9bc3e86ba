"""Reading Slack payloads without trusting their shape: a field that is missing or of the
wrong type reads as empty, and ids are checked before they reach int() or the database."""

from __future__ import annotations

import re
from typing import Any

from bot.errors import UsageError
from bot.services import Actor

ROLLOUT_ID = re.compile(r"^[0-9]{1,12}$")


def field(data: Any, *path: str | int) -> str:
    """The string at `path` (dict keys, list indexes), or "" when anything on the way is off."""
    for step in path:
        if isinstance(step, int) and isinstance(data, list) and -len(data) <= step < len(data):
            data = data[step]
        elif isinstance(step, str) and isinstance(data, dict):
            data = data.get(step)
        else:
            return ""
    return data if isinstance(data, str) else ""


def dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def actor_of(body: dict[str, Any]) -> Actor:
    team, user = field(body, "team", "id"), field(body, "user", "id")
    if not team or not user:
        raise UsageError("that request does not say who sent it")
    channel = field(body, "channel", "id") or field(body, "container", "channel_id")
    return Actor(team_id=team, user_id=user, channel_id=channel)


def action(body: dict[str, Any]) -> dict[str, Any]:
    found = dicts(body.get("actions"))
    if not found:
        raise UsageError("that click carried no action")
    return found[0]


MAX_ID = 2**31 - 1  # Postgres INTEGER


def is_id(value: str) -> bool:
    return bool(ROLLOUT_ID.match(value)) and int(value) <= MAX_ID


def rollout_id_of(value: str) -> int:
    if not is_id(value):
        raise UsageError("that button is not one of mine any more")
    return int(value)
