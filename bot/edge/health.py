"""Readiness (`/readyz`) and the gauges `/metrics` reads from the database at each scrape.

Liveness (`/healthz`, bot/edge/web.py) only asks whether the database takes writes. Readiness
also asks whether the work behind the acks gets done: a work process beat lately
(`worker_heartbeat`, written by its loop every few seconds) and claims what is queued (the oldest
unclaimed row is young), and the outbox is not stuck (its oldest pending announcement is
younger than a threshold). The same numbers are gauges, computed when Prometheus scrapes, so
they are right whichever process is alive and need no process to keep them up to date.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from bot.observe import Limits
from storage.db import Database, DatabaseGone
from storage.enums import OutboxState
from storage.models import OutboxMessage, PendingWork, WorkerHeartbeat, WorkLease, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backlog:
    queue_depth: int
    queue_oldest_s: float  # of the rows nobody holds; 0 when none
    heartbeat_age_s: float | None  # None: no work process has beaten
    outbox_pending: int
    outbox_oldest_s: float


def _age(then: datetime | None, now: datetime) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


def backlog(main: Database, queue: Database) -> Backlog:
    now = utcnow()
    with queue.reading() as session:
        depth = session.scalar(select(func.count()).select_from(PendingWork)) or 0
        oldest = session.scalar(
            select(func.min(PendingWork.created_at))
            .outerjoin(WorkLease, WorkLease.work_id == PendingWork.id)
            .where(or_(WorkLease.work_id.is_(None), WorkLease.claimed_until < now))
        )
        beat = session.scalar(select(func.max(WorkerHeartbeat.beat_at)))
    with main.reading() as session:
        pending = OutboxMessage.state == OutboxState.PENDING
        count = session.scalar(select(func.count()).select_from(OutboxMessage).where(pending)) or 0
        first = session.scalar(select(func.min(OutboxMessage.created_at)).where(pending))
    return Backlog(
        queue_depth=int(depth),
        queue_oldest_s=_age(oldest, now),
        heartbeat_age_s=_age(beat, now) if beat is not None else None,
        outbox_pending=int(count),
        outbox_oldest_s=_age(first, now),
    )


def readiness(main: Database, queue: Database, limits: Limits) -> tuple[bool, dict[str, Any]]:
    """Each check's state, and whether all pass."""
    checks: dict[str, dict[str, Any]] = {}
    try:
        main.check_writable()
        checks["database"] = {"ok": True, "dialect": main.dialect}
    except (SQLAlchemyError, DatabaseGone) as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        found = backlog(main, queue)
    except (SQLAlchemyError, DatabaseGone) as exc:
        error = {"ok": False, "error": f"could not read: {type(exc).__name__}"}
        checks["work_process"], checks["outbox"] = error, error
    else:
        beat = found.heartbeat_age_s
        alive = beat is not None and beat <= limits.work_silent_s
        claiming = found.queue_oldest_s <= limits.queue_old_s
        checks["work_process"] = {
            "ok": alive and claiming,
            "heartbeat_age_seconds": None if beat is None else round(beat, 1),
            "queue_depth": found.queue_depth,
            "oldest_unclaimed_seconds": round(found.queue_oldest_s, 1),
            "limits": {"heartbeat_seconds": limits.work_silent_s, "unclaimed_seconds": limits.queue_old_s},
        }
        checks["outbox"] = {
            "ok": found.outbox_oldest_s <= limits.outbox_stuck_s,
            "pending": found.outbox_pending,
            "oldest_pending_seconds": round(found.outbox_oldest_s, 1),
            "limit_seconds": limits.outbox_stuck_s,
        }
    ok = all(check["ok"] for check in checks.values())
    if not ok:
        log.warning("not ready: %s", ", ".join(name for name, check in checks.items() if not check["ok"]))
    return ok, {"status": "ok" if ok else "failing", "checks": checks}


class BacklogCollector(Collector):
    """The database's gauges, read at scrape time by the web process."""

    def __init__(self, main: Database, queue: Database) -> None:
        self.main, self.queue = main, queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            found = backlog(self.main, self.queue)
        except (SQLAlchemyError, DatabaseGone) as exc:
            log.warning("metrics: could not read the backlog: %s", type(exc).__name__)
            return
        yield GaugeMetricFamily(
            "rollout_bot_work_queue_depth", "Queued work not yet done (claimed or not).", found.queue_depth
        )
        yield GaugeMetricFamily(
            "rollout_bot_work_queue_oldest_seconds",
            "Age of the oldest queued work nobody holds (0 when none).",
            found.queue_oldest_s,
        )
        if found.heartbeat_age_s is not None:
            yield GaugeMetricFamily(
                "rollout_bot_work_heartbeat_age_seconds",
                "Since the newest heartbeat of any work process.",
                found.heartbeat_age_s,
            )
        yield GaugeMetricFamily(
            "rollout_bot_outbox_pending", "Announcements waiting to be posted.", found.outbox_pending
        )
        yield GaugeMetricFamily(
            "rollout_bot_outbox_oldest_pending_seconds",
            "Age of the oldest announcement waiting to be posted (0 when none).",
            found.outbox_oldest_s,
        )
