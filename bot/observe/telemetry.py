"""The bot's Prometheus metrics (prometheus-client), defined once, recorded where things happen.

Names follow Prometheus conventions (`rollout_bot_..._total`, `..._seconds`); every label has
a bounded set of values (request kinds, outcomes, listener function names, Slack error codes,
provider names): never a feature name, a channel or a user.

Several processes: `serve` sets PROMETHEUS_MULTIPROC_DIR (bot/observe/__init__.py) before this
module is first imported, so each process (gunicorn's web worker, the work process) writes its
values to files there and the web process's `/metrics` adds them up (`exposition`). Gauges that
describe the database (queue depth, the outbox backlog, the work process's heartbeat) are not
recorded here: the web process reads them from the database at each scrape
(bot/edge/health.py), so they are right whichever process is alive.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.registry import REGISTRY

from bot.observe import MULTIPROC_ENV

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)

REQUESTS = Counter(
    "rollout_bot_requests_total",
    "Slack requests by kind (command, action, view, event, other) and outcome (acked, refused, not_queued, error).",
    ["kind", "outcome"],
)
ACK_SECONDS = Histogram(
    "rollout_bot_ack_seconds",
    "From a Slack request's arrival to its ack, by kind.",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
WORK_SECONDS = Histogram(
    "rollout_bot_work_seconds",
    "How long queued listener work ran, by listener function and outcome (ok, failed).",
    ["listener", "outcome"],
    buckets=LATENCY_BUCKETS,
)
WORK_WAIT_SECONDS = Histogram(
    "rollout_bot_work_wait_seconds",
    "How long queued work waited before a work process ran it, by listener function.",
    ["listener"],
    buckets=LATENCY_BUCKETS,
)
WORK_GAVE_UP = Counter(
    "rollout_bot_work_gave_up_total",
    "Queued work dropped after WORK_ATTEMPTS claims that never finished (the person is told).",
    ["listener"],
)
OUTBOX_DELIVERED = Counter("rollout_bot_outbox_delivered_total", "Announcements posted to Slack.")
OUTBOX_FAILED = Counter(
    "rollout_bot_outbox_failed_total", "Announcements given up for good, by Slack error code.", ["error"]
)
OUTBOX_RETRIED = Counter(
    "rollout_bot_outbox_retried_total",
    "Announcement attempts that will be tried again (rate limits, 5xx, lost connections), by error.",
    ["error"],
)
DUE_JOB_LAG = Histogram(
    "rollout_bot_due_job_lag_seconds",
    "How late a due job (digest, reminder, watch, flag retry) started after its due time, by kind.",
    ["kind"],
    buckets=LAG_BUCKETS,
)
DUE_JOBS = Counter(
    "rollout_bot_due_jobs_total", "Due jobs run, by kind and outcome (ok, failed).", ["kind", "outcome"]
)
DATADOG_SECONDS = Histogram(
    "rollout_bot_datadog_query_seconds",
    "Datadog metric queries by outcome (ok, no_data, error, timeout): latency and, as _count, calls.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
FLAG_CALLS = Counter(
    "rollout_bot_flag_calls_total",
    "Calls to the feature-flag service by provider, operation (read, set_percent, turn_off, check) and outcome (ok, error).",
    ["provider", "operation", "outcome"],
)
FLAG_ERRORS = Counter(
    "rollout_bot_flag_errors_total",
    "Failed calls to the feature-flag service by provider and operation.",
    ["provider", "operation"],
)
GATE_DECISIONS = Counter(
    "rollout_bot_gate_decisions_total",
    "Advance decisions: advanced, blocked, overridden (advance anyway).",
    ["decision"],
)
TRIGGERS_FIRED = Counter(
    "rollout_bot_triggers_fired_total",
    "Rollback triggers that fired, by where they were seen (watch, advance) and the action (pause, rollback).",
    ["source", "action"],
)

_CODE = re.compile(r"[^a-z0-9_]+")


def error_label(code: str) -> str:
    """A Slack error code (or an exception's class name) as a bounded label value."""
    cleaned = _CODE.sub("_", code.strip().lower().split(",")[0]).strip("_")
    return cleaned[:40] or "unknown"


@contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[dict[str, str]]:
    """Observes the block's duration; the block may set labels (e.g. its outcome) in the dict."""
    given = dict(labels)
    start = time.perf_counter()
    try:
        yield given
    finally:
        histogram.labels(**given).observe(time.perf_counter() - start)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV, "").strip())


def exposition() -> bytes:
    """Every process's values: the multiprocess files when serve set them up, otherwise this
    process's own registry."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_exited(pid: int) -> None:
    """Gunicorn's child_exit hook and the end of the work process: drop a dead process's live gauges."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
