"""Builds the Bolt app and registers every listener."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

from bot.edge.listeners import register_listeners
from bot.edge.listeners.payloads import stamp_sent_at
from bot.services import Services

log = logging.getLogger(__name__)


class StampArrival(Middleware):
    """When Slack sent the request, for the work behind the ack (an advance binds to the step
    current then). Work replayed from the queue keeps the stamp of its arrival.

    A `Middleware` rather than a decorated function: Bolt builds every possible argument of a
    function middleware for each request (bench/web_cpu.py)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        if not req.lazy_only:
            stamp_sent_at(req, self.svc.clock())
        return next()


def build_app(
    svc: Services,
    *,
    token_verification: bool = True,
    executor: Executor | None = None,
    verify_requests: bool = True,
) -> App:
    """The Bolt app. Acks run on the request's own thread (`process_before_response`), so an
    ack never waits behind earlier requests' work; that work runs in lazy listeners, which the
    HTTP server queues for the work process (bot/edge/workqueue.py), which also tells a
    Slack retry of work already queued from one to queue. `verify_requests=False` is for the
    work process, whose requests come from that queue, verified when they arrived."""
    settings = svc.settings
    app = App(
        signing_secret=settings.slack_signing_secret,
        client=svc.client,
        request_verification_enabled=verify_requests and not settings.socket_mode,
        process_before_response=True,
        token_verification_enabled=token_verification,
        # Lazy listeners (the work after each ack) run here; Bolt's default of 5 is too few
        # for a burst of clicks.
        listener_executor=executor
        or ThreadPoolExecutor(max_workers=settings.web_threads, thread_name_prefix="lazy"),
        raise_error_for_unhandled_request=False,
    )

    app.middleware(StampArrival(svc))

    @app.error
    def on_error(error: Exception, body: dict[str, Any], response: BoltResponse | None) -> None:
        # Acks are written not to fail; if one does, log it with its traceback. Listener work
        # answers its own errors (bot/answers.py).
        log.error(
            "unhandled error in a listener for %s", body.get("type") or body.get("command"), exc_info=error
        )

    register_listeners(app, svc)
    return app
