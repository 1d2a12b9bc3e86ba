"""The web process's half of the work queue: each lazy listener's request is stored in
`pending_work` before the ack goes out, each interaction once however often Slack delivers it.
The guarantees, and the work process's half, are in bot/edge/workqueue.py.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.lazy_listener.runner import LazyListenerRunner
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.edge import wakeup
from bot.edge.work_keys import command_fingerprint, interaction_id, not_queued_message, tell, work_key
from storage.db import Database, DatabaseGone
from storage.dbapi_writes import Cursor, GroupCommit, Prepared, Writer, row_binds, row_names, row_values
from storage.models import PendingWork, SeenRequest, utcnow

SEEN = cast(Table, SeenRequest.__table__)
PENDING = cast(Table, PendingWork.__table__)
QUEUE_ATTEMPTS = 2  # and 0.25 s between: the ack must still go out well inside 3 s
RETRY_WINDOW = timedelta(minutes=10)


@dataclass
class Delivery:
    """One request through the web process: whether its interaction is remembered as queued
    yet (a listener with several lazy functions queues each, the interaction once), whether
    another delivery of it got there first (then none of its lazy functions is queued), and
    whether an event's work could not be queued (the web layer then answers 503)."""

    remembered: bool = False
    dropped: bool = False  # another delivery of its interaction was queued first
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


def seen_before(session: Session | Connection, key: str, fingerprint: str | None) -> bool:
    """Whether this interaction was queued before (or, for a retried command: the same person
    typed the same command in the same place moments ago)."""
    if session.scalar(select(SEEN.c.key).where(SEEN.c.key == key)) is not None:
        return True
    if fingerprint is None:
        return False
    since = utcnow() - RETRY_WINDOW
    found = session.scalar(
        select(SEEN.c.key).where(SEEN.c.fingerprint == fingerprint, SEEN.c.created_at >= since).limit(1)
    )
    return found is not None


_QUEUE = insert(PENDING)
# Built once: constructing the statement for each request cost more than running it
# (bench/profile_web.py). Its values come with each call.
_REMEMBER = {
    dialect: make(SEEN).on_conflict_do_nothing(index_elements=["key"]).returning(SEEN.c.key)
    for dialect, make in (("postgresql", postgres_insert), ("sqlite", sqlite_insert))
}
_QUEUE_KEYS = ("function_name", "body", "headers", "created_at", "request_key")
_REMEMBER_KEYS = ("key", "fingerprint", "created_at")


class QueueWrites:
    """`remember` and the queue's insert, compiled once for the queue's database and run on its
    pooled DBAPI connection (storage/dbapi_writes.py): through SQLAlchemy's connection they
    cost four times what the database takes to run them, a fifth of the web worker's CPU per
    request (bench/web_cpu.py).

    The requests queued at the same moment share a transaction (`GroupCommit`). On Postgres,
    where each statement is a round trip, `together` writes them all in two: the interactions
    remembered (the statement returns which were new), then the rows. Measured with
    bench/queue_writes.py (16 threads queuing clicks, three alternated pairs): 2,481–2,669 →
    4,654–5,778 writes a second, p50 6.0 → 3.0 ms, CPU per write 0.24 → 0.14 ms. On SQLite a
    statement is a call into the library, and the multi-row statements' Python side cost more
    than they saved (7,426–7,796 → 6,170–6,986 writes a second): there each write runs its own
    statements in the shared transaction.
    """

    def __init__(self, db: Database) -> None:
        self.writer = Writer(db)
        self.postgres = db.dialect == "postgresql"
        flavour = "postgresql" if self.postgres else "sqlite"
        self._remember = self.writer.prepare(_REMEMBER[flavour], _REMEMBER_KEYS)
        self.queue = self.writer.prepare(_QUEUE, _QUEUE_KEYS)
        # Multi-row statements, compiled once for each batch size that comes.
        self._many: dict[tuple[str, int], Prepared] = {}
        self.commits: GroupCommit = GroupCommit(
            self.writer, together=self.together if self.postgres else None
        )

    def remember(self, cursor: Cursor, key: str, fingerprint: str | None) -> bool:
        """Records the interaction as queued; False if another delivery of it got there first."""
        values = {"key": key, "fingerprint": fingerprint, "created_at": utcnow()}
        return cursor.execute(self._remember, values) is not None

    def together(self, cursor: Cursor, writes: list[QueueWrite]) -> list[bool]:
        """What each write alone would have done, in two statements (Postgres): the first
        delivery of each interaction queued (the first of the batch, if it came twice in it),
        the others dropped."""
        keys: dict[str, str | None] = {}
        # In one order, so two web processes remembering the same keys take their row locks
        # alike (the other way round, one of them would be told of a deadlock).
        for write in sorted(writes, key=lambda w: w.interaction or ""):
            if write.interaction is not None:
                keys.setdefault(write.interaction, write.fingerprint)
        new = self._remember_new(cursor, keys) if keys else set()
        firsts: list[bool] = []
        for write in writes:
            first = write.interaction is None or write.interaction in new
            new.discard(write.interaction)  # a second delivery in the same batch is dropped
            firsts.append(first)
        rows = [write.row for write, first in zip(writes, firsts, strict=True) if first]
        if rows:
            cursor.execute(self._prepared("queue", len(rows)), row_values(_QUEUE_KEYS, rows))
        return firsts

    def _remember_new(self, cursor: Cursor, keys: dict[str, str | None]) -> set[str]:
        """Remembers the keys; those not remembered before."""
        now = utcnow()
        rows = [{"key": key, "fingerprint": fp, "created_at": now} for key, fp in keys.items()]
        found = cursor.all(self._prepared("remember", len(rows)), row_values(_REMEMBER_KEYS, rows))
        return {key for (key,) in found}

    def _prepared(self, kind: str, count: int) -> Prepared:
        found = self._many.get((kind, count))
        if found is None:  # two threads may both compile it: the same statement either way
            found = self._many[(kind, count)] = self.writer.prepare(*self._statement(kind, count))
        return found

    def _statement(self, kind: str, count: int) -> tuple[Any, list[str]]:
        if kind == "queue":
            rows = row_binds(PENDING, _QUEUE_KEYS, count)
            return insert(PENDING).values(rows), row_names(_QUEUE_KEYS, count)
        statement = (
            postgres_insert(SEEN)
            .values(row_binds(SEEN, _REMEMBER_KEYS, count))
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(SEEN.c.key)
        )
        return statement, row_names(_REMEMBER_KEYS, count)


@dataclass(slots=True)
class QueueWrite:
    """One request's queue write: its row, and the interaction to remember first (None: the
    request has none, or an earlier lazy function of the same request remembered it)."""

    writes: QueueWrites
    row: dict[str, Any]
    interaction: str | None
    fingerprint: str | None

    def __call__(self, cursor: Cursor) -> bool:
        """Alone: True if queued, False if another delivery of the interaction was first."""
        first = self.interaction is None or self.writes.remember(cursor, self.interaction, self.fingerprint)
        if first:
            cursor.execute(self.writes.queue, self.row)
        return first


class QueuedLazyRunner(LazyListenerRunner):
    def __init__(
        self,
        db: Database,
        logger: logging.Logger,
        client: WebClient | None = None,
        nudger: wakeup.Nudger | None = None,
    ) -> None:
        self.db = db
        self.logger = logger
        self.client = client
        self.nudger = nudger or wakeup.Nudger(None)
        self.writes = QueueWrites(db)

    def start(self, function: Callable[..., None], request: BoltRequest) -> None:
        name = request.lazy_function_name or ""
        headers = {name: list(values) for name, values in request.headers.items()}
        now = utcnow()
        row = {
            "function_name": name,
            # Socket Mode hands Bolt the payload parsed, without a raw body: queue it as JSON.
            "body": request.raw_body or json.dumps(request.body),
            "headers": headers,
            "created_at": now,
            "request_key": (request_key := work_key(request.body, name)),
        }
        state = _delivery.get() or Delivery()
        if state.dropped:
            self.logger.info("%s: another delivery was queued first, %s dropped too", request_key, name)
            return
        interaction = None if state.remembered else interaction_id(request.body)
        fingerprint = None if interaction is None else command_fingerprint(request.body)
        queue = QueueWrite(self.writes, row, interaction, fingerprint)

        for attempt in range(QUEUE_ATTEMPTS):
            try:
                self.db.check_same_file()
                first = self.writes.commits.run(queue)
                state.remembered, state.dropped = first, not first
                if first:
                    self.nudger.nudge()  # after the commit: the row is there to claim
                else:
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


def _shallow_lazy_request(request: BoltRequest, lazy_func_name: str) -> BoltRequest:
    # Bolt's own method's parameter names, so a call by keyword works too.
    copied = copy.copy(request)
    copied.lazy_only = True
    copied.lazy_function_name = lazy_func_name
    return copied


def queue_lazy_work(app: App, db: Database) -> None:
    """Makes `app` queue its lazy listeners instead of running them in threads, each
    interaction once however often Slack delivers it."""
    runner = QueuedLazyRunner(
        db, logging.getLogger("bot.edge.workqueue"), app.client, wakeup.Nudger(wakeup.configured_address())
    )
    app.listener_runner.lazy_listener_runner = runner
    if hasattr(app.listener_runner, "_build_lazy_request"):
        # Bolt deep-copies the whole request for each lazy listener, for the thread that would
        # run it; the queue stores the raw body and headers on this very thread instead, so a
        # shallow copy does (the deep copy was a tenth of the web worker's CPU). Where a
        # Bolt version has no such method, it keeps its own.
        setattr(app.listener_runner, "_build_lazy_request", _shallow_lazy_request)  # noqa: B010

    app.middleware(QueueOnce(db, runner.logger))


class QueueOnce(Middleware):
    """Acks a retry of work already queued without queuing it again.

    Only Slack's retries are looked up before the ack: a first delivery has nothing to find,
    and one read per request was a sixth of the web worker's CPU. Another delivery of the
    same body without the header (a replay) runs its ack again, which has no side effect, and
    is dropped where its work is queued (`remember`). A `Middleware` rather than a decorated
    function: Bolt builds every possible argument of a function middleware for each request."""

    def __init__(self, db: Database, logger: logging.Logger) -> None:
        self.db = db
        self.logger = logger

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        retry = req.headers.get("x-slack-retry-num")
        interaction = interaction_id(req.body) if retry else None
        if interaction is not None:
            fingerprint = command_fingerprint(req.body)
            try:
                with self.db.connected() as conn:
                    again = seen_before(conn, interaction, fingerprint)
            except SQLAlchemyError:
                again = False  # queuing will find out, and say so
            if again:
                # Its work is queued or done: ack, and say nothing twice.
                self.logger.info("%s already queued: retry %s dropped", interaction, retry)
                return BoltResponse(status=200, body="")
        return next()
