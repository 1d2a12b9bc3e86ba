"""HTTP: Flask in front of Bolt, served by gunicorn (threads), `POST /slack/events`, `GET /healthz`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import SQLAlchemyError

from bot.edge.workqueue import delivery
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


def build_web(bolt: App, db: Database, signing_secret: str | None) -> Flask:
    web = Flask("rollout-bot")
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    @web.post("/slack/events")
    def slack_events() -> Response | tuple[str, int]:
        # Bolt parses the body before it checks the signature, and a body that is not what
        # Slack sends makes it raise: check first, then parse, so nobody can turn garbage into
        # a 500 and a traceback.
        body = request.get_data(as_text=True)
        if not signed_by_slack(verifier, body, request.headers):
            return "invalid request", 401
        try:
            bolt_request = to_bolt_request(request)
            if not shaped_like_slack(bolt_request.body):
                return "this request is not one Slack sends", 400
            with delivery() as state:
                bolt_response = bolt.dispatch(bolt_request)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            log.warning("unreadable Slack request: %s: %s", type(exc).__name__, exc)
            return "this request is not one Slack sends", 400
        if state.event_not_queued:
            # Slack delivers an event again when it was not acked with a 2xx.
            return "could not take this event now; send it again", 503
        if bolt_response.status >= 500:
            # Our listeners answer their own errors (bot/answers.py), so a 5xx here is Bolt
            # failing on a payload it could not read (logged by Bolt): the request was bad.
            return "this request is not one Slack sends", 400
        return to_flask_response(bolt_response)

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


def serve_http(web: Flask, *, port: int, threads: int, on_exit: Callable[[], None] | None = None) -> None:
    options: dict[str, Any] = {
        "bind": f"0.0.0.0:{port}",
        # One web process that verifies, acks and queues; the work behind the acks runs in the
        # work process (bot/workqueue.py). Scale with replicas, which coordinate through the
        # database.
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": None,
        "loglevel": "warning",
    }
    if on_exit is not None:
        options["on_exit"] = lambda _server: on_exit()  # gunicorn's master, not its worker
    GunicornServer(web, options).run()
