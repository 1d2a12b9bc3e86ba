"""Reading Slack payloads without trusting their shape: a field that is missing or of the
wrong type reads as empty, and ids are checked before they reach int() or the database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import BoltRequest

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


# When the request was sent, on the bot's clock: stamped on arrival (`stamp_sent_at`), before
# the work is queued, and read by the work (`sent_at_of`). An advance typed or clicked binds
# to the step current at that time (bot.usecases.advance.Intent).
SENT_AT = "x-rollout-sent-at"


def stamp_sent_at(request: BoltRequest, now: datetime) -> None:
    """Stamps the request with `now` (the bot's clock), or earlier when it arrived late:
    Slack's X-Slack-Request-Timestamp (whole seconds) says it was sent by that second's end,
    so time spent past that on the way here is taken off."""
    sent = now
    slack_ts = request.headers.get("x-slack-request-timestamp")
    stamp = slack_ts[0] if slack_ts else ""
    if isinstance(stamp, str) and stamp.isascii() and stamp.isdigit() and len(stamp) <= 12:
        late = datetime.now(UTC) - datetime.fromtimestamp(int(stamp) + 1, UTC)
        sent -= max(late, timedelta(0))
    request.headers[SENT_AT] = [sent.isoformat()]


def sent_at_of(request: BoltRequest | None) -> datetime | None:
    values = request.headers.get(SENT_AT) if request is not None else None
    try:
        sent = datetime.fromisoformat(values[0]) if values else None
    except (TypeError, ValueError):
        return None
    return sent if sent is not None and sent.tzinfo is not None else None


def rollout_id_of(value: str) -> int:
    if not is_id(value):
        raise UsageError("that button is not one of mine any more")
    return int(value)
