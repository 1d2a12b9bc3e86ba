"""New rows written with Core statements instead of the ORM's unit of work.

A flush of a new object graph (a rollout's phases, steps and items, dozens of objects) costs
far more than the rows are worth: instance state, history, cache keys and one round of
bookkeeping per object. `insert_new` writes the objects of one mapped class with one
executemany statement and leaves the objects as they were, transient, with their ids and
defaults filled in so they read as the rows do. The ids: on Postgres, SQLAlchemy's
insertmanyvalues (batched `INSERT … VALUES (…), (…)` with `RETURNING id` in the order given);
on SQLite, which cannot tie a multi-row insert's new rowids to the order of its rows (so that
form falls back to one INSERT per row there), the ids SQLite itself would give them, assigned
before the insert, which runs on the DBAPI connection of the transaction (see `insert_new`).

The values are the ones the unit of work would have written (so switching a writer to this
changes no row): each attribute set on the object, except a None where the column does not
store None itself (the ORM leaves such a column out, so its default applies); for a column left
out, its Python-side default, which is also set on the object; anything else is NULL.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Column, Insert, Select, Table, func, insert, inspect, select
from sqlalchemy.orm import Session, configure_mappers

from storage.dbapi_statements import Fixed
from storage.models import Base

_MISSING = object()


def _default(column: Column[Any]) -> Any:
    default = column.default
    if default is None or column.primary_key:
        return _MISSING
    if default.is_scalar:
        return default.arg  # type: ignore[attr-defined]
    if default.is_callable:
        return default.arg(None)  # type: ignore[attr-defined]  # wrapped by SQLAlchemy to take a context
    return _MISSING  # a sequence or SQL expression: left to the database, as the ORM does


def plain(cls: type[Any], values: dict[str, Any]) -> Any:
    """A transient instance of a mapped class holding `values`, for `insert_new` to write: made
    as a load makes one (its ORM state, no constructor), its values put straight into its
    __dict__, where the ORM reads them back, without an event or history per attribute. Read
    it, give it to `insert_new`; never add it to a session (nothing set this way is flushed)."""
    mapper = inspect(cls)
    if not mapper.configured:  # a constructor would configure them; reading needs it done
        configure_mappers()
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update(values)
    return obj


@functools.cache
def _statements(table: Table) -> tuple[Insert, Insert, Select[Any]]:
    """The plain insert, the one returning ids in the order given, and the table's highest id,
    built once per table (SQLAlchemy keeps a statement's cache key on it, so each later use
    skips computing it)."""
    (pk,) = table.primary_key.columns
    return insert(table), insert(table).returning(pk, sort_by_parameter_order=True), select(func.max(pk))


def insert_new(session: Session, objects: Sequence[Base], *, ids: bool = True) -> None:
    """Inserts transient objects of one mapped class in the caller's transaction, with one
    executemany statement; with `ids`, gives each object its primary key (`id`).

    The objects are not added to the session: nothing about them is flushed later, and a change
    made to them afterwards is never written. What is filled in (ids, defaults) goes straight
    into their __dict__, as `plain` puts values, without an event or history per attribute.
    Relationships are not followed: set the foreign keys (`phase.rollout_id = rollout.id`)
    before calling."""
    if not objects:
        return
    table, pk_key, columns = _layout(type(objects[0]))
    rows: list[dict[str, Any]] = []
    for obj in objects:
        state = obj.__dict__
        row: dict[str, Any] = {}
        for key, column_key, column, keeps_none in columns:
            value = state.get(key, _MISSING)
            if value is None and not keeps_none:
                value = _MISSING
            if value is _MISSING:
                value = _default(column)
                if value is _MISSING:
                    continue
                state[key] = value
            row[column_key] = value
        rows.append(row)
    # executemany needs one set of keys: a column some rows leave out is NULL in them (no
    # Python-side default applies to it, or it would have been filled in above). Where the
    # database has a default of its own, that NULL would not be what the ORM writes.
    keys = {k for row in rows for k in row}
    if any(table.c[k].server_default is not None for row in rows for k in keys - row.keys()):
        raise ValueError(f"{table.name}: rows leave out a column with a server default")
    params = [{k: row.get(k) for k in keys} for row in rows]
    # On the session's connection, in its transaction: these rows concern no ORM object.
    connection = session.connection()
    sqlite = connection.dialect.name == "sqlite"
    if not ids:
        if sqlite:
            _sqlite_insert(table, frozenset(keys)).many(connection, params)
        else:
            connection.execute(_statements(table)[0], params)
        return
    if sqlite:
        # The ids SQLite would choose: a table whose integer key is its rowid (no AUTOINCREMENT
        # here) gives a new row the highest rowid + 1, and nobody else inserts meanwhile, as a
        # write transaction holds the database's one write lock (BEGIN IMMEDIATE; in a deferred
        # one, a writer that came between this read and the insert makes the insert fail, not
        # reuse an id). One executemany then, where RETURNING in order would be a statement a row.
        (highest,) = _sqlite_highest(table).first(connection, {}) or (None,)
        first = int(highest or 0) + 1
        new_ids: Sequence[int] = range(first, first + len(params))
        (pk,) = table.primary_key.columns
        for values, new_id in zip(params, new_ids, strict=True):
            values[pk.key] = new_id
        _sqlite_insert(table, frozenset(params[0])).many(connection, params)
    else:
        new_ids = connection.execute(_statements(table)[1], params).scalars().all()
    for obj, new_id in zip(objects, new_ids, strict=True):
        obj.__dict__[pk_key] = new_id


# On SQLite the insert and the highest id run on the DBAPI connection of the transaction, each
# compiled once per set of columns (`storage.dbapi_statements.Fixed`): SQLAlchemy's executemany
# (an execution context, each row's values through `construct_params`, events, a result) cost
# more than SQLite took to write the rows, and a start writes seven tables' rows this way: 0.3 ms
# of its 7.6 ms of CPU (bench/work_costs.py). Postgres keeps SQLAlchemy's path: its ids come back
# with RETURNING in the order given, in batches (insertmanyvalues), which a plain executemany
# would not give.
@functools.cache
def _sqlite_insert(table: Table, keys: frozenset[str]) -> Fixed:
    return Fixed(insert(table), sorted(keys))


@functools.cache
def _sqlite_highest(table: Table) -> Fixed:
    return Fixed(_statements(table)[2])


@functools.cache
def _layout(cls: type[Base]) -> tuple[Table, str, tuple[tuple[str, str, Column[Any], bool], ...]]:
    """A mapped class's table, the attribute of its primary key, and for each other column of
    its own table (attribute, column name, column, stores None itself), read once per class."""
    mapper = inspect(cls)
    table = cast(Table, mapper.local_table)
    (pk,) = mapper.primary_key
    columns = tuple(
        (prop.key, column.key, column, bool(column.type.should_evaluate_none))
        for prop in mapper.column_attrs
        if not (column := cast(Column[Any], prop.columns[0])).primary_key and column.table is table
    )
    return table, mapper.get_property_by_column(pk).key, columns
