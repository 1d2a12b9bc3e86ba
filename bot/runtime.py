"""Wires the running bot: settings -> services -> Bolt app -> HTTP server or Socket Mode."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading

from bot.app import build_app
from bot.config import Settings
from bot.delivery.scheduler import Scheduler
from bot.edge.workqueue import Worker, queue_lazy_work
from bot.flags import FlagProvider, provider_from_env
from bot.metrics import DatadogMetricsSource, MetricsSource
from bot.services import Services
from bot.slackweb.client import make_client
from messages import configure
from messages.charts import warm_up as warm_up_charts
from storage.db import Database
from storage.urls import queue_url

log = logging.getLogger(__name__)


def metrics_source(settings: Settings) -> MetricsSource | None:
    if not settings.datadog_configured:
        log.warning("DD_API_KEY/DD_APP_KEY not set: every metric reads as no data, so no gate opens")
        return None
    assert settings.dd_api_key and settings.dd_app_key
    return DatadogMetricsSource(
        settings.dd_api_key, settings.dd_app_key, site=settings.dd_site, api_url=settings.dd_api_url
    )


def flag_provider(settings: Settings) -> FlagProvider | None:
    provider = provider_from_env(dict(settings.flag_env))
    if provider is None:
        log.info("FLAG_PROVIDER not set: the bot coordinates rollouts, people set the flag")
    return provider


def build_services(settings: Settings) -> Services:
    configure(settings.templates_dir)
    return Services(
        settings=settings,
        db=Database(settings.database_url, pool_size=max(5, settings.web_threads)),
        client=make_client(settings.slack_bot_token, settings.slack_api_url),
        outbox_client=make_client(settings.slack_bot_token, settings.slack_api_url, max_retries=0),
        metrics=metrics_source(settings),
        flags=flag_provider(settings),
    )


def serve(settings: Settings) -> None:
    svc = build_services(settings)
    bolt = build_app(svc)
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        # One process: acks over the socket, work in Bolt's threads, the scheduler beside them.
        log.info("Socket Mode, database %s", svc.db.dialect)
        Scheduler(svc, due_seconds=settings.due_seconds).start()
        SocketModeHandler(bolt, settings.slack_app_token).start()
        return
    from bot.edge.web import build_web, serve_http

    queue = Database(queue_url(settings.database_url), pool_size=settings.web_threads)
    queue_lazy_work(bolt, queue)
    worker = start_work_process() if settings.embedded_worker else None
    # No connection may cross gunicorn's fork into its worker.
    svc.db.dispose()
    queue.dispose()
    log.info("HTTP on port %s, database %s", settings.port, svc.db.dialect)
    serve_http(
        build_web(bolt, svc.db, settings.slack_signing_secret),
        port=settings.port,
        threads=settings.web_threads,
        on_exit=(lambda: stop_work_process(worker)) if worker else None,
    )


def start_work_process() -> subprocess.Popen[bytes]:
    """`rollout-bot work` beside the web server; set ROLLOUT_EMBEDDED_WORKER=0 to run it apart
    (e.g. a `worker:` line in the Procfile)."""
    return subprocess.Popen([sys.executable, "-m", "bot", "work"])


def stop_work_process(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()


def work(settings: Settings) -> None:
    """The work process: runs queued listener work, delivers the outbox, runs due jobs."""
    svc = build_services(settings)
    app = build_app(svc, verify_requests=False)
    scheduler = Scheduler(svc, due_seconds=settings.due_seconds)
    worker = Worker(
        app,
        Database(queue_url(settings.database_url)),
        threads=settings.work_threads,
        main=svc.db,
        lease_s=settings.work_lease_seconds,
        attempts=settings.work_attempts,
    )

    def stop(_signum: int, _frame: object) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()
    # The first chart would pay for importing matplotlib and loading its fonts (about a
    # second): pay it now, beside the start-up, not inside someone's advance.
    threading.Thread(target=warm_up_charts, name="chart-warm-up", daemon=True).start()
    log.info("work process: %s threads, database %s", settings.work_threads, svc.db.dialect)
    worker.loop()
    scheduler.shutdown()
