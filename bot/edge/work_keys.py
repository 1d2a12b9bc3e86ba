"""What names a piece of queued work, and how the person behind it is told it did not happen.

Slack gives every interaction an id of its own, and a retry or a second delivery carries the
same body: `event_id` for an event, `trigger_id` for a command, shortcut or form submission,
and a click's `action_ts` with the clicker's id for a block action. The key of a piece of work
is that id and the listener function, so each lazy listener of an interaction is queued once
(bot/edge/workqueue.py) and its change is committed once (storage/db.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot.edge.listeners.payloads import field
from messages.blocks import text_message
from messages.text import escape

log = logging.getLogger(__name__)

MAX_KEY = 255

# What the person did, by lazy listener, and what did not happen because of it.
WORDS: dict[str, tuple[str, str]] = {
    "rollback": ("your rollback", "nothing was rolled back"),
    "start": ("your new rollout", "nothing was started"),
    "toggle": ("your checklist tick", "the box was not changed"),
    "control": ("your click", "nothing was changed"),
    "pick": ("your choice", "nothing was changed"),
    "override": ("your advance", "nothing was advanced"),
    "advance_anyway": ("your advance", "nothing was advanced"),
    "save_metrics": ("your metrics", "nothing was saved"),
    "import_plan": ("your plan", "nothing was imported"),
}


def interaction_id(body: Any) -> str | None:
    """The interaction's own id, as Slack sends it again in a retry; None when it has none."""
    if not isinstance(body, dict):
        return None
    team = field(body, "team_id") or field(body, "team", "id")
    kind = field(body, "type")
    if kind == "event_callback":
        found = field(body, "event_id")
        return f"event:{found}" if found else None
    if isinstance(body.get("command"), str):
        found = field(body, "trigger_id")
        return f"command:{team}:{found}" if found else None
    if kind == "block_actions":
        user, ts = field(body, "user", "id"), field(body, "actions", 0, "action_ts")
        return f"action:{team}:{user}:{ts}" if user and ts else None
    if kind in ("view_submission", "shortcut", "message_action"):
        found = field(body, "trigger_id")
        return f"{kind}:{team}:{found}" if found else None
    return None


def work_key(body: Any, function_name: str) -> str | None:
    found = interaction_id(body)
    if found is None:
        return None
    key = f"{found}/{function_name}"
    if len(key) > MAX_KEY:
        return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}/{function_name[:100]}"
    return key


def command_fingerprint(body: Any) -> str | None:
    """Who typed which command where: a retried command whose ids do not match anything queued
    is the same command if this matches one queued moments ago."""
    if not isinstance(body, dict) or not isinstance(body.get("command"), str):
        return None
    parts = [field(body, name) for name in ("team_id", "user_id", "channel_id", "command", "text")]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def what_it_was(function_name: str, body: Any) -> tuple[str, str]:
    if function_name == "work" and isinstance(body, dict):
        shown = f"{field(body, 'command') or '/rollout'} {field(body, 'text')}".strip()
        return f"`{escape(shown.replace('`', ''))}`", "nothing was done"
    return WORDS.get(function_name, ("your request", "nothing was done"))


def not_queued_message(function_name: str, body: Any) -> str:
    what, nothing = what_it_was(function_name, body)
    return f":warning: I could not take {what}: my database is not reachable, so {nothing}. Try again in a minute."


def gave_up_message(function_name: str, body: Any, attempts: int) -> str:
    what, _ = what_it_was(function_name, body)
    return (
        f":warning: I could not finish {what}: it stopped half-way {attempts} times, so I gave up. "
        "Part of it may have been done; `/rollout status` shows where things stand."
    )


def tell(body: Any, text: str, client: WebClient | None, *, wait: bool = False) -> None:
    """Says `text` to the person behind a request: through its response_url when it has one,
    else in a direct message (a form submission has no response_url). In the background unless
    `wait`, so an ack is never held up by it."""
    url = field(body, "response_url")
    user = field(body, "user_id") or field(body, "user", "id") or field(body, "event", "user")

    def send() -> None:
        try:
            # Through Message, as every post: the full text in a section, a push text on top.
            message = text_message(text).as_kwargs()
            if url:
                WebhookClient(url).send(**message, response_type="ephemeral", replace_original=False)
            elif user and client is not None:
                client.chat_postMessage(channel=user, **message)
            else:
                log.error("nobody to tell: %s", text)
        except Exception:  # the last resort: nothing above it to tell
            log.exception("could not tell %s: %s", user or url, text)

    if wait:
        send()
    else:
        threading.Thread(target=send, name="tell", daemon=True).start()
