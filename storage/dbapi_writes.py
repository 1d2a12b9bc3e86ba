"""Write transactions on the pooled DBAPI connection, for the hottest path there is: the web
process queuing the work behind every ack (bot/edge/queuing.py).

A Core statement on a SQLAlchemy connection costs several times what SQLite takes to run it
(an execution context, events, result set-up, and the same again for `BEGIN` and `COMMIT`:
0.37 ms of CPU per queued request against 0.09 ms here, bench/web_cpu.py). So a statement is
compiled once for the database's dialect (`Prepared`), its values converted by the very bind
processors SQLAlchemy would use (UTC datetimes, JSON), and run on the DBAPI connection the
engine's pool hands out, with its connect and checkout hooks (SQLite's pragmas, Postgres'
ping of a connection in doubt) as for any other transaction.

Only for statements whose values are plain columns of one table, and only where nothing else
is owed: no ORM, no `handling` key, no `after_commit` hook (storage/db.py).

`GroupCommit` runs the writes of concurrent callers in shared transactions: each caller
returns only once the transaction holding its write has committed, as with a transaction of
its own. Why: with a request thread per transaction, a burst's threads queued on the write
lock, and each holder paid a `BEGIN` and a `COMMIT` and handed the interpreter lock back and
forth at each of its statements, so one slow holder (the work process's claim on the same
SQLite file, a checkpoint) held up every ack behind it. Given a `together` function, a batch's
writes run as a few multi-row statements (`row_binds`) instead of two or three statements
each: where each statement is a round trip (Postgres), that halves a batch's time (the
measurements are in bot/edge/queuing.py, which uses it there only).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Table, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import BindParameter, ClauseElement

from storage.db import SQLITE_BUSY_TIMEOUT_S, Database, while_busy

log = logging.getLogger(__name__)


class Prepared:
    """`statement` compiled once for `dialect`, taking values for the columns `keys` (each
    given at every call: a column's Python-side default is not applied here)."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: Sequence[str]) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys)))
        self.sql = str(compiled)
        binds = compiled.binds
        self.names: list[str] = list(compiled.positiontup or []) if dialect.positional else list(binds)
        missing = set(self.names) - set(keys)
        if missing:
            raise ValueError(f"{statement} needs values for {sorted(missing)} too")
        self.processors = {
            name: binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        }
        # None converted only by a type that says it converts None (JSON null), as in Fixed.
        self.none_too = {name for name in self.names if binds[name].type.should_evaluate_none}
        self.positional = dialect.positional

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        converted = {}
        for name in self.names:
            process = self.processors[name]
            value = values[name]
            if process is not None and (value is not None or name in self.none_too):
                value = process(value)
            converted[name] = value
        return [converted[name] for name in self.names] if self.positional else converted


def row_binds(table: Table, keys: Sequence[str], count: int) -> list[dict[str, BindParameter[Any]]]:
    """`count` rows of `table`'s columns `keys`, each value a bind of its own named
    `<key>_<row>`, for a multi-row `insert(table).values(...)` to `Prepared` once per count;
    `row_values` names the values to match. Each bind has its column's type, so its values are
    converted as the column's would be."""
    return [{key: bindparam(f"{key}_{n}", type_=table.c[key].type) for key in keys} for n in range(count)]


def row_names(keys: Sequence[str], count: int) -> list[str]:
    return [f"{key}_{n}" for n in range(count) for key in keys]


def row_values(keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {f"{key}_{n}": row[key] for n, row in enumerate(rows) for key in keys}


class Writer:
    """Write transactions for one `Database` on its pooled DBAPI connections. On SQLite this
    process's writers through it take turns on a lock before `BEGIN IMMEDIATE`, as
    `Database.writing` does (the turns are per Writer: give each database one)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.engine.dialect
        self.sqlite = db.dialect == "sqlite"
        self._turns = threading.Lock() if self.sqlite else None

    def prepare(self, statement: ClauseElement, keys: Sequence[str]) -> Prepared:
        return Prepared(statement, self.dialect, keys)

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """Committed when the block ends, rolled back if it raises. A DBAPI error comes out as
        SQLAlchemy's `DBAPIError`, as from any other statement; a connection the database
        dropped (a restart) is thrown away, not handed out again."""
        got = self._turns.acquire(timeout=SQLITE_BUSY_TIMEOUT_S) if self._turns is not None else False
        try:
            try:
                connection = self.db.engine.raw_connection()
            except self.dialect.loaded_dbapi.Error as error:
                raise DBAPIError.instance(None, None, error, self.dialect.loaded_dbapi.Error) from error
            try:
                cursor = Cursor(connection.cursor())
                try:
                    if self.sqlite:
                        begin_immediate(cursor.raw)
                    yield cursor
                    connection.commit()
                except self.dialect.loaded_dbapi.Error as error:
                    gone = self.dialect.is_disconnect(error, connection.dbapi_connection, cursor.raw)
                    if gone:
                        connection.invalidate(error)
                    else:
                        connection.rollback()
                    raise DBAPIError.instance(
                        cursor.last, None, error, self.dialect.loaded_dbapi.Error, connection_invalidated=gone
                    ) from error
                except BaseException:
                    connection.rollback()
                    raise
                finally:
                    cursor.raw.close()
            finally:
                connection.close()  # back to the pool (rolled back there if still open)
        finally:
            if got and self._turns is not None:
                self._turns.release()


# How often a SQLite writer looks again while another process holds the write lock.
BUSY_STEP_S = 0.0005


def begin_immediate(raw: Any) -> None:
    """`BEGIN IMMEDIATE`, looking again every `BUSY_STEP_S` while another process (the work
    process's claim) holds the write lock, for at most the busy timeout; the connection's busy
    timeout is as it was afterwards. Why not SQLite's own busy handler: it sleeps in growing
    steps (1, 2, 5, 10 … up to 100 ms) and looks only after each, so a claim holding the lock
    for a moment kept the queue write, and every ack behind it, waiting for the end of a
    step: in the three bursts of bench/ack_latency.py, 140 queue writes waited over 3 ms to
    begin, 1.1 s in all (the writes timed one by one). Ack p99, two alternated pairs: status
    185 / 101 → 80 / 52 ms, click 115 / 107 → 93 / 90 ms."""
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while_busy(raw, "BEGIN IMMEDIATE", step_s=BUSY_STEP_S)
    finally:
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")


class Cursor:
    """A DBAPI cursor inside `Writer.transaction`, running `Prepared` statements."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.last: str | None = None

    def execute(self, prepared: Prepared, values: Mapping[str, Any]) -> Any:
        """Runs the statement; the first row it returned (RETURNING), or None."""
        return self.raw.fetchone() if self._run(prepared, values) else None

    def all(self, prepared: Prepared, values: Mapping[str, Any]) -> list[Any]:
        """Runs the statement; every row it returned."""
        return list(self.raw.fetchall()) if self._run(prepared, values) else []

    def _run(self, prepared: Prepared, values: Mapping[str, Any]) -> bool:
        """Runs the statement; whether it returns rows."""
        self.last = prepared.sql
        self.raw.execute(prepared.sql, prepared.parameters(values))
        return self.raw.description is not None


T = TypeVar("T")


class _Signal:
    """Waited for once, by the caller it belongs to: a lock held from the start, let go by
    `set` (from any thread, the caller's own too). Setting it again before the wait does
    nothing; after the wait, it lets the lock go with nobody waiting.

    Why not `threading.Event`: its wait and set go through a `Condition` (a lock made for each
    wait, the condition's own lock taken again after waking), more Python and more handovers of
    the interpreter lock among the request threads, and the queue write waits on one per
    request. bench/queue_writes.py, six alternated pairs, medians: SQLite 3,732 → 4,526 writes a
    second, CPU per write 0.252 → 0.203 ms, each pair better; on Postgres no clear change."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        with suppress(RuntimeError):  # set already
            self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()


class _Waiting(Generic[T]):
    __slots__ = ("error", "lead", "result", "woken", "work")

    def __init__(self, work: Callable[[Cursor], T]) -> None:
        self.work = work
        self.result: T | None = None
        self.error: BaseException | None = None
        self.woken = _Signal()  # done, or handed the lead
        self.lead = False


class GroupCommit:
    """Group commit: concurrent callers' writes share one transaction of `writer`.

    The rules: a caller's `work` runs in a transaction with others' that came while an earlier
    one was committing, and `run` returns its result only after that transaction committed
    (or raises its error): what a caller is told happened has happened. One caller at a time
    leads: it takes the waiting writes (its own first, at most `most`), commits them, wakes
    their callers and hands the lead to the first caller still waiting, so no caller's own
    write waits behind more than one batch of others'; a caller interrupted while it waits
    passes the lead on if it had it. A write that raises fails only its own caller (the
    others run again together); a transaction that fails of itself fails them all at once.
    `work` runs on the leader's thread and may run more than once: it must only run statements
    on the cursor it is given.

    `together(cursor, works)`, if given, runs a batch of two or more writes at once and returns
    their results in order: what each `work` alone would have written and returned. If it
    raises, its transaction is rolled back and the batch's writes run again one by one as above,
    so a write that fails still fails only its own caller."""

    def __init__(
        self,
        writer: Writer,
        most: int = 64,
        together: Callable[[Cursor, list[Any]], list[Any]] | None = None,
    ) -> None:
        self.writer = writer
        self.most = most
        self.together = together
        self._mutex = threading.Lock()
        self._waiting: list[_Waiting[Any]] = []
        self._leading = False  # while True, some caller leads; `_waiting` empty otherwise

    def run(self, work: Callable[[Cursor], T]) -> T:
        mine = _Waiting(work)
        with self._mutex:
            self._waiting.append(mine)
            mine.lead = not self._leading
            self._leading = True
        if not mine.lead:
            try:
                mine.woken.wait()
            except BaseException:  # an interrupt while waiting: nobody may be left to lead
                self._leave(mine)
                raise
        if mine.lead:  # first in line: its own write leads the batch it takes
            self._lead()
        if mine.error is not None:
            raise mine.error
        return cast(T, mine.result)

    def _leave(self, mine: _Waiting[Any]) -> None:
        with self._mutex:
            if mine in self._waiting:  # not taken into a batch yet
                self._waiting.remove(mine)
            following = self._pass_lead() if mine.lead else None
            mine.lead = False
        if following is not None:
            following.woken.set()

    def _pass_lead(self) -> _Waiting[Any] | None:
        """Under the mutex: the first caller still waiting leads next, or nobody leads."""
        following = self._waiting[0] if self._waiting else None
        if following is None:
            self._leading = False
        else:
            following.lead = True
        return following

    def _lead(self) -> None:
        with self._mutex:
            batch = self._waiting[: self.most]
            del self._waiting[: self.most]
        try:
            self._commit(batch)
        except BaseException as error:  # an interrupt: nobody is told their write was done
            for waiting in batch:
                waiting.error = waiting.error or error
            raise
        finally:
            with self._mutex:
                following = self._pass_lead()
            for waiting in batch:
                waiting.lead = False
                waiting.woken.set()
            if following is not None:
                following.woken.set()

    def _commit(self, batch: list[_Waiting[Any]]) -> None:
        """A write that raises fails its own caller, and the others are run again together
        without it; a transaction that fails of itself (no connection, the lock not had in
        time, the commit refused) fails every caller at once, each of whom may try again: run
        alone one by one, a locked database would keep the last caller waiting for every
        other's timeout."""
        pending = self._together(batch) if self.together is not None and len(batch) > 1 else batch
        while pending:
            failed: _Waiting[Any] | None = None
            try:
                with self.writer.transaction() as cursor:
                    for waiting in pending:
                        failed = waiting
                        waiting.result = waiting.work(cursor)
                    failed = None
                return
            except Exception as error:  # noqa: BLE001 - raised again in its caller's thread
                if failed is None:
                    for waiting in pending:
                        waiting.error = error
                    return
                failed.error = error
                pending = [waiting for waiting in pending if waiting is not failed]

    def _together(self, batch: list[_Waiting[Any]]) -> list[_Waiting[Any]]:
        """Runs the batch through `together`; the writes still to run one by one: none when it
        committed or the transaction failed of itself (then every caller has the error), all
        of them when `together` raised."""
        assert self.together is not None
        writing = False
        try:
            with self.writer.transaction() as cursor:
                writing = True
                results = self.together(cursor, [waiting.work for waiting in batch])
                if len(results) != len(batch):  # rolled back, not committed and then failed
                    raise ValueError(f"{len(results)} results for {len(batch)} writes")
                writing = False
        except Exception as error:  # noqa: BLE001 - raised again in its callers' threads
            if writing:
                # A write's fault, maybe one's: each alone finds whose. Said, as a batch
                # failing every time would halve the writes a second without a word.
                log.warning(
                    "%s writes could not be written together, one by one instead: %s", len(batch), error
                )
                return batch
            for waiting in batch:
                waiting.error = error
            return []
        for waiting, result in zip(batch, results, strict=True):
            waiting.result = result
        return []
