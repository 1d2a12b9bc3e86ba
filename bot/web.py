"""HTTP: Flask in front of Bolt, served by gunicorn (threads), `POST /slack/events`, `GET /healthz`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from sqlalchemy.exc import SQLAlchemyError

from storage.db import Database

log = logging.getLogger(__name__)


def build_web(bolt: App, db: Database) -> Flask:
    web = Flask("rollout-bot")
    handler = SlackRequestHandler(bolt)

    @web.post("/slack/events")
    def slack_events() -> Response:
        return handler.handle(request)

    @web.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            db.ping()
        except SQLAlchemyError as exc:
            log.warning("health check: database unreachable: %s", exc.__class__.__name__)
            return jsonify(status="error", database="unreachable"), 503
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


def serve_http(
    web: Flask, *, port: int, threads: int, on_worker_start: Callable[[], None] | None = None
) -> None:
    options = {
        "bind": f"0.0.0.0:{port}",
        # One process: the lazy-listener pool and the scheduler live in it. Scale with
        # replicas (they coordinate through the database), threads within one.
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": None,
        "loglevel": "warning",
    }
    if on_worker_start is not None:
        options["post_worker_init"] = lambda _worker: on_worker_start()
    GunicornServer(web, options).run()
