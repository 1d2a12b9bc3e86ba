"""The work behind each ack runs in a process of its own, at least once and changing things once.

The web process only verifies, acks and queues: Bolt hands every lazy listener to
`QueuedLazyRunner`, which stores the request as it arrived in `pending_work`. The work process
(`rollout-bot work`, started by `serve`) claims rows and dispatches each to its own copy of the
app with Bolt's lazy-only headers, so exactly that listener function runs there, as it would
have in a thread. Acks never wait behind Datadog, the database or Slack calls of earlier
requests, and the two processes use the machine's cores instead of sharing one GIL.

At least once. Claiming leases a row (`claimed_until`, `claimed_by`, one more attempt; on
Postgres `FOR UPDATE SKIP LOCKED`, so replicas' work processes share one queue) and the row
is deleted only when its work is done. The process running it renews the lease while it runs;
a process that dies (kill -9, a crashed host, another replica's process) leaves the lease to
run out (`WORK_LEASE_SECONDS`), and any work process claims the row again. A row claimed
`WORK_ATTEMPTS` times without finishing is dropped and the person is told.

Once in effect. Running a request again must not change anything twice: the runner names the
request (`storage.db.handling`, the key of `bot.edge.work_keys`), and the transaction that
commits its change records the key in `handled_request`, unique, beside the change's Event. A
replay's commit conflicts and rolls back (`AlreadyHandled`), and the listener treats that as
done, without a word to the person; a claimed row whose key is already recorded is not even
run. Why the database and not the queue: only the transaction that makes a change can say,
atomically, whether it happened; the queue is another file on SQLite.

Slack's retries and duplicates. Queuing remembers each interaction's key in `seen_request`
(a day long, purged after): a second delivery of a queued interaction (a retry, or the same
body sent twice) is acked and dropped; a retry whose first delivery was never queued is
queued now. A retried slash command whose ids do not match is also matched by who typed what
where within a few minutes. An event whose work cannot be queued is answered 503, so Slack
delivers it again; anything else is acked and the person is told at once (response_url, or a
direct message when the payload has none, as a submitted form).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.lazy_listener.runner import LazyListenerRunner
from slack_sdk import WebClient
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.edge.context import request_scope
from bot.edge.work_keys import (
    command_fingerprint,
    gave_up_message,
    interaction_id,
    not_queued_message,
    tell,
    work_key,
)
from bot.observe import telemetry
from storage.db import Database, DatabaseGone, handling
from storage.models import HandledRequest, PendingWork, SeenRequest, WorkerHeartbeat, utcnow

log = logging.getLogger(__name__)

LAZY_ONLY = "x-slack-bolt-lazy-only"
LAZY_NAME = "x-slack-bolt-lazy-function-name"
IDLE_POLL_S = 0.05
QUEUE_ATTEMPTS = 2  # and 0.25 s between: the ack must still go out well inside 3 s
SEEN_FOR = timedelta(days=1)  # Slack retries within minutes; a day is plenty
HANDLED_FOR = timedelta(days=7)  # longer than any row waits in the queue
RETRY_WINDOW = timedelta(minutes=10)
PURGE_EVERY_S = 600.0
HEARTBEAT_EVERY_S = 5.0  # how often the loop says it is alive (bot/edge/health.py reads it)
RETRY_AFTER_S = 5.0  # a row whose dispatch raised waits this long times its attempts


@dataclass
class Delivery:
    """One request through the web process: whether its interaction is remembered as queued
    yet (a listener with several lazy functions queues each, the interaction once), and
    whether an event's work could not be queued (the web layer then answers 503)."""

    remembered: bool = False
    event_not_queued: bool = False


_delivery: ContextVar[Delivery | None] = ContextVar("delivery", default=None)


@contextmanager
def delivery() -> Iterator[Delivery]:
    """The scope of one request: Bolt runs its middleware and listeners on this thread."""
    state = Delivery()
    token = _delivery.set(state)
    try:
        yield state
    finally:
        _delivery.reset(token)


def seen_before(session: Session, key: str, fingerprint: str | None) -> bool:
    """Whether this interaction was queued before (or, for a retried command: the same person
    typed the same command in the same place moments ago)."""
    if session.get(SeenRequest, key) is not None:
        return True
    if fingerprint is None:
        return False
    since = utcnow() - RETRY_WINDOW
    found = session.scalar(
        select(SeenRequest.key)
        .where(SeenRequest.fingerprint == fingerprint, SeenRequest.created_at >= since)
        .limit(1)
    )
    return found is not None


def remember(session: Session, dialect: str, key: str, fingerprint: str | None) -> bool:
    """Records the interaction as queued; False if another delivery of it got there first."""
    make = postgres_insert if dialect == "postgresql" else sqlite_insert
    stmt = make(SeenRequest).values(key=key, fingerprint=fingerprint, created_at=utcnow())
    inserted = stmt.on_conflict_do_nothing(index_elements=["key"]).returning(SeenRequest.key)
    return session.execute(inserted).scalar() is not None


class QueuedLazyRunner(LazyListenerRunner):
    def __init__(self, db: Database, logger: logging.Logger, client: WebClient | None = None) -> None:
        self.db = db
        self.logger = logger
        self.client = client

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        name = request.lazy_function_name or ""
        headers = {name: list(values) for name, values in request.headers.items()}
        row = {
            "function_name": name,
            # Socket Mode hands Bolt the payload parsed, without a raw body: queue it as JSON.
            "body": request.raw_body or json.dumps(request.body),
            "headers": headers,
            "created_at": utcnow(),
            "request_key": work_key(request.body, name),
        }
        state = _delivery.get() or Delivery()
        interaction = interaction_id(request.body)
        for attempt in range(QUEUE_ATTEMPTS):
            try:
                self.db.check_same_file()
                with self.db.transaction() as session:
                    first = (
                        interaction is None
                        or state.remembered
                        or remember(session, self.db.dialect, interaction, command_fingerprint(request.body))
                    )
                    if first:
                        session.execute(insert(PendingWork), [row])
                state.remembered = True
                if not first:
                    self.logger.info("%s came again while it was being queued: dropped", interaction)
                return
            except (SQLAlchemyError, DatabaseGone) as exc:
                # A database restart is a blip: wait a moment and try again before giving up.
                self.logger.warning("could not queue %s (try %s): %s", name, attempt + 1, exc)
                if attempt + 1 < QUEUE_ATTEMPTS:
                    time.sleep(0.25)
        self._not_queued(name, request, state)

    def _not_queued(self, name: str, request: BoltRequest, state: Delivery) -> None:
        """Never silently: an event is refused so Slack sends it again; a person is told."""
        self.logger.error("work %s not queued: the queue database is unreachable", name)
        body = request.body
        if isinstance(body, dict) and body.get("type") == "event_callback":
            state.event_not_queued = True
            return
        tell(body, not_queued_message(name, body), self.client)


def queue_lazy_work(app: App, db: Database) -> None:
    """Makes `app` queue its lazy listeners instead of running them in threads, each
    interaction once however often Slack delivers it."""
    runner = QueuedLazyRunner(db, logging.getLogger("bot.edge.workqueue"), app.client)
    app.listener_runner.lazy_listener_runner = runner

    @app.middleware
    def queue_once(request: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse:
        interaction = interaction_id(request.body)
        retry = request.headers.get("x-slack-retry-num")
        if interaction is not None:
            fingerprint = command_fingerprint(request.body) if retry else None
            try:
                with db.reading() as session:
                    again = seen_before(session, interaction, fingerprint)
            except SQLAlchemyError:
                again = False  # queuing will find out, and say so
            if again:
                # Its work is queued or done: ack, and say nothing twice.
                runner.logger.info(
                    "%s already queued: %s dropped",
                    interaction,
                    f"retry {retry}" if retry else "a second delivery",
                )
                return BoltResponse(status=200, body="")
        return next()


def claim(db: Database, limit: int, *, lease_s: float, owner: str) -> list[PendingWork]:
    """Leases up to `limit` rows nobody holds: never claimed, or their lease ran out."""
    now = utcnow()
    with db.transaction() as session:
        stmt = (
            select(PendingWork)
            .where(or_(PendingWork.claimed_until.is_(None), PendingWork.claimed_until < now))
            .order_by(PendingWork.id)
            .limit(limit)
        )
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.scalars(stmt))
        for row in rows:
            row.claimed_until = now + timedelta(seconds=lease_s)
            row.claimed_by = owner
            row.attempts += 1
    return rows


def renew(db: Database, ids: list[int], *, lease_s: float, owner: str) -> None:
    if not ids:
        return
    with db.transaction() as session:
        session.execute(
            update(PendingWork)
            .where(PendingWork.id.in_(ids), PendingWork.claimed_by == owner)
            .values(claimed_until=utcnow() + timedelta(seconds=lease_s))
        )


def finish(db: Database, work: PendingWork) -> None:
    with db.transaction() as session:
        session.execute(delete(PendingWork).where(PendingWork.id == work.id))


def release(db: Database, work: PendingWork, after_s: float) -> None:
    """Lets the row be claimed again after `after_s` seconds."""
    with db.transaction() as session:
        session.execute(
            update(PendingWork)
            .where(PendingWork.id == work.id)
            .values(claimed_until=utcnow() + timedelta(seconds=after_s))
        )


def purge(queue: Database, main: Database | None) -> None:
    """Forgets interactions queued more than a day ago, and changes recorded long ago."""
    now = utcnow()
    with queue.transaction() as session:
        session.execute(delete(SeenRequest).where(SeenRequest.created_at < now - SEEN_FOR))
    if main is not None:
        with main.transaction() as session:
            session.execute(delete(HandledRequest).where(HandledRequest.at < now - HANDLED_FOR))


def request_of(work: PendingWork) -> BoltRequest:
    headers: dict[str, Any] = {**work.headers, LAZY_ONLY: ["1"], LAZY_NAME: [work.function_name]}
    return BoltRequest(body=work.body, headers=headers)


def run(app: App, work: PendingWork) -> bool:
    """Runs the work; False when Bolt itself failed (listeners answer their own errors)."""
    waited = (utcnow() - work.created_at).total_seconds()
    telemetry.WORK_WAIT_SECONDS.labels(work.function_name).observe(max(0.0, waited))
    if waited > 2:
        log.warning("work %s (%s) waited %.1f s in the queue", work.id, work.function_name, waited)
    with telemetry.timed(telemetry.WORK_SECONDS, listener=work.function_name, outcome="ok") as labels:
        try:
            with handling(work.request_key):
                app.dispatch(request_of(work))
        except Exception:
            labels["outcome"] = "failed"
            log.exception("work %s (%s) failed", work.id, work.function_name)
            return False
    return True


def beat(db: Database, owner: str, *, stopping: bool = False) -> None:
    """The work process's heartbeat row: written while its loop runs, removed when it stops."""
    with db.transaction() as session:
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.owner == owner))
        if not stopping:
            session.add(WorkerHeartbeat(owner=owner, beat_at=utcnow()))


class Worker:
    """Claims queued work and runs it on a pool of threads until stopped."""

    def __init__(
        self,
        app: App,
        db: Database,
        *,
        threads: int,
        main: Database | None = None,
        lease_s: float = 60.0,
        attempts: int = 3,
    ) -> None:
        self.app, self.db, self.threads, self.main = app, db, threads, main
        self.lease_s, self.attempts = lease_s, attempts
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="work")
        self._free = threading.Semaphore(threads)
        self._stop = threading.Event()
        self._running: set[int] = set()
        self._lock = threading.Lock()

    def _already_done(self, work: PendingWork) -> bool:
        """A row claimed again whose change is committed: its process died after the commit."""
        if work.attempts <= 1 or not work.request_key or self.main is None:
            return False
        return self.main.was_handled(work.request_key)

    def _run_one(self, work: PendingWork) -> None:
        with request_scope(request_of(work).body, job=work.function_name, work_id=work.id):
            self._run_scoped(work)

    def _run_scoped(self, work: PendingWork) -> None:
        try:
            if self._already_done(work):
                log.info(
                    "work %s (%s) was already done before its process stopped", work.id, work.request_key
                )
                done = True
            else:
                done = run(self.app, work)
            if done:
                finish(self.db, work)
            else:
                release(self.db, work, RETRY_AFTER_S * work.attempts)
        except Exception:
            # The row stays leased and is claimed again when the lease runs out.
            log.exception("work %s: could not record how it went", work.id)
        finally:
            with self._lock:
                self._running.discard(work.id)
            self._free.release()

    def _give_up(self, work: PendingWork) -> None:
        telemetry.WORK_GAVE_UP.labels(work.function_name).inc()
        log.error("work %s (%s) gave up after %s attempts", work.id, work.function_name, work.attempts - 1)
        try:
            finish(self.db, work)
        except SQLAlchemyError:
            log.exception("work %s: could not drop it", work.id)
            return
        body = request_of(work).body
        tell(body, gave_up_message(work.function_name, body, work.attempts - 1), self.app.client, wait=True)

    def _housekeeping(self, now: float, last: dict[str, float]) -> None:
        if now - last["beat"] >= HEARTBEAT_EVERY_S:
            last["beat"] = now
            try:
                beat(self.db, self.owner)
            except SQLAlchemyError:
                log.exception("could not write the heartbeat")
        if now - last["renew"] >= self.lease_s / 3:
            last["renew"] = now
            with self._lock:
                ids = sorted(self._running)
            try:
                renew(self.db, ids, lease_s=self.lease_s, owner=self.owner)
            except SQLAlchemyError:
                log.exception("could not renew the leases of running work")
        if now - last["purge"] >= PURGE_EVERY_S:
            last["purge"] = now
            try:
                purge(self.db, self.main)
            except SQLAlchemyError:
                log.exception("could not purge old request keys")

    def loop(self) -> None:
        last = {"renew": time.monotonic(), "purge": 0.0 - PURGE_EVERY_S, "beat": 0.0 - HEARTBEAT_EVERY_S}
        while not self._stop.is_set():
            self._housekeeping(time.monotonic(), last)
            free = 0
            while self._free.acquire(blocking=False):
                free += 1
            if free == 0:
                # Wake up for the lease renewals even when every thread is busy.
                if not self._free.acquire(timeout=min(1.0, self.lease_s / 3)):
                    continue
                free = 1
            try:
                claimed = claim(self.db, free, lease_s=self.lease_s, owner=self.owner)
            except Exception:
                log.exception("could not claim queued work; trying again")
                claimed = []
                time.sleep(1)
            for _ in range(free - len(claimed)):
                self._free.release()
            for work in claimed:
                if work.attempts > self.attempts:
                    self._give_up(work)
                    self._free.release()
                    continue
                with self._lock:
                    self._running.add(work.id)
                self._pool.submit(self._run_one, work)
            if not claimed:
                self._stop.wait(IDLE_POLL_S)
        # Work already claimed finishes before the process ends.
        self._pool.shutdown(wait=True)
        try:
            beat(self.db, self.owner, stopping=True)
        except SQLAlchemyError:
            log.warning("could not remove the heartbeat")

    def stop(self) -> None:
        self._stop.set()
