"""Wires the running bot: settings -> services -> Bolt app -> HTTP server or Socket Mode."""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask
from slack_bolt import App

from bot.app import build_app
from bot.config import Settings
from bot.delivery.scheduler import Scheduler
from bot.edge import form_bodies, json_bodies, wakeup
from bot.edge.web import build_web, serve_http
from bot.edge.workqueue import Worker, queue_lazy_work
from bot.flags import FlagError, FlagProvider, FlagState, provider_from_env
from bot.metrics import DatadogMetricsSource, MetricsSource
from bot.observe import metrics_enabled, telemetry
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
        return None
    return CountedFlags(provider)


class CountedFlags:
    """The flag provider, with each call counted (rollout_bot_flag_calls_total and
    rollout_bot_flag_errors_total, by provider and operation); bot/flags knows nothing of it."""

    def __init__(self, inner: FlagProvider) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def _count(self, operation: str, call: Any) -> Any:
        try:
            result = call()
        except FlagError:
            telemetry.FLAG_CALLS.labels(self.inner.name, operation, "error").inc()
            telemetry.FLAG_ERRORS.labels(self.inner.name, operation).inc()
            raise
        telemetry.FLAG_CALLS.labels(self.inner.name, operation, "ok").inc()
        return result

    def read(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        state: FlagState = self._count("read", lambda: self.inner.read(flag_key, strategy_id=strategy_id))
        return state

    def set_percent(self, flag_key: str, percent: float, *, strategy_id: str | None = None) -> FlagState:
        state: FlagState = self._count(
            "set_percent", lambda: self.inner.set_percent(flag_key, percent, strategy_id=strategy_id)
        )
        return state

    def turn_off(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        state: FlagState = self._count(
            "turn_off", lambda: self.inner.turn_off(flag_key, strategy_id=strategy_id)
        )
        return state

    def check(self) -> str:
        found: str = self._count("check", self.inner.check)
        return found

    def link(self, flag_key: str) -> str | None:
        return self.inner.link(flag_key)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


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


@dataclass
class WebProcess:
    """What the web process serves: its Bolt app (acks and queues), the Flask app in front of
    it, and the databases it opened (closed before gunicorn forks its worker)."""

    bolt: App
    web: Flask
    databases: tuple[Database, ...]


def build_web_process(settings: Settings) -> WebProcess:
    """The web process's apps, as `serve` runs them (bench/web_cpu.py times them in-process).
    Its lazy listeners are queued for the work process, nudged at the sockets in the
    environment (set them first)."""
    form_bodies.install()
    json_bodies.install()
    svc = build_services(settings)
    bolt = build_app(svc)
    queue = Database(queue_url(settings.database_url), pool_size=settings.web_threads)
    queue_lazy_work(bolt, queue)
    web = build_web(
        None if settings.socket_mode else bolt,
        svc.db,
        settings.slack_signing_secret,
        queue=queue,
        limits=settings.ready_limits,
        metrics=metrics_enabled(),
    )
    return WebProcess(bolt, web, (svc.db, queue))


def serve(settings: Settings) -> None:
    """The web process (gunicorn: acks, `/healthz`, `/readyz`, `/metrics`) and the work
    process beside it. Over HTTP Slack posts to `/slack/events`; in Socket Mode the web
    process holds the socket instead (started in gunicorn's worker) and answers only the
    health and metrics pages. Either way the work behind each ack is queued for the work
    process, so acks never wait on it."""
    # The web process nudges the work process it starts when it queues work (the work
    # process inherits the socket's name); a work process run apart polls.
    wake = wakeup.make_addresses(settings.work_processes) if settings.embedded_worker else []
    parts = build_web_process(settings)
    bolt, web = parts.bolt, parts.web
    workers = (
        [start_work_process(wake[n] if wake else None) for n in range(settings.work_processes)]
        if settings.embedded_worker
        else []
    )
    # No connection may cross gunicorn's fork into its worker.
    for database in parts.databases:
        database.dispose()
    dialect = parts.databases[0].dialect
    if settings.socket_mode:
        log.info("Socket Mode, health and metrics on port %s, database %s", settings.port, dialect)
    else:
        log.info("HTTP on port %s, database %s", settings.port, dialect)
    app_token = settings.slack_app_token
    serve_http(
        web,
        port=settings.port,
        threads=settings.web_threads,
        # One socket per app: Socket Mode keeps one web process.
        workers=1 if settings.socket_mode else settings.web_concurrency,
        on_exit=(lambda: stop_work_processes(workers, wake)) if workers else None,
        post_worker_init=lambda: start_web_worker(bolt, app_token),
    )


def start_web_worker(bolt: Any, app_token: str | None) -> None:
    """In gunicorn's worker, once it has started: its start-up objects frozen, and in Socket
    Mode the socket opened."""
    freeze_start_up_objects()
    if app_token:
        connect_socket_mode(bolt, app_token)


def freeze_start_up_objects() -> None:
    """Moves every object alive now (modules, the apps, clients, compiled statements) out of
    the collector's sight for good (`gc.freeze`), after collecting what is garbage already.

    Why: a full collection walks every tracked object and holds the interpreter lock while it
    does, and the objects built at start-up are nearly all of them. In the web worker each full
    collection stopped every request thread for 70–150 ms (bench/ack_latency.py, timed with
    `gc.callbacks`: three in a run, 305 ms in all; frozen, 3 ms); in the work process five took
    664 ms, the longest 247 ms (frozen, 262 ms). What is frozen is never collected: only
    objects meant to live as long as the process should be alive when this runs."""
    gc.collect()
    gc.freeze()


def connect_socket_mode(bolt: Any, app_token: str) -> Any:
    """Opens the Socket Mode connection (slack-sdk's built-in client reconnects by itself);
    returns the handler. Each envelope is acked as soon as its work is queued."""
    from bot.edge.socket_mode import QueuingSocketModeHandler

    handler = QueuingSocketModeHandler(bolt, app_token)
    handler.connect()
    return handler


# Set by `serve` for the work process it starts: only beside a web process does it give way.
BESIDE_WEB_ENV = "ROLLOUT_WORK_BESIDE_WEB"


def start_work_process(wake: str | None = None) -> subprocess.Popen[bytes]:
    """`rollout-bot work` beside the web server (WORK_PROCESSES of them), woken at its own
    socket; set ROLLOUT_EMBEDDED_WORKER=0 to run them apart (e.g. a `worker:` line in the
    Procfile)."""
    env = {**os.environ, BESIDE_WEB_ENV: "1"}
    if wake is not None:
        env[wakeup.WAKE_ENV] = wake
    return subprocess.Popen([sys.executable, "-m", "bot", "work"], env=env)


def stop_work_processes(workers: list[subprocess.Popen[bytes]], wake: list[str]) -> None:
    # All are told first, so they finish their claimed work at the same time.
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
    if wake:
        wakeup.remove_address(wake[0])


# Not more: niceness also ranks the work process below every other process of its machine or
# container, and at 10 it starved (a work process given a tenth of a share behind unrelated
# busy processes posted nothing of a start burst within 20 s, and a test's first status
# message took over 5 s); at 5 the web process still weighs three times as much.
WORK_NICENESS = 5
# Python's default is 5 ms: the thread claiming work, back from SQLite with the queue's write
# lock held, waited up to that long for the interpreter behind the work threads, and the web
# process's queue writes, and so the acks, waited behind it (in the bursts of
# bench/ack_latency.py the claims held the lock 4.7 s in all). Two alternated pairs, ack p99 with
# 0.5 ms: status 109 / 70 → 33 / 32 ms, start 50 / 40 → 36 / 33 ms, click 119 / 67 → 76 / 71 ms;
# the work process's CPU per request no higher.
WORK_SWITCH_INTERVAL_S = 0.0005


def yield_to_the_web_process() -> None:
    """Lowers this process's CPU priority before it starts any thread (Linux applies both
    settings per thread, and new threads inherit them).

    Why: an ack has 3 s and a person waiting on it; the work behind it has no deadline a
    few hundred milliseconds matter to. On a machine whose cores are busy, the kernel would
    share them equally, and acks would queue behind the work of earlier requests: with the
    work process niced (and SCHED_BATCH, which also tells the scheduler it is not
    interactive), the web process gets the CPU first and the work runs in what is left, which
    a burst's backlog then works off. Measured (bench/ack_latency.py, 2 cores kept busy by
    other processes too): ack throughput 0.34x the bare app's for status and start with
    niceness 10, 0.25x without. Where neither is allowed, nothing changes. Its threads also
    hand the interpreter on sooner (`WORK_SWITCH_INTERVAL_S`), for the lock it shares with
    the web process."""
    sys.setswitchinterval(WORK_SWITCH_INTERVAL_S)
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError) as exc:
        log.info("work process: SCHED_BATCH not available (%s)", exc)
    try:
        os.nice(WORK_NICENESS)
    except OSError as exc:
        log.info("work process: could not lower its priority (%s)", exc)


def _warm_up_then_freeze() -> None:
    warm_up_charts()
    freeze_start_up_objects()


def work(settings: Settings) -> None:
    """The work process: runs queued listener work, delivers the outbox, runs due jobs. Started
    by `serve`, beside its web process, it gives way to it; run apart (its own machine or
    container) it has nobody to give way to, and keeps the priority it was given."""
    if os.environ.get(BESIDE_WEB_ENV) == "1":
        yield_to_the_web_process()
    form_bodies.install()
    json_bodies.install()
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
        wake_address=wakeup.configured_address(),
    )

    def stop(_signum: int, _frame: object) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()
    # The first chart would pay for importing matplotlib and loading its fonts (about a
    # second): pay it now, beside the start-up, not inside someone's advance. Then the
    # start-up's objects, matplotlib's among them, are frozen (with those of any request
    # running at that moment: at worst a few requests' worth kept for good, once).
    threading.Thread(target=_warm_up_then_freeze, name="chart-warm-up", daemon=True).start()
    log.info("work process: %s threads, database %s", settings.work_threads, svc.db.dialect)
    worker.loop()
    scheduler.shutdown()
    telemetry.process_exited(os.getpid())
