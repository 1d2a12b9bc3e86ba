"""The work behind each ack runs in a process of its own, at least once and changing things once.

The web process only verifies, acks and queues: Bolt hands every lazy listener to
`QueuedLazyRunner` (bot/edge/queuing.py), which stores the request as it arrived in
`pending_work` and nudges the work process (bot/edge/wakeup.py). The work process
(`rollout-bot work`, started by `serve`) claims rows and dispatches each to its own copy of the
app with Bolt's lazy-only headers, so exactly that listener function runs there, as it would
have in a thread: called directly with Bolt's arguments, matched only among the listeners
with a function of that name (`bot/edge/lazy_calls.py`), not through the whole chain again. Acks never wait behind Datadog, the database or Slack calls of earlier
requests, and the two processes use the machine's cores instead of sharing one GIL. The work
process waits for a nudge between claims and looks at the queue every second without one
(work queued by another replica, a lost nudge); on SQLite it takes the queue's write lock only
when there is something to claim, as the web process's queuing waits for that lock.

At least once (the statements: bot/edge/leases.py). Claiming leases a row: its lease is a row
of its own in `work_lease` (`claimed_until`, `claimed_by`, one more attempt), written by the
claim, which never writes the queued request's row (on SQLite that would rewrite its body with
the queue's write lock held).
On Postgres the claim locks the rows it picks `FOR UPDATE SKIP LOCKED` and takes over only a
lease that has run out, as it is when written, so replicas' work processes share one queue
without two leasing one row. The row is deleted only when its work is done (with the process's
next claim, in one transaction: the claim a nudge for new work starts, or one at most
`DONE_WITHIN_S` later), and its lease in the same statement (ON DELETE CASCADE): no lease
outlives its row. The process running it renews the lease while it runs; a process that dies
(kill -9, a crashed host, another replica's process) leaves the lease to run out
(`WORK_LEASE_SECONDS`), and any work process claims the row again. A row claimed
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

import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, cast

from slack_bolt import App, BoltRequest
from sqlalchemy import Table, delete, insert
from sqlalchemy.exc import SQLAlchemyError

from bot.edge import wakeup
from bot.edge.context import request_scope
from bot.edge.lazy_calls import LazyCalls

# The leases (claim, renew, release, finish), named here too: the queue is one thing to its
# callers, as is the web process's half.
from bot.edge.leases import ORPHAN_LEASES, forget_done
from bot.edge.leases import Work as Work
from bot.edge.leases import claim as claim
from bot.edge.leases import finish as finish
from bot.edge.leases import release as release
from bot.edge.leases import renew as renew
from bot.edge.queuing import Delivery as Delivery
from bot.edge.queuing import QueuedLazyRunner as QueuedLazyRunner
from bot.edge.queuing import QueueWrites as QueueWrites
from bot.edge.queuing import delivery as delivery
from bot.edge.queuing import queue_lazy_work as queue_lazy_work
from bot.edge.queuing import seen_before as seen_before
from bot.edge.work_keys import gave_up_message, tell
from bot.observe import telemetry
from storage.db import Database, handling
from storage.models import HandledRequest, SeenRequest, WorkerHeartbeat, utcnow

HEARTBEAT = cast(Table, WorkerHeartbeat.__table__)

log = logging.getLogger(__name__)

LAZY_ONLY = "x-slack-bolt-lazy-only"
LAZY_NAME = "x-slack-bolt-lazy-function-name"
IDLE_POLL_S = 0.2  # without wake-ups (bot/edge/wakeup.py); a read, not the write lock
SEEN_FOR = timedelta(days=1)  # Slack retries within minutes; a day is plenty
HANDLED_FOR = timedelta(days=7)  # longer than any row waits in the queue
PURGE_EVERY_S = 600.0
HEARTBEAT_EVERY_S = 5.0  # how often the loop says it is alive (bot/edge/health.py reads it)
RETRY_AFTER_S = 5.0  # a row whose dispatch raised waits this long times its attempts
DONE_WITHIN_S = 0.1  # a finished row is deleted by the next claim, at most this much later


def purge(queue: Database, main: Database | None) -> None:
    """Forgets interactions queued more than a day ago, changes recorded long ago, and leases
    whose work row is gone."""
    now = utcnow()
    with queue.transaction() as session:
        session.execute(delete(SeenRequest).where(SeenRequest.created_at < now - SEEN_FOR))
        session.execute(ORPHAN_LEASES)
    if main is not None:
        with main.transaction() as session:
            session.execute(delete(HandledRequest).where(HandledRequest.at < now - HANDLED_FOR))


def request_of(work: Work) -> BoltRequest:
    headers: dict[str, Any] = {**work.headers, LAZY_ONLY: ["1"], LAZY_NAME: [work.function_name]}
    return BoltRequest(body=work.body, headers=headers)


def run(app: App | LazyCalls, work: Work, request: BoltRequest | None = None) -> bool:
    """Runs the work; False when Bolt itself failed (listeners answer their own errors)."""
    waited = (utcnow() - work.created_at).total_seconds()
    telemetry.WORK_WAIT_SECONDS.labels(work.function_name).observe(max(0.0, waited))
    if waited > 2:
        log.warning("work %s (%s) waited %.1f s in the queue", work.id, work.function_name, waited)
    with telemetry.timed(telemetry.WORK_SECONDS, listener=work.function_name, outcome="ok") as labels:
        try:
            with handling(work.request_key):
                app.dispatch(request or request_of(work))
        except Exception:
            labels["outcome"] = "failed"
            log.exception("work %s (%s) failed", work.id, work.function_name)
            return False
    return True


def beat(db: Database, owner: str, *, stopping: bool = False) -> None:
    """The work process's heartbeat row: written while its loop runs, removed when it stops."""
    with db.writing() as conn:
        conn.execute(delete(HEARTBEAT).where(HEARTBEAT.c.owner == owner))
        if not stopping:
            conn.execute(insert(HEARTBEAT), [{"owner": owner, "beat_at": utcnow()}])


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
        wake_address: str | None = None,
    ) -> None:
        self.app, self.db, self.threads, self.main = app, db, threads, main
        self._calls = LazyCalls(app)  # the listener function each row names, called directly
        self.lease_s, self.attempts = lease_s, attempts
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="work")
        self._free = threading.Semaphore(threads)
        self._stop = threading.Event()
        self._running: set[int] = set()
        # Finished, to be deleted with the next claim (one transaction for both): still
        # leased, and renewed, until then.
        self._done: set[int] = set()
        self._lock = threading.Lock()
        # Set by a nudge from the web process (bot/edge/wakeup.py) or stop(): the loop claims
        # again at once instead of at its next poll.
        self._wake = threading.Event()
        self.wake_address = wake_address

    def _already_done(self, work: Work) -> bool:
        """A row claimed again whose change is committed: its process died after the commit."""
        if work.attempts <= 1 or not work.request_key or self.main is None:
            return False
        return self.main.was_handled(work.request_key)

    def _run_one(self, work: Work) -> None:
        request = request_of(work)  # parsed once, for the log context and the dispatch
        with request_scope(request.body, job=work.function_name, work_id=work.id):
            self._run_scoped(work, request)

    def _run_scoped(self, work: Work, request: BoltRequest) -> None:
        done = False
        try:
            if self._already_done(work):
                log.info(
                    "work %s (%s) was already done before its process stopped", work.id, work.request_key
                )
                done = True
            else:
                done = run(self._calls, work, request)
            if not done:
                release(self.db, work, RETRY_AFTER_S * work.attempts)
        except Exception:
            # The row stays leased and is claimed again when the lease runs out.
            log.exception("work %s: could not record how it went", work.id)
        finally:
            with self._lock:
                self._running.discard(work.id)
                if done:
                    self._done.add(work.id)
            # No wake-up: the loop looks again within DONE_WITHIN_S while work runs or waits
            # to be deleted, and a nudge for new work comes sooner under load; either claim
            # deletes this row. Waking the loop here cost a write transaction per request.
            self._free.release()

    def _give_up(self, work: Work) -> None:
        telemetry.WORK_GAVE_UP.labels(work.function_name).inc()
        log.error("work %s (%s) gave up after %s attempts", work.id, work.function_name, work.attempts - 1)
        try:
            if not finish(self.db, work):
                return  # its lease ran out, and another claim holds it now: that one tells
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
                ids = sorted(self._running | self._done)
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

    def _take_done(self) -> list[int]:
        with self._lock:
            done = sorted(self._done)
            self._done.clear()
        return done

    def _claim(self, free: int) -> list[Work]:
        done = self._take_done()
        try:
            return claim(self.db, free, lease_s=self.lease_s, owner=self.owner, done=done)
        except Exception:
            log.exception("could not claim queued work; trying again")
            with self._lock:
                self._done.update(done)  # deleted with the next claim instead
            self._stop.wait(1)
            return []

    def loop(self) -> None:
        listener = wakeup.listen(self.wake_address, self._wake)
        idle_s = wakeup.FALLBACK_POLL_S if listener else IDLE_POLL_S
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
            self._wake.clear()  # before the claim: a nudge after it is not missed
            claimed = self._claim(free)
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
                with self._lock:
                    busy = bool(self._running or self._done)
                self._wake.wait(DONE_WITHIN_S if busy else idle_s)
        # Work already claimed finishes before the process ends.
        self._pool.shutdown(wait=True)
        if listener is not None:
            listener.close()
        done = self._take_done()
        try:
            forget_done(self.db, done, self.owner)
            beat(self.db, self.owner, stopping=True)
        except SQLAlchemyError:
            log.warning("could not remove the finished work or the heartbeat")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
