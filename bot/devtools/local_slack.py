"""A Slack Web API on localhost, for `rollout-bot shell`: the bot's own WebClient talks HTTP
to it exactly as to Slack, and it hands every message it receives to the terminal."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any
from urllib.parse import parse_qsl

TEAM_ID = "T0SHELL"
BOT_USER_ID = "U0ROLLOUTBOT"
JSON_FIELDS = ("blocks", "view", "metadata")


@dataclass
class Posted:
    """What the bot showed: a new message, an edit, an ephemeral reply, or a form."""

    kind: str  # "message" | "update" | "ephemeral" | "reply" | "view"
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None


class LocalSlack:
    def __init__(self, on_post: Callable[[Posted], None], *, admins: set[str] | None = None) -> None:
        self._on_post = on_post
        self._admins = admins or set()
        self._lock = threading.Lock()
        self._ts = count(1)
        self.messages: dict[str, dict[str, Posted]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="local-slack")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def start(self) -> LocalSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._answer(method, params)

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _show(self, posted: Posted) -> None:
        self._on_post(posted)

    def _answer(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel", ""))
        if method == "auth.test":
            return {
                "ok": True,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": "B0SHELL",
                "team": "Shell",
            }
        if method == "chat.postMessage":
            ts = self._next_ts()
            posted = Posted(
                "message", channel, ts, p.get("text", ""), p.get("blocks") or [], p.get("thread_ts")
            )
            self.messages.setdefault(channel, {})[ts] = posted
            self._show(posted)
            return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts, "text": posted.text}}
        if method == "chat.update":
            old = self.messages.get(channel, {}).get(str(p.get("ts")))
            if old is None:
                return {"ok": False, "error": "message_not_found"}
            old.text, old.blocks = p.get("text", old.text), p.get("blocks") or old.blocks
            self._show(Posted("update", channel, old.ts, old.text, old.blocks))
            return {"ok": True, "channel": channel, "ts": old.ts}
        if method == "chat.postEphemeral":
            self._show(
                Posted("ephemeral", channel, self._next_ts(), p.get("text", ""), p.get("blocks") or [])
            )
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "chat.getPermalink":
            return {
                "ok": True,
                "permalink": f"{self.url}/archives/{channel}/p{str(p.get('message_ts')).replace('.', '')}",
            }
        if method in ("views.open", "views.update", "views.push", "views.publish"):
            view = p.get("view") or {}
            title = (view.get("title") or {}).get("text", "a form")
            self._show(
                Posted("view", channel, "", f"“{title}” opens a form in Slack; the shell has no forms.")
            )
            return {"ok": True, "view": {**view, "id": f"V{next(self._ts)}"}}
        if method == "conversations.join":
            return {"ok": True, "channel": {"id": channel}}
        if method in ("conversations.history", "conversations.replies"):
            found = [
                {"ts": m.ts, "text": m.text, "thread_ts": m.thread_ts}
                for m in self.messages.get(channel, {}).values()
            ]
            return {"ok": True, "messages": found, "has_more": False}
        if method == "users.info":
            user = str(p.get("user", ""))
            return {
                "ok": True,
                "user": {"id": user, "name": user.lower(), "is_admin": user in self._admins, "tz": "UTC"},
            }
        return {"ok": False, "error": "unknown_method"}

    def reply(self, payload: dict[str, Any]) -> None:
        """A post to a response_url: ephemeral unless it says in_channel."""
        with self._lock:
            kind = "reply" if payload.get("response_type") != "in_channel" else "message"
            self._show(
                Posted(kind, "", self._next_ts(), payload.get("text", ""), payload.get("blocks") or [])
            )


def _handler(slack: LocalSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Without this every answer waits ~40 ms on Nagle + delayed ACK over loopback.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                params: dict[str, Any] = json.loads(raw or "{}")
            else:
                params = dict(parse_qsl(raw))
            for name in JSON_FIELDS:
                if isinstance(params.get(name), str):
                    params[name] = json.loads(params[name])
            if self.path.startswith("/api/"):
                body = json.dumps(slack.answer(self.path[len("/api/") :], params))
            else:
                slack.reply(params)
                body = "ok"
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
