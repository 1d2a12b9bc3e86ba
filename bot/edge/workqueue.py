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

At least once. Claiming leases a row: its lease is a row of its own in `work_lease`
(`claimed_until`, `claimed_by`, one more attempt), written by the claim, which never writes the
queued request's row (on SQLite that would rewrite its body with the queue's write lock held).
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

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from slack_bolt import App, BoltRequest
from sqlalchemy import String, Table, bindparam, delete, exists, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from bot.edge import wakeup
from bot.edge.context import request_scope
from bot.edge.lazy_calls import LazyCalls

# The web process's half, named here too: the queue is one thing to its callers.
from bot.edge.queuing import Delivery as Delivery
from bot.edge.queuing import QueuedLazyRunner as QueuedLazyRunner
from bot.edge.queuing import QueueWrites as QueueWrites
from bot.edge.queuing import delivery as delivery
from bot.edge.queuing import queue_lazy_work as queue_lazy_work
from bot.edge.queuing import seen_before as seen_before
from bot.edge.work_keys import gave_up_message, tell
from bot.observe import telemetry
from storage.db import Database, handling
from storage.dbapi_statements import Fixed
from storage.models import HandledRequest, PendingWork, SeenRequest, WorkerHeartbeat, WorkLease, utcnow

PENDING = cast(Table, PendingWork.__table__)
LEASE = cast(Table, WorkLease.__table__)
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


@dataclass(frozen=True, slots=True)
class Work:
    """A claimed `pending_work` row and its lease (`work_lease`), as the claim returned them: a
    plain value, since nothing changes it through a session (building and tracking an ORM
    object for each was a tenth of the claim)."""

    id: int
    function_name: str
    body: str
    headers: dict[str, Any]
    created_at: datetime
    request_key: str | None
    attempts: int
    claimed_until: datetime | None
    claimed_by: str | None


# Work's fields: the request's columns, then its lease's.
_REQUEST_COLUMNS = [PENDING.c[name] for name in list(Work.__dataclass_fields__)[:6]]
_LEASE_COLUMNS = [LEASE.c[name] for name in list(Work.__dataclass_fields__)[6:]]


def _at(name: str) -> Any:
    return bindparam(name, type_=LEASE.c.claimed_until.type)


# The claim's statements, built once: constructing them for every claim cost as much as
# running them. A row is claimable when it has no lease (never claimed) or its lease ran out.
_WITH_LEASE = PENDING.outerjoin(LEASE, LEASE.c.work_id == PENDING.c.id)
_CLAIMABLE = or_(LEASE.c.work_id.is_(None), LEASE.c.claimed_until < _at("now"))
_ANY_CLAIMABLE = select(PENDING.c.id).select_from(_WITH_LEASE).where(_CLAIMABLE).limit(1)
_PICK = (
    select(PENDING.c.id)
    .select_from(_WITH_LEASE)
    .where(_CLAIMABLE)
    .order_by(PENDING.c.id)
    .limit(bindparam("limit"))
)
_PICK_LOCKED = _PICK.with_for_update(skip_locked=True, of=PENDING)


def _owned(ids: Any) -> Any:
    """The finished rows to delete: those among `ids` whose lease is still the owner's. Their
    lease rows go with them (ON DELETE CASCADE), in the same statement."""
    held = select(LEASE.c.work_id).where(ids, LEASE.c.claimed_by == bindparam("owner"))
    return delete(PENDING).where(PENDING.c.id.in_(held))


# One row per statement, run as an executemany: an expanding `IN` list is rendered into the
# statement again at every claim, which cost twice as much as deleting the rows one by one.
_DELETE_DONE = _owned(LEASE.c.work_id == bindparam("done"))


def _lease(make: Any, rows: Any) -> Any:
    """An upsert of the leases of `rows` (each a work row's id, the lease's end, its owner and
    1): a first claim inserts the lease row, a claim again takes it over and counts one more
    attempt. It returns the leases, and writes nothing else: not the work row."""
    statement = make(LEASE).from_select(["work_id", "claimed_until", "claimed_by", "attempts"], rows)
    return statement.on_conflict_do_update(
        index_elements=[LEASE.c.work_id],
        set_={
            "claimed_until": statement.excluded.claimed_until,
            "claimed_by": statement.excluded.claimed_by,
            "attempts": LEASE.c.attempts + 1,
        },
        # Postgres: the pick's snapshot may predate another process's lease of a row it then
        # locked (that process committed and let go of the row between the two; the work row
        # itself is not written, so Postgres has no newer version of it to check again). The
        # upsert looks at the lease as it is now, and leaves one that has not run out alone.
        where=LEASE.c.claimed_until < _at("now"),
    )


# Each picked row's new lease: its id, the lease's end, the owner, a first attempt.
_NEW_LEASE = select(PENDING.c.id, _at("until"), bindparam("owner", type_=String), literal(1))


# SQLite: pick and lease in one statement, returning only the leases; the requests (a click's
# is a 24 KB body) are read after COMMIT, outside the write lock: leased, they are this
# process's. Postgres: the rows its own SELECT locked, leased, joined to their requests.
_LEASE_PICKED = _lease(
    sqlite_insert,
    _NEW_LEASE.select_from(_WITH_LEASE).where(_CLAIMABLE).order_by(PENDING.c.id).limit(bindparam("limit")),
).returning(LEASE.c.work_id, *_LEASE_COLUMNS)
_LEASED = _lease(postgres_insert, _NEW_LEASE.where(PENDING.c.id.in_(bindparam("ids", expanding=True))))
_LEASED_CTE = _LEASED.returning(LEASE.c.work_id, *_LEASE_COLUMNS).cte("leased")
_LEASE_IDS = select(*_REQUEST_COLUMNS, *(_LEASED_CTE.c[c.name] for c in _LEASE_COLUMNS)).join_from(
    _LEASED_CTE, PENDING, PENDING.c.id == _LEASED_CTE.c.work_id
)

# On SQLite the claim holds the queue's write lock, and the web process's queuing (so every
# ack) waits for it: its two statements run on the DBAPI connection, compiled once (`Fixed`),
# the rows converted (JSON headers, datetimes, `Work`) only after the commit, and the finished
# rows go in one DELETE (their ids a JSON list) instead of an executemany stepping SQLite once
# per row. Lock held, BEGIN IMMEDIATE to COMMIT, 24 KB bodies, 4 rows done, medians of three
# alternated runs: a claim of 1 row 0.36 → 0.30 ms, of 8 rows 1.10 → 0.95 ms; with SQLite's
# secure_delete=FAST (storage/db.py) 0.25 → 0.17 and 0.93 → 0.77 ms. The rest was SQLite
# rewriting each leased row, body and all (an 8-row claim added 52 pages to the WAL): the
# lease is a row of its own now (`work_lease`), and the claim writes only those small rows
# (1 page) and reads the requests after COMMIT. bench/claim_lock.py against 21bc062, same
# method, 300 claims a run: 1 row 0.177 → 0.124 ms, 8 rows 0.720 → 0.145 ms. Reading the
# requests inside the lock instead held it 0.155 / 0.211 ms, for 0.06 ms less of the claim's
# CPU (after COMMIT 0.296 / 0.411 ms a claim, before the change 0.259 / 0.865 ms).
_DONE_IDS = func.json_each(bindparam("done_ids", type_=String)).table_valued("value")
_DELETE_DONE_LISTED = Fixed(_owned(LEASE.c.work_id.in_(select(_DONE_IDS.c.value))))
_LEASE_FIXED = Fixed(_LEASE_PICKED)
_LEASED_IDS = func.json_each(bindparam("ids", type_=String)).table_valued("value")
_REQUESTS = Fixed(select(*_REQUEST_COLUMNS).where(PENDING.c.id.in_(select(_LEASED_IDS.c.value))))


def claim(db: Database, limit: int, *, lease_s: float, owner: str, done: Collection[int] = ()) -> list[Work]:
    """Leases up to `limit` rows nobody holds: never claimed, or their lease ran out. Rows in
    `done` (work finished since the last claim) are deleted in the same transaction.

    Nothing to claim is found by a read, without the write lock: on SQLite the web process's
    queuing waits for that lock, so an idle work process must not take it to learn nothing.
    The claim writes lease rows only (`work_lease`), never the queued request's row: on SQLite
    one statement (`INSERT … SELECT … ON CONFLICT DO UPDATE … RETURNING`) on a bare
    connection, no ORM session, load or flush. On SQLite it and the `DELETE` run on the DBAPI
    connection, and the requests are read and the rows converted only after `COMMIT`: the web
    process's queue writes, and so the acks, wait while a claim holds the lock."""
    now = utcnow()
    if not done:
        with db.connected() as conn:
            if conn.scalar(_ANY_CLAIMABLE, {"now": now}) is None:
                return []
    params = {"now": now, "limit": limit, "owner": owner, "until": now + timedelta(seconds=lease_s)}
    if db.dialect == "postgresql":
        return _claim_postgres(db, params, done)
    with db.writing() as conn:
        if done:
            _DELETE_DONE_LISTED.run(conn, {"done_ids": json.dumps(list(done)), "owner": owner})
        fetched, _ = _LEASE_FIXED.fetch(conn, params)
    if not fetched.rows:
        return []
    leases = {row[0]: row[1:] for row in fetched.converted()}
    with db.connected() as conn:
        requests = _REQUESTS.all(conn, {"ids": json.dumps(list(leases))})
    # A leased row is gone only if its holder deleted it: none of this claim's.
    return sorted((Work(*row, *leases[row[0]]) for row in requests), key=lambda row: row.id)


def _claim_postgres(db: Database, params: dict[str, Any], done: Collection[int]) -> list[Work]:
    with db.writing() as conn:
        if done:
            conn.execute(_DELETE_DONE, [{"done": row_id, "owner": params["owner"]} for row_id in done])
        # The rows are picked (and locked) by a statement of their own: as a subquery of the
        # INSERT, Postgres may run a LIMIT … SKIP LOCKED more than once and lease more rows.
        picked = list(conn.scalars(_PICK_LOCKED, params))
        if not picked:
            return []
        rows = [Work(*row) for row in conn.execute(_LEASE_IDS, {**params, "ids": picked})]
    return sorted(rows, key=lambda row: row.id)


def renew(db: Database, ids: list[int], *, lease_s: float, owner: str) -> None:
    if not ids:
        return
    with db.writing() as conn:
        conn.execute(
            update(LEASE)
            .where(LEASE.c.work_id.in_(ids), LEASE.c.claimed_by == owner)
            .values(claimed_until=utcnow() + timedelta(seconds=lease_s))
        )


def finish(db: Database, work: Work) -> None:
    """Deletes the row, and its lease with it (ON DELETE CASCADE)."""
    with db.writing() as conn:
        conn.execute(delete(PENDING).where(PENDING.c.id == work.id))


def release(db: Database, work: Work, after_s: float) -> None:
    """Lets the row be claimed again after `after_s` seconds."""
    with db.writing() as conn:
        conn.execute(
            update(LEASE)
            .where(LEASE.c.work_id == work.id)
            .values(claimed_until=utcnow() + timedelta(seconds=after_s))
        )


# Leases whose work row is gone. None while foreign keys are on (the lease goes with its row),
# as they are on every connection the bot opens; a row deleted by hand with the `sqlite3`
# shell, whose foreign keys are off by default, leaves its lease, and SQLite hands the row's
# id to the next request queued when it was the last: that request would start leased.
_ORPHAN_LEASES = delete(LEASE).where(~exists().where(PENDING.c.id == LEASE.c.work_id))


def purge(queue: Database, main: Database | None) -> None:
    """Forgets interactions queued more than a day ago, changes recorded long ago, and leases
    whose work row is gone."""
    now = utcnow()
    with queue.transaction() as session:
        session.execute(delete(SeenRequest).where(SeenRequest.created_at < now - SEEN_FOR))
        session.execute(_ORPHAN_LEASES)
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
            if done:
                with self.db.writing() as conn:
                    conn.execute(_owned(LEASE.c.work_id.in_(done)), {"owner": self.owner})
            beat(self.db, self.owner, stopping=True)
        except SQLAlchemyError:
            log.warning("could not remove the finished work or the heartbeat")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
