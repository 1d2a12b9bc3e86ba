"""How SQLite transactions begin (storage/db.py): writes take the write lock up front (BEGIN
IMMEDIATE), reads are one snapshot each (BEGIN DEFERRED), and neither puts the engine's
statements on SQLAlchemy's event path."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, text

from storage import dbapi_writes
from storage.db import Database, begin_writing
from storage.dbapi_statements import Fixed
from storage.dbapi_writes import begin_immediate
from storage.migrate import upgrade


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'begin.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


def other_writer_gets_in(database: Database) -> bool:
    """Whether another connection can take the write lock now (without waiting)."""
    assert database._sqlite_path is not None
    other = sqlite3.connect(database._sqlite_path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return False
    else:
        other.execute("ROLLBACK")
        return True
    finally:
        other.close()


def test_write_transactions_hold_the_write_lock_before_their_first_statement(sqlite_db: Database) -> None:
    with sqlite_db.writing():
        assert not other_writer_gets_in(sqlite_db)
    with sqlite_db.transaction():
        assert not other_writer_gets_in(sqlite_db)
    with sqlite_db.engine.connect() as conn, begin_writing(conn):
        assert not other_writer_gets_in(sqlite_db)
    assert other_writer_gets_in(sqlite_db)


def test_a_read_is_one_snapshot_and_leaves_the_write_lock_free(sqlite_db: Database) -> None:
    with sqlite_db.connected() as conn:
        before = conn.execute(text("SELECT count(*) FROM handled_request")).scalar()
        assert other_writer_gets_in(sqlite_db)
        with sqlite_db.writing() as writer:  # a write committed between the read's statements
            writer.execute(text("INSERT INTO handled_request (key, at) VALUES ('k', '2026-01-01')"))
        assert conn.execute(text("SELECT count(*) FROM handled_request")).scalar() == before
    with sqlite_db.reading() as session:
        assert session.execute(text("SELECT count(*) FROM handled_request")).scalar() == before + 1


def test_a_fixed_statement_first_on_a_bare_connection_begins_its_snapshot(sqlite_db: Database) -> None:
    # A Fixed statement runs on the driver's connection, which SQLAlchemy has not begun yet
    # when it is the first statement: it must begin it, or each statement is its own snapshot.
    count = Fixed(text("SELECT count(*) AS n FROM handled_request").columns(n=Integer))
    with sqlite_db.connected() as conn:
        (before,) = count.first(conn, {}) or (None,)
        with sqlite_db.writing() as writer:  # a write committed between the read's statements
            writer.execute(text("INSERT INTO handled_request (key, at) VALUES ('k', '2026-01-01')"))
        assert count.first(conn, {}) == (before,)
    with sqlite_db.connected() as conn:
        assert count.first(conn, {}) == (before + 1,)


def test_a_read_inside_a_write_transaction_begins_deferred(sqlite_db: Database) -> None:
    # Begun IMMEDIATE, the read would wait for the write lock its own thread holds.
    with sqlite_db.transaction(), sqlite_db.connected() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_no_connection_event_listener_slows_every_statement(sqlite_db: Database) -> None:
    # Any engine-level connection-event listener (a "begin" hook, say) sends each execute,
    # cursor and commit through SQLAlchemy's event dispatch.
    assert not sqlite_db.engine._has_events


def test_a_queue_write_looks_again_in_short_steps_while_another_process_writes(sqlite_db: Database) -> None:
    """SQLite's own busy handler would sleep in growing steps (to 100 ms) and try once per
    step; the queue's writer (storage/dbapi_writes.py) tries every half millisecond, so it is
    in as soon as the other writer is done."""
    assert sqlite_db._sqlite_path is not None
    other = sqlite3.connect(sqlite_db._sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    mine = sqlite3.connect(sqlite_db._sqlite_path, isolation_level=None, timeout=30, check_same_thread=False)
    tries: list[str] = []
    mine.set_trace_callback(lambda sql: tries.append(sql) if sql.startswith("BEGIN") else None)
    began = threading.Event()

    def write() -> None:
        begin_immediate(mine)
        began.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert not began.wait(0.1)  # it waits while the other holds the lock
    other.rollback()
    thread.join(10)
    assert began.is_set()
    assert len(tries) >= 10  # tried again and again, not left asleep in SQLite's handler
    assert mine.execute("PRAGMA busy_timeout").fetchone() == (30_000,)  # as it was
    mine.rollback()


def test_a_queue_write_gives_up_after_the_busy_timeout(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbapi_writes, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    assert sqlite_db._sqlite_path is not None
    other = sqlite3.connect(sqlite_db._sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    mine = sqlite3.connect(sqlite_db._sqlite_path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_immediate(mine)
    assert not mine.in_transaction
    other.rollback()
    begin_immediate(mine)  # free again: in at once
    assert mine.in_transaction
    mine.rollback()
