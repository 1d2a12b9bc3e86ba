"""`storage.dbapi_statements.Fixed`: a statement run on the DBAPI connection gives the rows
SQLAlchemy's execution gives (converted values: UTC datetimes, enums, JSON, floats, a fixed IN
list), sees what the session has not flushed yet, writes in the session's transaction, and
fails as SQLAlchemy's own errors do, on each backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from bot.usecases import view_reads
from storage import job_queries
from storage.db import Database
from storage.dbapi_statements import Fixed, _Compiled
from storage.enums import EventKind, SnapshotKind
from storage.models import Event, HandledRequest, MetricSnapshot, PendingWork
from storage.rows import insert_new
from tests.delivery.test_job_reads import T0, _rollout

_SNAPSHOTS = (
    select(MetricSnapshot.kind, MetricSnapshot.taken_at, MetricSnapshot.verdict, MetricSnapshot.passed)
    .where(
        MetricSnapshot.rollout_id == bindparam("rollout_id"),
        MetricSnapshot.kind.in_((SnapshotKind.GATE, SnapshotKind.CHECK)),  # fixed: expanded once
    )
    .order_by(MetricSnapshot.id)
)


@pytest.mark.parametrize(
    "statement",
    [_SNAPSHOTS, job_queries._DIGEST_ROW, job_queries._EVENTS_UNTIL, view_reads._PLAN, view_reads._ROLLOUT],
    ids=["snapshots", "digest_row", "events", "plan", "view_row"],
)
def test_its_rows_are_sqlalchemys(db: Database, statement: object) -> None:
    rollout_id = _rollout(db)
    values = {"rollout_id": rollout_id, "until": T0 + timedelta(days=9)}
    fixed = Fixed(statement)  # type: ignore[arg-type]
    with db.reading() as session:
        expected = [tuple(r) for r in session.connection().execute(statement, values)]  # type: ignore[call-overload]
        keys = tuple(session.connection().execute(statement, values).keys())  # type: ignore[call-overload]
        for _ in range(2):  # the second run converts by the converters the first one set up
            assert fixed.all(session, values) == expected
        assert fixed.keys(session) == keys
    assert expected


def test_it_sees_what_the_session_has_not_flushed_and_writes_in_its_transaction(db: Database) -> None:
    rollout_id = _rollout(db)
    count = Fixed(select(Event.id).where(Event.rollout_id == bindparam("rollout_id")))
    made = Fixed(insert(HandledRequest).values(key=bindparam("key"), at=bindparam("at")))
    with db.transaction() as session:
        before = len(count.all(session, {"rollout_id": rollout_id}))
        session.add(Event(rollout_id=rollout_id, kind=EventKind.PAUSED, actor_id="U1", at=T0, data={}))
        assert len(count.all(session, {"rollout_id": rollout_id})) == before + 1
        assert made.rowcount(session, {"key": "k1", "at": T0}) == 1
    with db.transaction() as session:
        assert made.rowcount(session, {"key": "k2", "at": T0}) == 1
        session.rollback()
    with db.reading() as session:
        assert session.get(HandledRequest, "k1") is not None and session.get(HandledRequest, "k2") is None


def test_a_driver_error_is_sqlalchemys(db: Database) -> None:
    made = Fixed(insert(HandledRequest).values(key=bindparam("key"), at=bindparam("at")))
    with db.transaction() as session:
        made.run(session, {"key": "k", "at": T0})
    with pytest.raises(IntegrityError), db.transaction() as session:
        made.run(session, {"key": "k", "at": T0})
    with db.reading() as session:  # the connection went back to the pool usable
        assert session.get(HandledRequest, "k") is not None


def test_an_in_list_it_is_given_is_refused() -> None:
    statement = select(Event.id).where(Event.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="IN list"):
        _Compiled(statement, sqlite.dialect())


def test_a_none_for_a_json_column_is_written_as_sqlalchemy_writes_it(db: Database) -> None:
    """JSON null, as the ORM and SQLAlchemy's executemany write it (and Postgres' path does),
    not SQL NULL: here the column is NOT NULL, so SQL NULL would refuse the row."""
    work = PendingWork(
        function_name="f", body="{}", headers=None, created_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    with db.transaction() as session:
        insert_new(session, [work], ids=False)
    with db.connected() as conn:
        assert conn.execute(text("SELECT headers IS NULL FROM pending_work")).scalar() in (0, False)
        assert conn.execute(select(PendingWork.headers)).scalar() is None  # read back as None
