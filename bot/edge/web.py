"""HTTP: Flask in front of Bolt, served by gunicorn (threads): `POST /slack/events`, `GET /healthz`
(liveness), `GET /readyz` (readiness, bot/edge/health.py), `GET /metrics` (Prometheus)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from slack_bolt import App
from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import SQLAlchemyError

from bot.edge.context import request_kind, request_scope
from bot.edge.health import BacklogCollector, readiness
from bot.edge.workqueue import delivery
from bot.observe import Limits, telemetry
from storage.db import Database, DatabaseGone

log = logging.getLogger(__name__)


def signed_by_slack(verifier: SignatureVerifier | None, body: str, headers: Any) -> bool:
    """Slack's signature over the raw body, checked before anything reads the body."""
    if verifier is None:
        return True
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    # Seconds since 1970, as Slack sends them: anything else (a 400-digit number overflows the
    # verifier's float conversion) is refused before it reaches the verifier.
    if not (
        isinstance(timestamp, str) and timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
    ):
        return False
    try:
        return verifier.is_valid(
            body=body, timestamp=timestamp, signature=headers.get("X-Slack-Signature", "")
        )
    except (ValueError, TypeError, OverflowError):
        return False


def shaped_like_slack(body: Any) -> bool:
    """The few fields Bolt reads before any listener runs, with the types Slack sends: Bolt
    indexes them unchecked and answers 500 with a traceback otherwise."""
    if not isinstance(body, dict):
        return False
    kind = body.get("type")
    if kind == "block_actions":
        actions = body.get("actions")
        return (
            isinstance(actions, list)
            and bool(actions)
            and all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)
        )
    if kind == "event_callback":
        event = body.get("event")
        return isinstance(event, dict) and isinstance(event.get("type"), str)
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        return isinstance(view, dict) and isinstance(view.get("callback_id", ""), str)
    return True


def build_web(
    bolt: App | None,
    db: Database,
    signing_secret: str | None,
    *,
    queue: Database | None = None,
    limits: Limits | None = None,
    metrics: bool = True,
) -> Flask:
    """The web app. `bolt` None: no `/slack/events` (Socket Mode serves only health and
    metrics here). `queue` is the work queue's database (the main one when not given)."""
    web = Flask("rollout-bot")
    verifier = SignatureVerifier(signing_secret) if signing_secret else None
    queue_db = queue or db
    scrape = _registry_of(BacklogCollector(db, queue_db))

    def slack_events() -> Response | tuple[str, int]:
        start = time.perf_counter()
        kind, answer = "other", None
        try:
            kind, answer = _slack_event(bolt, verifier)
            return answer
        finally:
            status = _status_of(answer)
            outcome = "acked" if status < 300 else ("not_queued" if status == 503 else "refused")
            telemetry.REQUESTS.labels(kind, outcome if answer is not None else "error").inc()
            telemetry.ACK_SECONDS.labels(kind).observe(time.perf_counter() - start)

    if bolt is not None:
        web.add_url_rule("/slack/events", "slack_events", slack_events, methods=["POST"])

    @web.get("/readyz")
    def readyz() -> tuple[Response, int]:
        ok, report = readiness(db, queue_db, limits or Limits())
        return jsonify(report), 200 if ok else 503

    @web.get("/metrics")
    def metrics_page() -> Response | tuple[str, int]:
        if not metrics:
            return "metrics are off (ROLLOUT_METRICS=0)", 404
        body = telemetry.exposition() + generate_latest(scrape)
        return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0], content_type=CONTENT_TYPE_LATEST)

    @web.get("/healthz")
    def healthz() -> tuple[Response, int]:
        # Answering without being able to write would ack clicks that are then lost.
        try:
            db.ping()
        except SQLAlchemyError as exc:
            log.warning("health check: database unreachable: %s", exc.__class__.__name__)
            return jsonify(status="error", database="unreachable"), 503
        try:
            db.check_writable()
        except DatabaseGone as exc:
            log.error("health check: %s", exc)
            return jsonify(status="error", database="file removed"), 503
        except SQLAlchemyError as exc:
            log.warning("health check: database not writable: %s", exc.__class__.__name__)
            return jsonify(status="error", database="not writable"), 503
        return jsonify(status="ok", database=db.dialect), 200

    return web


def _status_of(answer: Response | tuple[str, int] | None) -> int:
    if answer is None:
        return 500
    return answer[1] if isinstance(answer, tuple) else answer.status_code


def _registry_of(collector: BacklogCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _slack_event(
    bolt: App | None, verifier: SignatureVerifier | None
) -> tuple[str, Response | tuple[str, int]]:
    """The request's kind, and the answer to it."""
    assert bolt is not None
    # Bolt parses the body before it checks the signature, and a body that is not what
    # Slack sends makes it raise: check first, then parse, so nobody can turn garbage into
    # a 500 and a traceback.
    body = request.get_data(as_text=True)
    if not signed_by_slack(verifier, body, request.headers):
        return "other", ("invalid request", 401)
    kind = "other"
    try:
        bolt_request = to_bolt_request(request)
        kind = request_kind(bolt_request.body)
        if not shaped_like_slack(bolt_request.body):
            return kind, ("this request is not one Slack sends", 400)
        with request_scope(bolt_request.body), delivery() as state:
            bolt_response = bolt.dispatch(bolt_request)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        log.warning("unreadable Slack request: %s: %s", type(exc).__name__, exc)
        return kind, ("this request is not one Slack sends", 400)
    if state.event_not_queued:
        # Slack delivers an event again when it was not acked with a 2xx.
        return kind, ("could not take this event now; send it again", 503)
    if bolt_response.status >= 500:
        # Our listeners answer their own errors (bot/answers.py), so a 5xx here is Bolt
        # failing on a payload it could not read (logged by Bolt): the request was bad.
        return kind, ("this request is not one Slack sends", 400)
    return kind, to_flask_response(bolt_response)


class _ThroughRoot(glogging.Logger):  # type: ignore[misc]
    """gunicorn's own lines go through the root logger, so they are JSON like the others."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn run from our own CLI, so `rollout-bot serve` is the one entry point."""

    def __init__(self, web: Flask, options: dict[str, Any]) -> None:
        self._web = web
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._web


def serve_http(
    web: Flask,
    *,
    port: int,
    threads: int,
    workers: int = 1,
    on_exit: Callable[[], None] | None = None,
    post_worker_init: Callable[[], None] | None = None,
) -> None:
    options: dict[str, Any] = {
        "bind": f"0.0.0.0:{port}",
        # Web processes (WEB_CONCURRENCY, 1 by default) only verify, ack and queue; the work
        # behind the acks runs in the work process (bot/edge/workqueue.py). Scale with
        # replicas, which coordinate through the database.
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": None,
        "loglevel": "warning",
        "logger_class": _ThroughRoot,
        # A worker's metric files stay (its counters still count); its live gauges go.
        "child_exit": lambda _server, worker: telemetry.process_exited(worker.pid),
    }
    if on_exit is not None:
        options["on_exit"] = lambda _server: on_exit()  # gunicorn's master, not its worker
    if post_worker_init is not None:
        options["post_worker_init"] = lambda _worker: post_worker_init()
    GunicornServer(web, options).run()
