"""APScheduler drives two named jobs; what is due lives in the database, so restarts lose
nothing and replicas never run the same work twice.

- `outbox`: delivers queued announcements (every few seconds, and at once after a commit that
  queued some);
- `due-work`: claims due rows of `due_job` (digests, reminders, the trigger watch) and runs
  them, each rollout's failure logged and contained (bot/delivery/jobs.py); then, apart from
  that tick, the digests' progress charts it queued (bot/delivery/charts.py).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler

from bot.delivery import charts, jobs, outbox
from bot.services import Services
from bot.usecases.announcing import QUEUED

log = logging.getLogger(__name__)

OUTBOX_JOB = "outbox"
DUE_JOB = "due-work"


def drain_outbox(svc: Services) -> int:
    """Delivers until nothing due is left (rows queued while a batch was out go too)."""
    total = 0
    while True:
        sent = outbox.deliver_due(svc)
        total += sent
        if sent < outbox.BATCH:
            return total


class Scheduler:
    def __init__(self, svc: Services, *, outbox_seconds: float = 5.0, due_seconds: float = 30.0) -> None:
        self.svc = svc
        self._scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
        )
        self._scheduler.add_job(
            self._outbox, "interval", seconds=outbox_seconds, id=OUTBOX_JOB, name=OUTBOX_JOB
        )
        self._scheduler.add_job(self._due, "interval", seconds=due_seconds, id=DUE_JOB, name=DUE_JOB)
        self._wake = threading.Event()
        svc.db.after_commit.append(self._after_commit)

    def start(self) -> None:
        self._scheduler.start()
        self.kick()  # whatever a previous process left queued goes out now

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)

    def kick(self) -> None:
        # A run already under way sees the flag and drains once more, so no wake-up is lost
        # to APScheduler's one-instance rule.
        self._wake.set()
        if self._scheduler.running:
            self._scheduler.modify_job(OUTBOX_JOB, next_run_time=datetime.now(self._scheduler.timezone))

    def _after_commit(self, info: dict[str, object]) -> None:
        if info.pop(QUEUED, False):
            self.kick()

    def _outbox(self) -> None:
        try:
            while True:
                self._wake.clear()
                drain_outbox(self.svc)
                if not self._wake.is_set():
                    return
        except Exception:
            log.exception("outbox job failed; it runs again at its next tick")

    def _due(self) -> None:
        try:
            jobs.run_due(self.svc)
        except Exception:
            log.exception("due-work job failed; it runs again at its next tick")
        try:
            charts.run_due(self.svc)  # after the tick, so a chart never delays a reminder
        except Exception:
            log.exception("charts job failed; it runs again at its next tick")
