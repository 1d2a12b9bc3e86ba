"""What a Slack request is, for logs and metrics: its kind, and who sent it from where."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bot.edge.listeners.payloads import field
from bot.edge.work_keys import interaction_id
from bot.observe import logs

KINDS = ("command", "action", "view", "event", "other")


def request_kind(body: Any) -> str:
    """command, action, view, event or other: a bounded label."""
    if not isinstance(body, dict):
        return "other"
    if isinstance(body.get("command"), str):
        return "command"
    kind = body.get("type")
    if kind == "block_actions":
        return "action"
    if kind in ("view_submission", "view_closed"):
        return "view"
    if kind == "event_callback":
        return "event"
    return "other"


def request_context(body: Any) -> dict[str, Any]:
    """The log context of a request: team, user, the interaction's own id."""
    if not isinstance(body, dict):
        return {}
    team = field(body, "team_id") or field(body, "team", "id")
    user = field(body, "user_id") or field(body, "user", "id") or field(body, "event", "user")
    return {
        "team_id": team or None,
        "user_id": user or None,
        "interaction": interaction_id(body),
    }


@contextmanager
def request_scope(body: Any, **extra: Any) -> Iterator[None]:
    """Every line logged while this request is handled carries who sent it from where."""
    with logs.scope(**request_context(body), **extra):
        yield
