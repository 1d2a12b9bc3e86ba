"""Engine and sessions. SQLite by default (WAL, busy timeout), Postgres through psycopg 3.

Writes are serialised per rollout: on Postgres by `SELECT ... FOR UPDATE` on the rollout row
(see `storage.queries.lock_rollout`), on SQLite by opening write transactions with
`BEGIN IMMEDIATE`, which takes SQLite's single write lock up front instead of failing with
"database is locked" half-way through.

Queued work may run more than once (a work process that dies mid-way leaves its lease to run
out, and the work is claimed again: bot/edge/workqueue.py), so a change must not land twice.
The work runner names the request it runs (`handling(key)`, a context variable); every write
transaction under it that adds an `Event` (each state change writes one) also inserts the key
into `handled_request`, unique, in that same transaction. Run again, that insert conflicts, the
whole transaction rolls back, and `AlreadyHandled` tells the caller the change is already
there. The Event is the marker because every change writes one and nothing else does: reads,
the status message's own bookkeeping and the outbox's stay free to happen again.
A request that commits several changes numbers them (`key`, `key#2`, ...) in the order it makes
them; a replay stops at the first that is already there.
"""

from __future__ import annotations

import json
import os
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, RootTransaction, Table, create_engine, event, insert, text
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from storage import json_text
from storage.models import Event, HandledRequest, utcnow
from storage.urls import DEFAULT_URL, normalize_url

SQLITE_BUSY_TIMEOUT_S = 30
WROTE_EVENT = "wrote_event"

__all__ = [
    "DEFAULT_URL",
    "AlreadyHandled",
    "Database",
    "DatabaseGone",
    "begin_writing",
    "create_db_engine",
    "handling",
    "normalize_url",
    "wrote_events",
]


class AlreadyHandled(Exception):
    """The request being run again already committed this change; nothing was written."""

    def __init__(self, key: str) -> None:
        super().__init__(f"request {key} was already handled")
        self.key = key


@dataclass
class _Request:
    key: str
    committed: int = 0  # changes committed so far in this run

    def next_key(self) -> str:
        return self.key if self.committed == 0 else f"{self.key}#{self.committed + 1}"


_current: ContextVar[_Request | None] = ContextVar("current_request", default=None)


@contextmanager
def handling(key: str | None) -> Iterator[None]:
    """Write transactions in this block record `key` with each change they commit."""
    token = _current.set(_Request(key) if key else None)
    try:
        yield
    finally:
        _current.reset(token)


def _note_events(session: Session, _context: Any, _instances: Any) -> None:
    if any(isinstance(obj, Event) for obj in session.new):
        session.info[WROTE_EVENT] = True


def wrote_events(session: Session) -> None:
    """For a change that writes its Events with Core statements (not `session.add`), which the
    flush hook above cannot see: the request's key is recorded with it all the same."""
    session.info[WROTE_EVENT] = True


# A Core statement on the session's connection, built once: an ORM-enabled INSERT took the bulk
# persistence path, about half a millisecond of a click's CPU.
_RECORD_KEY = insert(cast(Table, HandledRequest.__table__))


def _record(session: Session, request: _Request) -> None:
    """Adds the request's key to the transaction, if it changed anything (wrote an Event)."""
    session.flush()
    if not session.info.get(WROTE_EVENT):
        return
    key = request.next_key()
    try:
        session.connection().execute(_RECORD_KEY, {"key": key, "at": utcnow()})
    except IntegrityError:
        raise AlreadyHandled(key) from None
    session.info["handled_key"] = key


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit in the driver, so the dialect below decides how a transaction starts.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    _into_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted content zeroed only where that costs no extra page writes. The driver's SQLite
    # may be built with secure_delete on (Debian's is): then every overflow page a claim frees
    # (it rewrites each leased row, a 24 KB body and all, and deletes the finished ones) was
    # also written out full of zeros, with the queue's write lock held. Lock held by a claim
    # (4 rows done, medians of three alternated runs): 1 row 0.30 → 0.17 ms, 8 rows 0.95 →
    # 0.77 ms. The deleted bytes stay in free pages until reused, as they stay in the WAL.
    cursor.execute("PRAGMA secure_delete=FAST")
    cursor.close()


def _into_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode=WAL`, asked again while another connection is in the way, for at
    most the busy timeout. Why: on a file not yet in WAL mode (a fresh one) the change needs
    the file to itself, and where two connections would each wait for the other SQLite answers
    "database is locked" at once instead of waiting: replicas starting together on a fresh file
    failed so, 3 times in 20 runs of four on a busy machine. Once the file is in WAL mode, it
    stays so and this is one statement."""
    while_busy(cursor, "PRAGMA journal_mode=WAL", step_s=0.01)


def while_busy(cursor: Any, statement: str, *, step_s: float) -> None:
    """Runs a SQLite statement, again every `step_s` while it is refused as busy, for at most
    the busy timeout; any other error, or busy past that, is raised."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute(statement)
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(step_s)


# How the SQLite transaction being begun on this thread starts: DEFERRED for a read, IMMEDIATE
# (the write lock up front) inside `begin_writing`.
_sqlite_begin: ContextVar[str] = ContextVar("sqlite_begin", default="BEGIN DEFERRED")


class SQLiteBeginning(SQLiteDialect_pysqlite):
    """pysqlite, whose transactions the dialect begins (`do_begin`), DEFERRED or IMMEDIATE as
    `begin_writing` says. A "begin" listener on the engine did this before, as SQLAlchemy's
    SQLite notes show; but any connection-event listener puts every statement of its engine on
    SQLAlchemy's event path (a dispatch per execute, cursor and commit), about a quarter of the
    CPU SQLAlchemy spent around a short read."""

    supports_statement_cache = True  # compiles as its parent does (SQLAlchemy asks subclasses to say so)

    def do_begin(self, dbapi_connection: Any) -> None:
        dbapi_connection.execute(_sqlite_begin.get())


registry.register("sqlite.beginning", __name__, "SQLiteBeginning")


@contextmanager
def _begins_immediate() -> Iterator[None]:
    token = _sqlite_begin.set("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        _sqlite_begin.reset(token)


def begin_writing(conn: Connection) -> RootTransaction:
    """`conn.begin()` for a write transaction: on SQLite `BEGIN IMMEDIATE`, which takes the
    write lock up front instead of failing with "database is locked" when a read turns into a
    write."""
    with _begins_immediate():
        return conn.begin()


def _connect_writing(session: Session) -> None:
    """The session's connection, begun as `begin_writing` begins one."""
    with _begins_immediate():
        session.connection()


# The JSON columns read and written through orjson (storage/json_text.py: the stdlib's values,
# compact UTF-8 text). Set on the dialect, so the statements compiled for it outside
# SQLAlchemy's execution (storage/dbapi_statements.py, dbapi_writes.py, which take the
# dialect's bind and result processors) use them too, and on Postgres psycopg's JSON adapters
# of the engine's connections (there only to read: see below). Why, run both ways on the same
# values: the web process's queued row's headers 13.8 → 6.4 µs of CPU per request
# (bench/web_cpu.py), a start's 15 column values 259 → 160 µs, a click's 3 values 31 → 16 µs
# (bench/work_costs.py).
_JSON: dict[str, Any] = {"json_serializer": json_text.dumps, "json_deserializer": json_text.loads}
# Postgres writes the stdlib's ASCII text (`\uXXXX` escapes): psycopg sends the serializer's
# text as UTF-8 whatever the connection's client_encoding, so orjson's UTF-8 would be stored
# wrong, or refused, by a database in another encoding (WIN1252: "café" read back by SQL as
# "cafÃ©"). It still reads through orjson.
_POSTGRES_JSON: dict[str, Any] = {"json_serializer": json.dumps, "json_deserializer": json_text.loads}


def create_db_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed.set(drivername="sqlite+beginning"),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
            **_JSON,
        )
        event.listen(engine, "connect", _sqlite_pragmas)  # a pool event: no statement pays for it
        return engine
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, **_POSTGRES_JSON
    )
    _ping_when_in_doubt(engine)
    return engine


# A pooled Postgres connection is pinged at checkout only when it may be dead: it sat idle in the
# pool longer than this, or its socket has something to read while no query is out (the server
# closed it, or told it why first: a restart, an administrator's terminate, an idle timeout).
# `pool_pre_ping` pinged at every checkout: a round trip per transaction, a tenth of a
# millisecond of CPU and more, for connections used a moment ago.
PING_AFTER_IDLE_S = 5.0


def _ping_when_in_doubt(engine: Engine) -> None:
    """Survive a Postgres restart without a failed request, as `pool_pre_ping` did: a
    connection in doubt is pinged, and one that fails the ping is replaced before use, the
    pool's older ones with it (the pool's own retry for a checkout hook that raises
    `InvalidatePoolError`, which is what a failed pre-ping raises)."""

    def fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()  # just opened: alive, as pre-ping assumed

    def checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S and not _readable(dbapi_conn):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as error:
            raise InvalidatePoolError(f"a pooled connection failed its ping: {error}") from error

    event.listen(engine, "connect", fresh)
    event.listen(engine, "checkin", fresh)
    event.listen(engine, "checkout", checked_out)


def _readable(dbapi_conn: Any) -> bool:
    """Whether an idle connection's socket has data or an end-of-file waiting (nothing is
    owed to an idle connection, so either means the server spoke or hung up). True when the
    socket cannot be polled, so that the caller pings."""
    if not hasattr(select, "poll"):
        return True
    try:
        poller = select.poll()
        poller.register(dbapi_conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


class DatabaseGone(Exception):
    """The SQLite file this process opened was removed or replaced under it."""


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


class Database:
    """The one place sessions are made. Callers open them at the edge and commit there."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.engine = create_db_engine(self.url, pool_size=pool_size)
        self.dialect = self.engine.dialect.name
        # A SQLite file deleted under a running process stays open (unlinked), so every write
        # "works" and is lost at restart: remember which file was opened, to notice.
        database = make_url(self.url).database if self.dialect == "sqlite" else None
        self._sqlite_path = database if database and database != ":memory:" else None
        if self._sqlite_path is not None:
            self.ping()  # creates the file if it is new
        self._sqlite_file = _file_identity(self._sqlite_path) if self._sqlite_path else None
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._write, "before_flush", _note_events)
        self._writers = threading.RLock() if self.dialect == "sqlite" else None
        self.after_commit: list[Callable[[dict[str, object]], None]] = []

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        After a commit, `after_commit` hooks see the session's `info` (e.g. "outbox rows were
        queued", so the worker is woken at once instead of at its next tick).

        Under `handling(key)`, a transaction that writes an Event records the key with it, and
        raises `AlreadyHandled` (rolled back) when that key was recorded before.

        Begun when the block opens, as `writing` is (on SQLite `BEGIN IMMEDIATE`, which the
        dialect emits only as a connection begins): every change's block starts with its
        statements, so the write lock is not held any longer than it was."""
        request = _current.get()
        with self._one_writer(), self._write() as session:
            with session.begin():
                _connect_writing(session)
                yield session
                if request is not None:
                    _record(session, request)
            if request is not None and "handled_key" in session.info:
                request.committed += 1
            for hook in self.after_commit:
                hook(session.info)

    @contextmanager
    def _one_writer(self) -> Iterator[None]:
        """On SQLite, this process's writers take turns on a lock of their own before
        `BEGIN IMMEDIATE`: one waiting there is woken the moment the writer before it is done,
        where SQLite's busy handler sleeps in growing steps (up to 100 ms) and, with a dozen
        threads writing, leaves the write lock idle most of the time. Other processes still
        meet at SQLite's lock. Re-entrant, and bounded by the busy timeout: past it, SQLite's
        own wait decides, as before."""
        if self._writers is None:
            yield
            return
        got = self._writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            yield
        finally:
            if got:
                self._writers.release()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction on a bare connection, for Core statements on a hot path where
        an ORM session costs more than the statements (the web process queuing work). It
        records no request key and runs no `after_commit` hook: only for bookkeeping that
        writes no Event."""
        with self._one_writer(), self.engine.connect() as conn, begin_writing(conn):
            yield conn

    @contextmanager
    def connected(self) -> Iterator[Connection]:
        """A read on a bare connection (Core statements), rolled back when the block ends."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def check_writable(self) -> None:
        """Raises unless a write would land: the SQLite file is still the one opened, and a
        write in a transaction that is then rolled back succeeds (a read-only file, a full
        disk or a read-only Postgres replica fail here)."""
        self.check_same_file()
        with self._write() as session, session.begin():
            _connect_writing(session)
            session.execute(text("UPDATE alembic_version SET version_num = version_num"))
            session.rollback()

    def was_handled(self, key: str) -> bool:
        """Whether work run under `handling(key)` committed its (first) change."""
        with self.reading() as session:
            return session.get(HandledRequest, key) is not None

    def check_same_file(self) -> None:
        """Raises DatabaseGone when the SQLite file was removed or replaced since it was opened
        (connections already open would go on writing to the removed file)."""
        if self._sqlite_path is not None and _file_identity(self._sqlite_path) != self._sqlite_file:
            raise DatabaseGone(f"the database file {self._sqlite_path} was removed or replaced")

    def dispose(self) -> None:
        self.engine.dispose()
