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
out, its Python-side default, which is also set on the object; anything else is NULL, and the
object's attribute is set to None too where the database has no default of its own for it (a
column with a server default keeps reading as before: not set). An attribute a transient object
does not hold reads as None either way, but through SQLAlchemy's slow path (a loader lookup and
an `init_scalar` event each time): the start's view of its 32 checklist items read 150 such
attributes, 0.1 ms of its CPU (`rollout_view`, bench/work_costs.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Column, Insert, Select, Table, func, insert, inspect, select
from sqlalchemy.orm import Mapper, Session, configure_mappers

from storage.dbapi_statements import Fixed
from storage.models import Base

_MISSING = object()
# (attribute, column name, stores None itself, Python-side default, NULL when left out): `_layout`
_Layout = tuple[str, str, bool, Callable[[], Any] | None, bool]


def _default(column: Column[Any]) -> Callable[[], Any] | None:
    """What gives a column left out its Python-side default, for each row anew (a callable
    default, `list`, is called once per row, as the ORM calls it); None where there is none."""
    default = column.default
    if default is None or column.primary_key:
        return None
    if default.is_scalar:
        value = default.arg  # type: ignore[attr-defined]
        return lambda: value
    if default.is_callable:
        make = default.arg  # type: ignore[attr-defined]  # wrapped by SQLAlchemy to take a context
        return lambda: make(None)
    return None  # a sequence or SQL expression: left to the database, as the ORM does


def plain(cls: type[Base], values: dict[str, Any]) -> Any:
    """A transient instance of a mapped class holding `values`, for `insert_new` to write: made
    as a load makes one (its ORM state, no constructor), its values put straight into its
    __dict__, where the ORM reads them back, without an event or history per attribute. Read
    it, give it to `insert_new`; never add it to a session (nothing set this way is flushed)."""
    mapper, new_instance = _maker(cls)
    if not mapper.configured:  # a constructor would configure them; reading needs it done
        configure_mappers()
    obj = new_instance()
    obj.__dict__.update(values)
    return obj


@functools.cache
def _maker(cls: type[Base]) -> tuple[Mapper[Any], Callable[[], Any]]:
    # Looked up once per class: `inspect` and the class manager cost a third of `plain`, and a
    # start makes some fifty of them (bench/work_costs.py).
    mapper = inspect(cls)
    return mapper, mapper.class_manager.new_instance


def assign(objects: Iterable[Any], **values: Any) -> None:
    """Sets the same `values` on each of the plain objects of `plain` or `insert_new` (a
    foreign key before their insert), as `plain` puts values: into __dict__, without the
    ORM's attribute event and history per object, which were a third of the cost of writing
    a start's plan (`start._insert_plan`: 81 foreign keys)."""
    for obj in objects:
        obj.__dict__.update(values)


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
    Relationships are not followed: set the foreign keys before calling (`assign(phases,
    rollout_id=rollout.id)`; set as attributes they work too, at the cost of an event each).
    A column left out that has no default at all is set to None on the object (see above)."""
    if not objects:
        return
    table, pk_key, columns = _layout(type(objects[0]))
    params, keys = _parameters(table, columns, [obj.__dict__ for obj in objects])
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


def _parameters(
    table: Table, columns: tuple[_Layout, ...], states: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], set[str]]:
    """Each object's row (column name -> value), by the rules of the module docstring, and the
    columns they write."""
    rows: list[dict[str, Any]] = []
    for state in states:
        row: dict[str, Any] = {}
        for key, column_key, keeps_none, default, null in columns:
            value = state.get(key, _MISSING)
            if value is _MISSING or (value is None and not keeps_none):
                if default is None:
                    if null:  # NULL in the row: the object holds None, read without the slow path
                        state[key] = None
                    continue
                value = state[key] = default()
            row[column_key] = value
        rows.append(row)
    # Rows of the same columns (every table of a start) are the parameters as they are: a
    # copy of each to one set of keys was a fifth of this (20 of 100 µs a start).
    keys = rows[0].keys()
    if all(row.keys() == keys for row in rows):
        return rows, set(keys)
    # executemany needs one set of keys: a column some rows leave out is NULL in them (no
    # Python-side default applies to it, or it would have been filled in above). Where the
    # database has a default of its own, that NULL would not be what the ORM writes; nor where
    # the column's type writes None as a value of its own (JSON: `null`, not SQL NULL).
    every = {k for row in rows for k in row}
    for key in {k for row in rows for k in every - row.keys()}:
        column = table.c[key]
        if column.server_default is not None or column.type.should_evaluate_none:
            raise ValueError(f"{table.name}: rows leave out {key}, which would not be NULL in them")
    return [{k: row.get(k) for k in every} for row in rows], every


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
def _layout(cls: type[Base]) -> tuple[Table, str, tuple[_Layout, ...]]:
    """A mapped class's table, the attribute of its primary key, and for each other column of
    its own table (attribute, column name, stores None itself, its Python-side default, NULL
    when left out without one: no server default), read once per class."""
    mapper = inspect(cls)
    table = cast(Table, mapper.local_table)
    (pk,) = mapper.primary_key
    columns = tuple(
        (
            prop.key,
            column.key,
            bool(column.type.should_evaluate_none),
            _default(column),
            column.server_default is None,
        )
        for prop in mapper.column_attrs
        if not (column := cast(Column[Any], prop.columns[0])).primary_key and column.table is table
    )
    return table, mapper.get_property_by_column(pk).key, columns
