"""LocalSlack: Slack's Web API on 127.0.0.1, served from a daemon thread.

The bot talks to it through ``WebClient(base_url=slack.api_url)``, exactly as to Slack.
Tests then read the recorded calls and the messages the bot left in each channel, or
inject failures to see how the bot copes; `rollout-bot shell` passes ``on_post`` to print
each message as it arrives.
"""

from __future__ import annotations

import contextlib
import copy
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from bot.devtools.local_slack.methods import WebApi
from bot.devtools.local_slack.posted import Posted, shown
from bot.devtools.local_slack.state import Call, Failure, Params, Reply, State, error, parse_body


class LocalSlack:
    """``on_post`` receives each message, edit, ephemeral, response_url reply and form as the
    bot sends it, in order, under the lock: it may read this LocalSlack but must not block.
    ``admins`` are the users users.info calls admins (more with set_admin). ``backlog`` is
    the listening socket's queue (socketserver's default is 5)."""

    def __init__(
        self,
        on_post: Callable[[Posted], None] | None = None,
        *,
        admins: Iterable[str] = (),
        backlog: int | None = None,
    ) -> None:
        # Re-entrant, so on_post may read messages back while a call is being answered.
        self._changed = threading.Condition(threading.RLock())
        self._on_post = on_post
        self._admins = frozenset(admins)
        self._backlog = backlog
        self._state = State(admins=set(self._admins))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Self:
        self._server = _Server(self, self._backlog)
        self._thread = threading.Thread(
            # A short poll keeps stop() (and so each test's teardown) quick.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-slack",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.close_connections()
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
            raise RuntimeError("LocalSlack is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, name: str) -> str:
        return f"{self.base_url}/response/{name}"

    def reset(self) -> None:
        """Forget calls, messages, failures, delays, channel membership and the admins added
        by set_admin (those given to the constructor stay)."""
        with self._changed:
            self._state = State(admins=set(self._admins))

    # -- scenario setup ----------------------------------------------------------

    def fail_next(
        self,
        method: str,
        times: int = 1,
        status: int = 500,
        *,
        error: str | None = None,
        retry_after: int = 1,
        only: Callable[[Params], bool] | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (with ``only``: the next ones
        whose parameters it accepts).

        With ``error``: HTTP 200 ``{"ok": false, "error": error}``. Otherwise HTTP
        ``status`` with an empty body, except 429: Retry-After and a ratelimited body.
        """
        failure = Failure(status, error, retry_after, only)
        with self._changed:
            self._state.failures.setdefault(method, deque()).extend([failure] * times)

    def set_not_in_channel(self, channel: str, private: bool = False) -> None:
        """Posts to ``channel`` fail (not_in_channel) until the bot joins; private: never."""
        with self._changed:
            self._state.outside[channel] = private

    def set_admin(self, user_id: str) -> None:
        with self._changed:
            self._state.admins.add(user_id)

    def set_socket_url(self, url: str | None) -> None:
        """apps.connections.open answers this ws:// URL (a local Socket Mode server)."""
        with self._changed:
            self._state.socket_url = url

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
            return {**copy.deepcopy(self._state.messages[channel][ts]), "channel": channel}

    def messages(self, channel: str) -> list[Params]:
        """Every message the bot posted in ``channel``, thread replies too, oldest first."""
        with self._changed:
            stored = self._state.messages.get(channel, {})
            return [{**copy.deepcopy(stored[ts]), "channel": channel} for ts in sorted(stored)]

    # -- requests: server threads; Web API methods run under the lock --------------

    def reply(self, payload: Params) -> None:
        """What the bot answered in an ack, taken as a post to a response_url: recorded as a
        ``response_url`` call with an empty path, and shown."""
        self._record(Call("response_url", payload, {}, time.time()), _hook_ok)

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        """One POST: ``/api/<method>``, ``/response/<name>`` or ``/upload/<file id>``."""
        at = time.time()
        kind, _, name = path.lstrip("/").partition("/")
        answer: Callable[[Call], Reply]
        if kind == "api":
            with self._changed:
                delay = self._state.delays.get(name, 0.0)
            time.sleep(delay)
            call = Call(name, parse_body(headers.get("content-type", ""), raw), headers, at, path)
            answer = self._api
        elif kind == "response":
            params = parse_body(headers.get("content-type", ""), raw)
            call = Call("response_url", params, headers, at, path)
            answer = _hook_ok
        elif kind == "upload":
            call = Call("upload_url", {"file_id": name, "data": raw}, headers, at, path)
            answer = self._upload
        else:
            return Reply(404)
        return self._record(call, answer)

    def _record(self, call: Call, answer: Callable[[Call], Reply]) -> Reply:
        # Recorded once answered: a test woken by wait_for already sees the call's effect.
        with self._changed:
            reply = answer(call)
            self._state.calls.append(call)
            if self._on_post is not None and (posted := shown(call, reply, self._state.uploads)) is not None:
                self._on_post(posted)
            self._changed.notify_all()
        return reply

    def _api(self, call: Call) -> Reply:
        if not call.headers.get("authorization", "").startswith("Bearer "):
            return error("not_authed")
        failures = self._state.failures.get(call.method, deque())
        for failure in failures:
            if failure.only is None or failure.only(call.params):
                failures.remove(failure)
                return failure.reply()
        return WebApi(self._state, self.base_url).answer(call.method, call.params)

    def _upload(self, call: Call) -> Reply:
        return WebApi(self._state, self.base_url).upload(call.params["file_id"], call.params["data"])


def _hook_ok(call: Call) -> Reply:
    # hooks.slack.com answers response_url posts with a plain "ok".
    return Reply(body=b"ok", content_type="text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, slack: LocalSlack, backlog: int | None) -> None:
        if backlog is not None:
            # A burst of connections beyond the backlog is dropped and retried by the kernel
            # a second later, which reads as a slow Slack.
            self.request_queue_size = backlog
        super().__init__(("127.0.0.1", 0), _Handler)
        self.slack = slack
        self.open: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Kept-alive connections end with the server, as Slack's would with a lost host."""
        for sock in list(self.open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # Without this every answer waits ~40 ms on Nagle + delayed ACK over loopback.
    disable_nagle_algorithm = True
    # Keep-alive, as Slack's own servers: a client that pools its connections reuses them.
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle kept-alive connection is closed after this

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        server = self.server
        assert isinstance(server, _Server)
        reply = server.slack.handle(self.path.partition("?")[0], headers, raw)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: request lines would drown pytest's output."""
