"""Socket Mode: Slack's envelopes over a websocket instead of HTTP posts.

Each envelope is dispatched to the same Bolt app as an HTTP request: the ack listener answers,
its lazy work is queued for the work process (bot/edge/workqueue.py), and the envelope is acked
by its `envelope_id` right away, so acks never wait on the work. An event whose work could not
be queued is not acked: Slack sends an unacked envelope again, as it retries an HTTP 503.
slack-sdk's built-in client (no extra dependency) keeps the connection and reconnects.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response

from bot.edge.context import request_kind, request_scope
from bot.edge.workqueue import delivery
from bot.observe import telemetry

log = logging.getLogger(__name__)


class QueuingSocketModeHandler(SocketModeHandler):
    def handle(self, client: Any, req: Any) -> None:
        start = time.perf_counter()
        kind = request_kind(req.payload)
        outcome = "error"
        try:
            with request_scope(req.payload), delivery() as state:
                response = run_bolt_app(self.app, req)
            if state.event_not_queued:
                outcome = "not_queued"
                log.warning("event not queued: left unacked so Slack sends it again")
                return
            send_response(client, req, response, start)
            outcome = "acked" if response.status < 300 else "refused"
        finally:
            telemetry.REQUESTS.labels(kind, outcome).inc()
            telemetry.ACK_SECONDS.labels(kind).observe(time.perf_counter() - start)
