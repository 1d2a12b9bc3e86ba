"""A finished piece of work does not wake the work process for a transaction of its own: its
row is deleted by the claim the next nudge starts, or at most `DONE_WITHIN_S` later when no
work comes. Claimed rows are plain values with the row's columns. On SQLite and on Postgres."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from bot.edge import wakeup, workqueue
from bot.edge.workqueue import Work, Worker, claim
from storage.db import Database
from storage.models import PendingWork
from tests.edge.test_wakeup import queue_as_the_web_process, started, stopped, wait
from tests.edge.test_work_leases import FakeApp, pending, queue


def test_a_finished_row_goes_with_the_next_nudges_claim(
    db: Database, tmp_path: Path, monkeypatch: Any
) -> None:
    # Neither polling nor the grace period: only the next claim can delete the finished row.
    monkeypatch.setattr(wakeup, "FALLBACK_POLL_S", 3600.0)
    monkeypatch.setattr(workqueue, "DONE_WITHIN_S", 3600.0)
    address = str(tmp_path / "wake.sock")
    app, go = FakeApp(), threading.Event()
    run = app.dispatch
    app.dispatch = lambda request: (go.wait(10), run(request))  # type: ignore[method-assign]
    worker = Worker(app, db, threads=2, main=db, wake_address=address)  # type: ignore[arg-type]
    with committed_queue_writes(db) as writes:
        thread = started(worker)
        try:
            wait("the work process listening", lambda: os.path.exists(address))
            nudger = wakeup.Nudger(address)
            queue_as_the_web_process(db, nudger)
            wait("the first claim", lambda: writes == [["UPDATE"]])
            time.sleep(0.2)  # the loop has looked again, found nothing, and waits for a nudge
            go.set()  # the work finishes only now
            wait("the first run", lambda: app.ran == ["work"])
            time.sleep(0.2)
            [first] = pending(db)
            assert first.claimed_by == worker.owner and writes == [["UPDATE"]]  # done, not deleted yet
            queue(db, 1)
            nudger.nudge()
            wait("the second run", lambda: app.ran == ["work", "toggle"])
            wait("the first row deleted", lambda: first.id not in [w.id for w in pending(db)])
            # The deletion rode on the claim of the second row: one transaction, no other write.
            assert writes == [["UPDATE"], ["DELETE", "UPDATE"]]
        finally:
            stopped(worker, thread)
    assert pending(db) == []  # what was done is deleted when the process stops


@contextmanager
def committed_queue_writes(db: Database) -> Iterator[list[list[str]]]:
    """The writes to `pending_work` of each committed transaction (its statements' verbs), as
    the database was sent them: on SQLite by the driver's trace of every pooled connection
    (the claim runs there on the DBAPI connection, past SQLAlchemy's events), on Postgres by
    SQLAlchemy's events."""
    committed: list[list[str]] = []
    open_: dict[int, list[str]] = {}

    def seen(connection: int, statement: str) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb == "BEGIN" or verb == "ROLLBACK":
            open_[connection] = []
        elif verb == "COMMIT" or (verb == "END" and "TRANSACTION" in statement.upper()):
            if open_.get(connection):
                committed.append(open_[connection])
            open_[connection] = []
        elif statement.lstrip().upper().startswith(("UPDATE PENDING_WORK", "DELETE FROM PENDING_WORK")):
            open_.setdefault(connection, []).append(verb)

    if db.dialect == "sqlite":

        def trace(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            dbapi_conn.set_trace_callback(lambda statement: seen(id(dbapi_conn), statement))

        event.listen(db.engine, "checkout", trace)
        try:
            yield committed
        finally:
            event.remove(db.engine, "checkout", trace)
        return

    def cursor(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen(id(conn), statement)

    def begin(conn: Any) -> None:
        seen(id(conn), "BEGIN")

    def commit(conn: Any) -> None:
        seen(id(conn), "COMMIT")

    def rollback(conn: Any) -> None:
        seen(id(conn), "ROLLBACK")

    hooks = {"before_cursor_execute": cursor, "begin": begin, "commit": commit, "rollback": rollback}
    for name, hook in hooks.items():
        event.listen(db.engine, name, hook)
    try:
        yield committed
    finally:
        for name, hook in hooks.items():
            event.remove(db.engine, name, hook)


def test_without_new_work_a_finished_row_goes_soon(db: Database, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(wakeup, "FALLBACK_POLL_S", 3600.0)
    address = str(tmp_path / "wake.sock")
    app = FakeApp()
    worker = Worker(app, db, threads=1, main=db, wake_address=address)  # type: ignore[arg-type]
    thread = started(worker)
    try:
        wait("the work process listening", lambda: os.path.exists(address))
        queue_as_the_web_process(db, wakeup.Nudger(address))
        wait("the run", lambda: app.ran == ["work"])
        wait("its row deleted", lambda: not pending(db), timeout=1 + workqueue.DONE_WITHIN_S)
    finally:
        stopped(worker, thread)


def test_a_claimed_row_is_the_rows_values(db: Database) -> None:
    [row_id] = queue(db, 1, key="k")
    [work] = claim(db, 1, lease_s=60, owner="me")
    assert isinstance(work, Work)
    with db.reading() as session:
        row = session.scalar(select(PendingWork).where(PendingWork.id == row_id))
        assert row is not None
        assert {name: getattr(row, name) for name in Work.__dataclass_fields__} == {
            name: getattr(work, name) for name in Work.__dataclass_fields__
        }
    assert (work.attempts, work.claimed_by, work.request_key, work.headers) == (1, "me", "k-0", {})


def test_a_claim_deletes_the_finished_rows_it_is_given_and_only_its_own(db: Database) -> None:
    queue(db, 4)
    mine = claim(db, 3, lease_s=60, owner="me")
    [theirs] = claim(db, 1, lease_s=60, owner="them")
    assert claim(db, 1, lease_s=60, owner="me", done=[w.id for w in mine] + [theirs.id]) == []
    assert [row.id for row in pending(db)] == [theirs.id]


def test_the_finished_rows_are_deleted_without_a_list_to_render() -> None:
    """Each claim deletes the rows finished since the last one: an expanding `IN` would be
    rendered into the statement again at every claim (one row per statement instead, run as
    an executemany)."""
    for statement in (workqueue._DELETE_DONE, workqueue._DELETE_DONE_LISTED.statement):
        compiled = statement.compile()
        assert not any(bind.expanding for bind in compiled.binds.values())
