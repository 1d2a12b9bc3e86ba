"""A local Socket Mode server (the `websockets` library): Slack's side of the socket.

The bot asks the local Slack's `apps.connections.open` for a URL and connects here; the server
says hello, sends envelopes (a slash command, a block action, a view submission) and records
each ack by its `envelope_id`. `drop()` closes the connection as Slack does now and then; the
bot connects again by itself.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.driver import Response, SlackDriver


class SocketModeServer:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._connection: ServerConnection | None = None
        self.connections = 0  # how many times the bot connected
        self.acks: dict[str, dict[str, Any]] = {}
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SocketModeServer:
        self._server = serve(self._serve, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link"

    def _serve(self, connection: ServerConnection) -> None:
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A111"}}
        connection.send(json.dumps(hello))
        with self._changed:
            self._connection = connection
            self.connections += 1
            self._changed.notify_all()
        try:
            for raw in connection:
                message = json.loads(raw)
                if "envelope_id" in message:
                    with self._changed:
                        self.acks[message["envelope_id"]] = message
                        self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                if self._connection is connection:
                    self._connection = None
                self._changed.notify_all()

    def wait_connected(self, count: int = 1, timeout: float = 20.0) -> None:
        """Until the bot has connected `count` times and is connected now."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.connections < count or self._connection is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the bot connected {self.connections} times, wanted {count}")
                self._changed.wait(left)

    def drop(self) -> None:
        """Closes the connection, as Slack does when it refreshes one."""
        with self._changed:
            connection = self._connection
        assert connection is not None, "not connected"
        connection.close()

    def send(self, kind: str, payload: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
        """Sends an envelope; returns the bot's ack (raises if none came in time)."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind != "events_api",
            "payload": payload,
        }
        with self._changed:
            connection = self._connection
        assert connection is not None, "not connected"
        connection.send(json.dumps(envelope))
        deadline = time.monotonic() + timeout
        with self._changed:
            while envelope_id not in self.acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no ack for envelope {envelope_id} ({kind}) in {timeout}s")
                self._changed.wait(left)
            return self.acks[envelope_id]


class SocketDriver(SlackDriver):
    """SlackDriver whose requests go over the socket as envelopes instead of HTTP posts."""

    def __init__(self, server: SocketModeServer, *args: Any, **kwargs: Any) -> None:
        super().__init__("http://unused.invalid", "unused", *args, **kwargs)
        self.server = server
        self.acked: list[dict[str, Any]] = []

    def post_raw(self, body: str, content_type: str, **_ignored: Any) -> Response:
        from urllib.parse import parse_qsl

        fields = dict(parse_qsl(body, keep_blank_values=True))
        if "payload" in fields:
            kind, payload = "interactive", json.loads(fields["payload"])
        else:
            kind, payload = "slash_commands", fields
        ack = self.server.send(kind, payload)
        self.acked.append(ack)
        return Response(200, {}, json.dumps(ack.get("payload") or {}))
