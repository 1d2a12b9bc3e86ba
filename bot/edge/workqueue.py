"""The work behind each ack runs in a process of its own.

The web process only verifies, acks and queues: Bolt hands every lazy listener to
`QueuedLazyRunner`, which stores the request as it arrived in `pending_work`. The work process
(`rollout-bot work`, started by `serve`) claims rows and dispatches each to its own copy of the
app with Bolt's lazy-only headers, so exactly that listener function runs there, as it would
have in a thread. Acks never wait behind Datadog, the database or Slack calls of earlier
requests, and the two processes use the machine's cores instead of sharing one GIL.

Claiming deletes the row in the same transaction: a piece of work runs at most once. If the
work process dies mid-way the request is dropped rather than replayed (Slack itself never
resends a command, and replaying a half-done start or advance could surprise more than help).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.lazy_listener.runner import LazyListenerRunner
from slack_sdk.webhook import WebhookClient
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from storage.db import Database
from storage.models import PendingWork, utcnow

log = logging.getLogger(__name__)

LAZY_ONLY = "x-slack-bolt-lazy-only"
LAZY_NAME = "x-slack-bolt-lazy-function-name"
IDLE_POLL_S = 0.05
QUEUE_ATTEMPTS = 2  # and 0.25 s between: the ack must still go out well inside 3 s


class QueuedLazyRunner(LazyListenerRunner):
    def __init__(self, db: Database, logger: logging.Logger) -> None:
        self.db = db
        self.logger = logger

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        headers = {name: list(values) for name, values in request.headers.items()}
        row = {
            "function_name": request.lazy_function_name or "",
            "body": request.raw_body,
            "headers": headers,
            "created_at": utcnow(),
        }
        for attempt in range(QUEUE_ATTEMPTS):
            try:
                with self.db.transaction() as session:
                    session.execute(insert(PendingWork), [row])
                return
            except SQLAlchemyError as exc:
                # A database restart is a blip: wait a moment and try again before giving up.
                self.logger.warning("could not queue %s (try %s): %s", row["function_name"], attempt + 1, exc)
                time.sleep(0.25)
        self._tell_the_user(request)

    def _tell_the_user(self, request: BoltRequest) -> None:
        """The work could not be queued: say so where the person is looking, never silently."""
        url = request.body.get("response_url") if isinstance(request.body, dict) else None
        if not isinstance(url, str) or not url:
            self.logger.error("work %s lost: the database is unreachable", request.lazy_function_name)
            return
        try:
            WebhookClient(url).send(
                text=":warning: I cannot reach my database right now, so nothing was done. Try again in a minute.",
                response_type="ephemeral",
                replace_original=False,
            )
        except OSError as exc:
            self.logger.error("could not tell the user that their request was lost: %s", exc)


def queue_lazy_work(app: App, db: Database) -> None:
    """Makes `app` queue its lazy listeners instead of running them in threads."""
    app.listener_runner.lazy_listener_runner = QueuedLazyRunner(db, logging.getLogger("bot.edge.workqueue"))


def claim(db: Database, limit: int) -> list[PendingWork]:
    with db.transaction() as session:
        stmt = select(PendingWork).order_by(PendingWork.id).limit(limit)
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.scalars(stmt))
        if rows:
            session.execute(delete(PendingWork).where(PendingWork.id.in_([r.id for r in rows])))
    return rows


def run(app: App, work: PendingWork) -> None:
    headers: dict[str, Any] = {**work.headers, LAZY_ONLY: ["1"], LAZY_NAME: [work.function_name]}
    waited = (utcnow() - work.created_at).total_seconds()
    if waited > 2:
        log.warning("work %s (%s) waited %.1f s in the queue", work.id, work.function_name, waited)
    try:
        app.dispatch(BoltRequest(body=work.body, headers=headers))
    except Exception:
        # Listeners answer their own errors (bot/answers.py); this is Bolt itself failing.
        log.exception("work %s (%s) failed", work.id, work.function_name)


class Worker:
    """Claims queued work and runs it on a pool of threads until stopped."""

    def __init__(self, app: App, db: Database, *, threads: int) -> None:
        self.app, self.db, self.threads = app, db, threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="work")
        self._free = threading.Semaphore(threads)
        self._stop = threading.Event()

    def _run_one(self, work: PendingWork) -> None:
        try:
            run(self.app, work)
        finally:
            self._free.release()

    def loop(self) -> None:
        while not self._stop.is_set():
            free = 0
            while self._free.acquire(blocking=False):
                free += 1
            if free == 0:
                self._free.acquire()
                free = 1
            try:
                claimed = claim(self.db, free)
            except Exception:
                log.exception("could not claim queued work; trying again")
                claimed = []
                time.sleep(1)
            for _ in range(free - len(claimed)):
                self._free.release()
            for work in claimed:
                self._pool.submit(self._run_one, work)
            if not claimed:
                self._stop.wait(IDLE_POLL_S)
        # Work already claimed finishes before the process ends (it runs at most once).
        self._pool.shutdown(wait=True)

    def stop(self) -> None:
        self._stop.set()
