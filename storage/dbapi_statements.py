"""Fixed Core statements run on the DBAPI connection of a session's transaction: the due-work
tick's reads and writes (storage/job_queries.py, bot/usecases/view_reads.py), new rows on SQLite
(storage/rows.py), an outbox delivery's statements (bot/delivery/outbox_queries.py), the work
queue's claim on SQLite (bot/edge/workqueue.py, its rows converted after its commit).

Through a SQLAlchemy connection a statement costs two to ten times what the driver takes to run
it: an execution context, events, the result's set-up, and, on Postgres, psycopg building the
result's description (a `Column` object per column per statement). A tick runs some twenty of
them. So a `Fixed` statement is compiled once per dialect, its values converted by the bind
processors SQLAlchemy would use, its rows by the result processors (UTC datetimes, enums, JSON
on SQLite), and run on the DBAPI connection of the session's (or connection's) transaction,
begun by SQLAlchemy as for any other statement (`BEGIN IMMEDIATE` on SQLite for a write), and
its unflushed changes flushed first, as the session's own execute would. A driver error comes
out as SQLAlchemy's `DBAPIError`, and a connection the database dropped is invalidated.

Only for statements with plain bound values (no `expanding` IN lists) whose rows are read as
tuples, and not for statements that something listens for on the engine (`before_cursor_execute`
sees none of these: the claim of the tick stays a SQLAlchemy statement for its index test).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

_Processor = Callable[[Any], Any]


class _Compiled:
    """`statement` compiled for `dialect`, with the converters of its values and columns."""

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, columns: Sequence[str] | None = None
    ) -> None:
        compiled = cast(
            SQLCompiler,
            statement.compile(dialect=dialect, column_keys=None if columns is None else list(columns)),
        )
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError(f"{statement} leaves columns to their Python-side defaults: give their values")
        required = [name for name, bind in compiled.binds.items() if bind.required]
        if any(compiled.binds[name].expanding for name in required):
            raise ValueError(f"{statement} takes an IN list: not for a Fixed statement")
        # The IN lists fixed in the statement (a snapshot's kinds) rendered as a bound value
        # each, as SQLAlchemy renders them at each execution; the values it is given stay named.
        expanded = compiled.construct_expanded_state(dict.fromkeys(required))
        self.sql = expanded.statement
        self.dialect = dialect
        self.positional = dialect.positional
        self.names: list[str] = (
            list(expanded.positiontup or []) if self.positional else list(expanded.parameters)
        )
        escaped = compiled.escaped_bind_names
        given = {escaped.get(name, name): name for name in required}
        # Each value converted as SQLAlchemy would: by its type's processor (an expanded IN
        # list's by the list's). None only by a type that says it converts None (a JSON
        # column's None is JSON null, as SQLAlchemy writes it, not SQL NULL); any other
        # processor gives None back, so it is not called for it (most of a start's values).
        processors: dict[str, _Processor | None] = {
            escaped.get(name, name): bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        processors.update(expanded.processors)
        none_too = {
            escaped.get(name, name) for name, bind in compiled.binds.items() if bind.type.should_evaluate_none
        }
        # (placeholder, key, processor, whether it converts None)
        self.given: list[tuple[str, str, _Processor | None, bool]] = [
            (placeholder, key, processors.get(placeholder), placeholder in none_too)
            for placeholder, key in given.items()
        ]
        self.fixed: dict[str, Any] = {}  # values fixed in the statement (a LIMIT, a literal kind)
        for name, value in expanded.parameters.items():
            if name not in given:
                process = processors.get(name)
                converts = value is not None or name in none_too
                self.fixed[name] = process(value) if process is not None and converts else value
        self._columns = compiled._result_columns
        self.keys = tuple(c.keyname for c in self._columns)
        # The columns' converters, from the driver's types of the first result (as SQLAlchemy
        # does: psycopg's numeric columns convert by the type the server sent).
        self.results: tuple[tuple[int, _Processor], ...] | None = None

    def converters(self, cursor: Any) -> tuple[tuple[int, _Processor], ...]:
        if self.results is None:
            self.results = tuple(
                (i, process)
                for i, (c, d) in enumerate(zip(self._columns, cursor.description, strict=True))
                if (process := c.type._cached_result_processor(self.dialect, d[1])) is not None
            )
        return self.results

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        converted = dict(self.fixed)
        for name, key, process, none_too in self.given:
            value = values[key]
            if process is not None and (value is not None or none_too):
                value = process(value)
            converted[name] = value
        return [converted[name] for name in self.names] if self.positional else converted


class Fetched:
    """A statement's rows as the driver returned them, and the converters of their columns."""

    __slots__ = ("converters", "rows")

    def __init__(self, rows: Sequence[Any], converters: tuple[tuple[int, _Processor], ...]) -> None:
        self.rows, self.converters = rows, converters

    def converted(self) -> list[tuple[Any, ...]]:
        if not self.converters:
            return list(self.rows)
        out = []
        for raw in self.rows:
            row = list(raw)
            for i, process in self.converters:
                row[i] = process(row[i])
            out.append(tuple(row))
        return out


class Fixed:
    """A Core statement, compiled once for each dialect it runs on. An INSERT or UPDATE given
    `columns` takes a value for each of them, by the column's name (its type converts it; a
    column's Python-side default is not applied)."""

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.columns = columns
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _Compiled(self.statement, dialect, self.columns)
        return found

    def keys(self, on: Session | Connection) -> tuple[str, ...]:
        """The names of the columns of its rows (no flush, no transaction: only the dialect)."""
        return self._for(on.dialect if isinstance(on, Connection) else on.get_bind().dialect).keys

    def run(self, on: Session | Connection, values: Mapping[str, Any]) -> tuple[list[tuple[Any, ...]], int]:
        """Runs the statement in the transaction of `on`: its rows (none for a statement that
        returns none) and its row count."""
        fetched, count = self.fetch(on, values)
        return fetched.converted(), count

    def fetch(self, on: Session | Connection, values: Mapping[str, Any]) -> tuple[Fetched, int]:
        """As `run`, the rows left as the driver returned them until `Fetched.converted`: for a
        caller that converts them after its transaction ends (the work queue's claim)."""
        conn = _connection(on)
        compiled = self._for(conn.dialect)
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            cursor.execute(compiled.sql, compiled.parameters(values))
            # Rows only from a statement that returns them (a SELECT, RETURNING), and the
            # driver's description of them read once: psycopg builds it anew at each look.
            rows = cursor.fetchall() if compiled.keys else []
            converters = compiled.converters(cursor) if rows else ()
            count = cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as error:
            raise _driver_error(conn, dbapi, cursor, compiled.sql, error) from error
        finally:
            cursor.close()
        return Fetched(rows, converters), count

    def many(self, on: Session | Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Runs a statement that returns nothing (an INSERT) once for each of `rows`, in one
        executemany, in the transaction of `on`."""
        conn = _connection(on)
        compiled = self._for(conn.dialect)
        if compiled.keys:
            raise ValueError(f"{self.statement} returns rows: not for `many`")
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        params: list[Any] = [compiled.parameters(values) for values in rows]
        cursor = dbapi.cursor()
        try:
            cursor.executemany(compiled.sql, params)
        except conn.dialect.loaded_dbapi.Error as error:
            raise _driver_error(conn, dbapi, cursor, compiled.sql, error) from error
        finally:
            cursor.close()

    def all(self, on: Session | Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self.run(on, values)[0]

    def first(self, on: Session | Connection, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        rows = self.run(on, values)[0]
        return rows[0] if rows else None

    def first_named(self, on: Session | Connection, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row by its columns' names (as `plain` takes a row), or None."""
        row = self.first(on, values)
        return None if row is None else dict(zip(self.keys(on), row, strict=True))

    def rowcount(self, on: Session | Connection, values: Mapping[str, Any]) -> int:
        return self.run(on, values)[1]


def _driver_error(conn: Connection, dbapi: Any, cursor: Any, sql: str, error: Exception) -> StatementError:
    """The driver's error as SQLAlchemy's, the connection invalidated if the database dropped it."""
    gone = conn.dialect.is_disconnect(cast(Any, error), dbapi, cursor)
    if gone:
        conn.invalidate(error)
    return DBAPIError.instance(sql, None, error, conn.dialect.loaded_dbapi.Error, connection_invalidated=gone)


def _connection(on: Session | Connection) -> Connection:
    if isinstance(on, Connection):
        # Begun as its own execute would begin it (autobegin): the driver connection is in
        # autocommit on SQLite, so a statement run on it before any BEGIN would be a
        # transaction of its own, and a read of two statements no longer one snapshot.
        if not on.in_transaction():
            on.begin()
        return on
    if on.autoflush:
        on.flush()  # what the session holds unflushed is written first, as its execute would
    return on.connection()
