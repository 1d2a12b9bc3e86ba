"""Postgres connections are pinged at checkout only when in doubt (storage.db): a connection the
server closed is noticed and replaced before a transaction uses it (as `pool_pre_ping` did), and
one used a moment ago is not pinged again (the round trip per transaction it cost)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from storage import db as storage_db
from storage.db import Database
from tests.conftest import _admin_conninfo, fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def database() -> Iterator[Database]:
    with fresh_postgres_database("rollout_ping", migrate=False) as url:
        db = Database(url, pool_size=2)
        try:
            yield db
        finally:
            db.dispose()


class Pings:
    """Counts the dialect's pings (the real ones run)."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = db.engine.dialect.do_ping

        def counted(dbapi_conn: Any) -> bool:
            self.count += 1
            return real(dbapi_conn)

        monkeypatch.setattr(db.engine.dialect, "do_ping", counted)


def backend_pid(db: Database) -> int:
    with db.connected() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(pid: int) -> None:
    with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)  # the server's goodbye reaches the socket


def test_a_connection_the_server_closed_is_replaced_before_use(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = Pings(database, monkeypatch)
    first = backend_pid(database)
    terminate(first)
    # The very next transaction works, on a new connection.
    with database.transaction() as session:
        assert session.execute(text("SELECT 1")).scalar_one() == 1
    assert backend_pid(database) != first
    assert pings.count >= 1


def test_a_connection_used_a_moment_ago_is_not_pinged(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_pid(database)  # the pool holds one connection now
    pings = Pings(database, monkeypatch)
    for _ in range(5):
        with database.transaction() as session:
            session.execute(text("SELECT 1"))
        with database.reading() as session:
            session.execute(text("SELECT 1"))
    assert pings.count == 0


def test_a_connection_idle_for_long_is_pinged(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_pid(database)
    pings = Pings(database, monkeypatch)
    monkeypatch.setattr(storage_db, "PING_AFTER_IDLE_S", 0.0)
    backend_pid(database)
    assert pings.count == 1
