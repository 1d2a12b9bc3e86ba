"""The baseline for bench/ack_latency.py and bench/footprint.py: a bare Bolt app with one
slash command that only acks, on the bot's own HTTP stack (Flask + SlackRequestHandler,
gunicorn gthread through bot.web.serve_http: WEB_CONCURRENCY workers, one by default, of
WEB_THREADS threads each).

Run: .venv/bin/python bench/bare_app.py  (PORT, WEB_THREADS, WEB_CONCURRENCY, SLACK_SIGNING_SECRET
from the environment; defaults 3100, 16, 1, "bench-signing-secret"; SLACK_API_URL for Bolt's one
auth.test, as the bot does, else a fixed authorization).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, Response, jsonify, request
from slack_bolt import Ack, App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from bot.edge.web import serve_http


def build(threads: int, signing_secret: str, api_url: str | None) -> Flask:
    # Like the bot: one workspace, a bot token, Bolt's auth.test (once, then cached) asked of
    # SLACK_API_URL (the benchmarks point it at bot/devtools/local_slack/). Without it, a fixed
    # authorization that asks nobody.
    auth: dict[str, Any] = (
        {"client": WebClient(token="xoxb-bare", base_url=api_url)}
        if api_url
        else {
            "authorize": lambda **_: AuthorizeResult(
                enterprise_id=None, team_id="T0BARE", bot_token="xoxb-bare", bot_user_id="U0BARE"
            )
        }
    )
    bolt = App(
        signing_secret=signing_secret,
        token_verification_enabled=False,
        **auth,
        # The same executor the bot gives Bolt (bot/app.py): WEB_THREADS workers.
        listener_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lazy"),
        raise_error_for_unhandled_request=False,
    )

    @bolt.command("/rollout")
    def just_ack(ack: Ack) -> None:
        ack()

    web = Flask("bare-app")
    handler = SlackRequestHandler(bolt)

    @web.post("/slack/events")
    def slack_events() -> Response:
        return handler.handle(request)

    @web.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    return web


def main() -> None:
    threads = int(os.environ.get("WEB_THREADS", "16"))
    port = int(os.environ.get("PORT", "3100"))
    secret = os.environ.get("SLACK_SIGNING_SECRET", "bench-signing-secret")
    workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
    web = build(threads, secret, os.environ.get("SLACK_API_URL") or None)
    serve_http(web, port=port, threads=threads, workers=workers)


if __name__ == "__main__":
    main()
