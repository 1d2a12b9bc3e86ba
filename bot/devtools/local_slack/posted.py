"""What a person in the channel would see of a call: a new message, an edit, an ephemeral
reply, a response_url reply, or a form. The local Slack hands each one to ``on_post``."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.devtools.local_slack.methods import VIEW_METHODS
from bot.devtools.local_slack.state import Call, Params, Reply, with_block_ids

Kind = Literal["message", "update", "ephemeral", "reply", "view", "file"]


@dataclass
class Posted:
    """One thing the bot showed. ``ts`` is empty for response_url replies; for a view it is
    the view's id and ``text`` its title."""

    kind: Kind
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (name, bytes) of an upload


def shown(call: Call, reply: Reply, uploads: dict[str, Params] | None = None) -> Posted | None:
    """What ``call`` showed, answered with ``reply``; None when it showed nothing. ``uploads``:
    the bytes posted to upload URLs, by file id, for files.completeUploadExternal."""
    params = call.params
    if call.method == "response_url":
        kind: Kind = "message" if params.get("response_type") == "in_channel" else "reply"
        return Posted(kind, "", "", str(params.get("text") or ""), _blocks(params.get("blocks")))
    answer = reply.answer
    if answer is None or not answer.get("ok"):
        return None
    if call.method in ("chat.postMessage", "chat.update"):
        message: Params = answer["message"]
        return Posted(
            "message" if call.method == "chat.postMessage" else "update",
            str(answer["channel"]),
            str(message["ts"]),
            str(message.get("text") or ""),
            copy.deepcopy(message["blocks"]),
            message.get("thread_ts"),
        )
    if call.method == "chat.postEphemeral":
        return Posted(
            "ephemeral",
            str(params.get("channel") or ""),
            str(answer["message_ts"]),
            str(params.get("text") or ""),
            _blocks(params.get("blocks")),
        )
    if call.method == "files.completeUploadExternal":
        files = [
            (str(f.get("name", "")), bytes((uploads or {}).get(str(f.get("id")), {}).get("data", b"")))
            for f in answer.get("files") or []
        ]
        return Posted(
            "file",
            str(params.get("channel_id") or ""),
            "",
            str(params.get("initial_comment") or ""),
            thread_ts=params.get("thread_ts") or None,
            files=files,
        )
    if call.method in VIEW_METHODS:
        view: Params = answer["view"]
        title = view.get("title")
        title = title.get("text", "") if isinstance(title, dict) else ""
        return Posted("view", "", str(view["id"]), str(title), copy.deepcopy(view["blocks"]))
    return None


def _blocks(blocks: object) -> list[dict[str, Any]]:
    if not isinstance(blocks, list):
        return []
    return with_block_ids([copy.deepcopy(block) for block in blocks if isinstance(block, dict)])
