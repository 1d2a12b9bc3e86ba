"""A local HTTP stand-in for Slack's Web API: answers like Slack, records every call.

The bot talks to it through ``WebClient(base_url=fake.api_url)``; tests then inspect the
recorded calls and the messages the bot left in each channel, or inject failures to see
how the bot copes with them.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl

_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slack"


def _recorded_auth_test() -> dict[str, Any]:
    recorded = _FIXTURES / "auth_test_response.bolt-python.json"
    # Moved into the workspace that SlackDriver's requests come from.
    return {**json.loads(recorded.read_text())["payload"], "team_id": "T111"}


_AUTH_TEST = _recorded_auth_test()
TEAM_ID: str = _AUTH_TEST["team_id"]
BOT_USER_ID: str = _AUTH_TEST["user_id"]
BOT_ID: str = _AUTH_TEST["bot_id"]
APP_ID = "A111"
SCOPES = "chat:write,commands,channels:join,users:read,files:write"
USER_TZ = "America/Los_Angeles"

# slack_sdk sends these as JSON strings inside form bodies; tests inspect them as objects.
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata", "files")
_TS_START_US = 1_700_000_000_000_000
_JSON_TYPE = "application/json; charset=utf-8"

Params = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One request the fake received; ``headers`` names are lower-cased."""

    method: str
    params: Params
    headers: dict[str, str]
    at: float  # time.time() when the request arrived
    # Tells response_url / upload posts apart, e.g. "/response/<name>".
    path: str = ""


@dataclass(frozen=True)
class _Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = _JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Failure:
    status: int
    error: str | None
    retry_after: int

    def reply(self) -> _Reply:
        if self.error is not None:
            return _error(self.error)
        if self.status == 429:
            return _Reply(
                429,
                json.dumps({"ok": False, "error": "ratelimited"}).encode(),
                headers=(("Retry-After", str(self.retry_after)),),
            )
        return _Reply(self.status)


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, dict[str, Params]] = field(default_factory=dict)
    failures: dict[str, deque[_Failure]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    # channel -> is it private (the bot cannot join it)
    outside: dict[str, bool] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    uploads: dict[str, Params] = field(default_factory=dict)
    # One sequence for every generated id keeps ts values unique and increasing.
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


def _ok(**fields: Any) -> _Reply:
    return _Reply(body=json.dumps({"ok": True, **fields}).encode())


def _error(error: str) -> _Reply:
    return _Reply(body=json.dumps({"ok": False, "error": error}).encode())


def _parse_body(content_type: str, raw: bytes) -> Params:
    text = raw.decode("utf-8")
    if content_type.startswith("application/json"):
        params: Params = json.loads(text) if text else {}
    else:
        params = dict(parse_qsl(text, keep_blank_values=True))
    for name in _JSON_FIELDS:
        if isinstance(params.get(name), str):
            # A malformed field stays as sent, so a test can see what was wrong with it.
            with contextlib.suppress(ValueError):
                params[name] = json.loads(params[name])
    return params


def _hook_ok(call: Call) -> _Reply:
    # hooks.slack.com answers response_url posts with a plain "ok".
    return _Reply(body=b"ok", content_type="text/plain")


def _with_block_ids(blocks: list[Params]) -> list[Params]:
    # Slack gives every rendered block a block_id; interaction payloads depend on it.
    return [{"block_id": f"blk{index}", **block} for index, block in enumerate(blocks)]


class FakeSlack:
    """Slack's Web API on 127.0.0.1, served from a daemon thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[Params], _Reply]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            "views.open": self._view,
            "views.update": self._view,
            "views.push": self._view,
            "views.publish": self._view,
            "conversations.join": self._join,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Self:
        self._server = _Server(self)
        self._thread = threading.Thread(
            # A short poll keeps stop() (and so each test's teardown) quick.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-slack",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, name: str) -> str:
        return f"{self.base_url}/response/{name}"

    def reset(self) -> None:
        """Forget calls, messages, failures, delays, admins and channel membership."""
        with self._changed:
            self._state = _State()

    # -- scenario setup ----------------------------------------------------------

    def fail_next(
        self,
        method: str,
        times: int = 1,
        status: int = 500,
        *,
        error: str | None = None,
        retry_after: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        With ``error``: HTTP 200 ``{"ok": false, "error": error}``. Otherwise HTTP
        ``status`` with an empty body, except 429: Retry-After and a ratelimited body.
        """
        failure = _Failure(status, error, retry_after)
        with self._changed:
            self._state.failures.setdefault(method, deque()).extend([failure] * times)

    def set_not_in_channel(self, channel: str, private: bool = False) -> None:
        """Posts to ``channel`` fail (not_in_channel) until the bot joins; private: never."""
        with self._changed:
            self._state.outside[channel] = private

    def set_admin(self, user_id: str) -> None:
        with self._changed:
            self._state.admins.add(user_id)

    def set_delay(self, method: str, seconds: float) -> None:
        with self._changed:
            self._state.delays[method] = seconds

    # -- queries -----------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._changed:
            return [call for call in self._state.calls if method is None or call.method == method]

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] = lambda call: True,
        timeout: float = 5.0,
        count: int = 1,
    ) -> list[Call]:
        """Block until ``count`` calls of ``method`` match; return all the matches."""

        def matches() -> list[Call]:
            return [call for call in self._state.calls if call.method == method and predicate(call)]

        with self._changed:
            if self._changed.wait_for(lambda: len(matches()) >= count, timeout):
                return matches()
            recorded = [call.method for call in self._state.calls]
        raise AssertionError(
            f"waited {timeout}s for {count} matching {method} call(s); recorded calls: {recorded}"
        )

    def clear_calls(self) -> None:
        with self._changed:
            self._state.calls.clear()

    def message(self, channel: str, ts: str) -> Params:
        """The latest version of a message, with its ``channel``; KeyError if unknown."""
        with self._changed:
            return {
                **copy.deepcopy(self._state.messages[channel][ts]),
                "channel": channel,
            }

    def messages(self, channel: str) -> list[Params]:
        """Every message the bot posted in ``channel``, thread replies too, oldest first."""
        with self._changed:
            stored = self._state.messages.get(channel, {})
            return [{**copy.deepcopy(stored[ts]), "channel": channel} for ts in sorted(stored)]

    # -- request handling: server threads; Web API methods run under the lock --

    def _handle(self, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
        at = time.time()
        kind, _, name = path.lstrip("/").partition("/")
        answer: Callable[[Call], _Reply]
        if kind == "api":
            with self._changed:
                delay = self._state.delays.get(name, 0.0)
            time.sleep(delay)
            params = _parse_body(headers.get("content-type", ""), raw)
            call = Call(name, params, headers, at, path)
            answer = self._api
        elif kind == "response":
            params = _parse_body(headers.get("content-type", ""), raw)
            call = Call("response_url", params, headers, at, path)
            answer = _hook_ok
        elif kind == "upload":
            call = Call("upload_url", {"file_id": name, "data": raw}, headers, at, path)
            answer = self._upload
        else:
            return _Reply(404)
        # Recorded once answered: a test woken by wait_for already sees the call's effect.
        with self._changed:
            reply = answer(call)
            self._state.calls.append(call)
            self._changed.notify_all()
        return reply

    def _api(self, call: Call) -> _Reply:
        if not call.headers.get("authorization", "").startswith("Bearer "):
            return _error("not_authed")
        failures = self._state.failures.get(call.method)
        if failures:
            return failures.popleft().reply()
        handler = self._handlers.get(call.method)
        return handler(call.params) if handler else _error("unknown_method")

    def _upload(self, call: Call) -> _Reply:
        upload = self._state.uploads.get(call.params["file_id"])
        if upload is None:
            return _Reply(404)
        upload["data"] = call.params["data"]
        return _Reply(body=f"OK - {len(upload['data'])}".encode(), content_type="text/plain")

    def _next_ts(self) -> str:
        micros = _TS_START_US + next(self._state.ids) * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # -- Web API methods ---------------------------------------------------------

    def _auth_test(self, params: Params) -> _Reply:
        body = json.dumps(_AUTH_TEST).encode()
        return _Reply(body=body, headers=(("x-oauth-scopes", SCOPES),))

    def _post_message(self, params: Params) -> _Reply:
        channel = params.get("channel")
        if not channel:
            return _error("channel_not_found")
        if channel in self._state.outside:
            return _error("not_in_channel")
        if isinstance(params.get("blocks"), str):
            return _error("invalid_blocks_format")
        if not any(params.get(name) for name in ("text", "blocks", "attachments")):
            return _error("no_text")
        ts = self._next_ts()
        message: Params = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
            "text": params.get("text", ""),
            "blocks": _with_block_ids(params.get("blocks") or []),
        }
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        if params.get("metadata"):
            message["metadata"] = params["metadata"]
        self._state.messages.setdefault(channel, {})[ts] = message
        return _ok(channel=channel, ts=ts, message=message)

    def _replies(self, params: Params) -> _Reply:
        """A thread: its parent and replies, oldest first; metadata only when asked for."""
        channel, parent = str(params.get("channel") or ""), str(params.get("ts") or "")
        if channel in self._state.outside:
            return _error("not_in_channel")
        stored = self._state.messages.get(channel, {})
        if parent not in stored:
            return _error("thread_not_found")
        oldest = float(params.get("oldest") or 0)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        found = [
            {k: v for k, v in m.items() if k != "metadata" or with_metadata}
            for ts, m in sorted(stored.items())
            if (ts == parent or m.get("thread_ts") == parent) and float(ts) >= oldest
        ]
        return _ok(messages=found, has_more=False)

    def _history(self, params: Params) -> _Reply:
        """Top-level messages and, like Slack, replies that were also sent to the channel are
        not included; metadata only with include_all_metadata. Newest first."""
        channel = str(params.get("channel") or "")
        if channel in self._state.outside:
            return _error("not_in_channel")
        oldest = float(params.get("oldest") or 0)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        found = []
        for ts, message in sorted(self._state.messages.get(channel, {}).items(), reverse=True):
            if float(ts) < oldest or message.get("thread_ts") not in (None, ts):
                continue
            shown = {k: v for k, v in message.items() if k != "metadata" or with_metadata}
            found.append(shown)
        limit = int(params.get("limit") or 100)
        return _ok(messages=found[:limit], has_more=len(found) > limit)

    def _update(self, params: Params) -> _Reply:
        channel, ts = params.get("channel"), params.get("ts")
        if channel in self._state.outside:
            return _error("not_in_channel")
        message = self._state.messages.get(channel or "", {}).get(ts or "")
        if message is None:
            return _error("message_not_found")
        if isinstance(params.get("blocks"), str):
            return _error("invalid_blocks_format")
        # Like Slack, fields left out of the update keep their previous value.
        if params.get("text") is not None:
            message["text"] = params["text"]
        if params.get("blocks") is not None:
            message["blocks"] = _with_block_ids(params["blocks"])
        return _ok(channel=channel, ts=ts, text=message["text"], message=message)

    def _post_ephemeral(self, params: Params) -> _Reply:
        if not params.get("channel"):
            return _error("channel_not_found")
        return _ok(message_ts=self._next_ts())

    def _get_permalink(self, params: Params) -> _Reply:
        channel, ts = params.get("channel", ""), params.get("message_ts", "")
        permalink = f"https://example.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return _ok(channel=channel, permalink=permalink)

    def _view(self, params: Params) -> _Reply:
        submitted = params.get("view")
        if not isinstance(submitted, dict):
            return _error("invalid_arguments")
        # views.update keeps the id of the view it replaces.
        view_id = params.get("view_id") or f"V{next(self._state.ids):010d}"
        view = {
            "id": view_id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{view_id}",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
            **submitted,
            "blocks": _with_block_ids(submitted.get("blocks", [])),
        }
        return _ok(view=view)

    def _join(self, params: Params) -> _Reply:
        channel = params.get("channel")
        if not channel:
            return _error("channel_not_found")
        private = self._state.outside.get(channel)
        if private:
            return _error("method_not_supported_for_channel_type")
        info = {
            "id": channel,
            "name": channel.lower(),
            "is_channel": True,
            "is_private": False,
            "is_member": True,
            "is_archived": False,
        }
        if private is None:
            return _ok(
                channel=info,
                warning="already_in_channel",
                response_metadata={"warnings": ["already_in_channel"]},
            )
        del self._state.outside[channel]
        return _ok(channel=info)

    def _users_info(self, params: Params) -> _Reply:
        user_id = params.get("user")
        if not user_id:
            return _error("user_not_found")
        name = user_id.lower()
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": name,
            "deleted": False,
            "tz": USER_TZ,
            "tz_label": "Pacific Standard Time",
            "tz_offset": -28800,
            "is_admin": user_id in self._state.admins,
            "is_owner": False,
            "is_bot": False,
            "profile": {"real_name": name, "display_name": name},
        }
        return _ok(user=user)

    def _get_upload_url(self, params: Params) -> _Reply:
        if not params.get("filename") or not params.get("length"):
            return _error("invalid_arguments")
        file_id = f"F{next(self._state.ids):010d}"
        self._state.uploads[file_id] = {"name": params["filename"], "data": b""}
        return _ok(upload_url=f"{self.base_url}/upload/{file_id}", file_id=file_id)

    def _complete_upload(self, params: Params) -> _Reply:
        requested = params.get("files")
        if not isinstance(requested, list):
            return _error("invalid_arguments")
        files = []
        for item in requested:
            upload = self._state.uploads.get(item.get("id", ""))
            if upload is None:
                return _error("file_not_found")
            title = item.get("title") or upload["name"]
            files.append(
                {
                    "id": item["id"],
                    "name": upload["name"],
                    "title": title,
                    "size": len(upload["data"]),
                }
            )
        return _ok(files=files)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeSlack) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    # Without this every answer waits ~40 ms on Nagle + delayed ACK over loopback.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        server = self.server
        assert isinstance(server, _Server)
        reply = server.fake._handle(self.path.partition("?")[0], headers, raw)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: request lines would drown pytest's output."""
