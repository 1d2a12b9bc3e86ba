"""Wires the running bot: settings -> services -> Bolt app -> HTTP server or Socket Mode."""

from __future__ import annotations

import logging

from bot.app import build_app
from bot.config import Settings
from bot.metrics import DatadogMetricsSource, MetricsSource
from bot.scheduler import Scheduler
from bot.services import Services
from bot.slack import make_client
from messages import configure
from storage.db import Database

log = logging.getLogger(__name__)


def metrics_source(settings: Settings) -> MetricsSource | None:
    if not settings.datadog_configured:
        log.warning("DD_API_KEY/DD_APP_KEY not set: every metric reads as no data, so no gate opens")
        return None
    assert settings.dd_api_key and settings.dd_app_key
    return DatadogMetricsSource(
        settings.dd_api_key, settings.dd_app_key, site=settings.dd_site, api_url=settings.dd_api_url
    )


def build_services(settings: Settings) -> Services:
    configure(settings.templates_dir)
    return Services(
        settings=settings,
        db=Database(settings.database_url, pool_size=max(5, settings.web_threads)),
        client=make_client(settings.slack_bot_token, settings.slack_api_url),
        outbox_client=make_client(settings.slack_bot_token, settings.slack_api_url, max_retries=0),
        metrics=metrics_source(settings),
    )


def serve(settings: Settings) -> None:
    svc = build_services(settings)
    bolt = build_app(svc)
    scheduler = Scheduler(svc)
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        log.info("Socket Mode, database %s", svc.db.dialect)
        scheduler.start()
        SocketModeHandler(bolt, settings.slack_app_token).start()
        return
    from bot.web import build_web, serve_http

    # No connection may cross gunicorn's fork into the worker; the scheduler's thread starts
    # in the worker, where the requests are served.
    svc.db.dispose()
    log.info("HTTP on port %s, database %s", settings.port, svc.db.dialect)
    serve_http(
        build_web(bolt, svc.db, settings.slack_signing_secret),
        port=settings.port,
        threads=settings.web_threads,
        on_worker_start=scheduler.start,
    )
