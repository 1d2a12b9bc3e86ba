"""The JSON columns are written by `storage.json_text.dumps` and read by its `loads` on every
path: the ORM, `Fixed` statements and `insert_new` (SQLite), the web process's `Prepared`
writes, and psycopg's own adapters on Postgres. Rows the stdlib wrote read as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text

from storage import json_text
from storage.db import Database
from storage.dbapi_statements import Fixed
from storage.dbapi_writes import Writer
from storage.models import PendingWork
from storage.rows import insert_new, plain

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
HEADERS = {"content-type": ["application/x-www-form-urlencoded"], "x-note": ["café ✅"], "n": [1, 2.5]}
COMPACT = json_text.dumps(HEADERS)
READ_TEXT = select(text("CAST(headers AS TEXT)")).select_from(PendingWork).order_by(PendingWork.id)


def stored(db: Database) -> list[tuple[str, dict[str, Any]]]:
    """Each row's text as the database holds it, and the value the ORM reads from it."""
    with db.reading() as session:
        texts = list(session.scalars(READ_TEXT))
        values = [row.headers for row in session.scalars(select(PendingWork).order_by(PendingWork.id))]
    return list(zip(texts, values, strict=True))


def row(name: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "function_name": name,
        "body": "{}",
        "headers": headers,
        "created_at": AT,
        "request_key": None,
        "attempts": 0,
    }


def test_the_engine_writes_and_reads_json_columns_through_orjson(db: Database) -> None:
    """On SQLite every path writes orjson's text; Postgres writes the stdlib's ASCII text (see
    the next test) and reads through orjson too."""
    postgres = db.dialect == "postgresql"
    assert db.engine.dialect._json_serializer is (json.dumps if postgres else json_text.dumps)
    assert db.engine.dialect._json_deserializer is json_text.loads
    assert (
        COMPACT == '{"content-type":["application/x-www-form-urlencoded"],"x-note":["café ✅"],"n":[1,2.5]}'
    )
    with db.transaction() as session:
        session.add(PendingWork(**row("orm", HEADERS)))
    with db.transaction() as session:
        insert_new(session, [plain(PendingWork, row("insert_new", HEADERS))])
        Fixed(insert(PendingWork).values(**{k: bindparam(k) for k in row("", {})})).run(
            session, row("fixed", HEADERS)
        )
    writer = Writer(db)
    queue = writer.prepare(insert(PendingWork), list(row("", {})))
    with writer.transaction() as cursor:
        cursor.execute(queue, row("prepared", HEADERS))
    rows = stored(db)
    assert len(rows) == 4
    for held, value in rows:
        # each path wrote the engine's serializer's text
        assert held == (json.dumps(HEADERS) if postgres else COMPACT)
        assert value == HEADERS == json.loads(held)
    with db.reading() as session:
        assert Fixed(select(PendingWork.headers)).all(session, {}) == [(HEADERS,)] * 4


def test_rows_the_stdlib_wrote_read_as_before(db: Database) -> None:
    """ASCII escapes and spaces as `json.dumps` writes them (and, on SQLite, its NaN)."""
    old = {"x-note": ["caf\u00e9 \u2705"], "k": [1]}
    written = [json.dumps(old)]
    if db.dialect == "sqlite":  # Postgres' json type refuses NaN, so no such row is there
        written.append(json.dumps({"nan": [float("nan")]}))
    with db.transaction() as session:
        for i, held in enumerate(written):
            session.execute(
                text(
                    "INSERT INTO pending_work (function_name, body, headers, created_at, attempts) VALUES (:f, '{}', :h, :at, 0)"
                ),
                {"f": f"old{i}", "h": held, "at": AT.replace(tzinfo=None)},
            )
    read = [value for _held, value in stored(db)]
    assert read[0] == old
    if db.dialect == "sqlite":
        assert repr(read[1]) == repr({"nan": [float("nan")]})


def test_postgres_keeps_json_text_right_whatever_the_connections_encoding(db: Database) -> None:
    """psycopg sends a JSON parameter's text as UTF-8 whatever the connection's client_encoding:
    the ASCII the stdlib writes is stored right under any of them, where orjson's UTF-8 under
    WIN1252 was stored as "cafÃ©"."""
    if db.dialect != "postgresql":
        return
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SET client_encoding TO 'WIN1252'")
        conn.execute(insert(PendingWork), [row("win1252", {"x-note": ["café"]})])
        conn.commit()
        conn.exec_driver_sql("RESET client_encoding")
    with db.reading() as session:
        assert session.scalar(text("SELECT headers->'x-note'->>0 FROM pending_work")) == "café"
