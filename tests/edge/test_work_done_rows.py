"""A finished piece of work does not wake the work process for a transaction of its own: its
row is deleted by the claim the next nudge starts, or at most `DONE_WITHIN_S` later when no
work comes, and its lease with it. A claim writes leases, never the queued request's row.
Claimed rows are plain values with the row's and its lease's columns. On SQLite and on
Postgres."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, select

from bot.edge import leases as lease_statements
from bot.edge import wakeup, workqueue
from bot.edge.workqueue import Work, Worker, claim, release, renew
from storage.db import Database
from storage.migrate import upgrade
from storage.models import PendingWork, WorkLease, utcnow
from tests.edge.test_wakeup import queue_as_the_web_process, started, stopped, wait
from tests.edge.test_work_leases import FakeApp, leases, pending, queue


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
            wait("the first claim", lambda: writes == [[SWEPT], [LEASED]])
            time.sleep(0.2)  # the loop has looked again, found nothing, and waits for a nudge
            go.set()  # the work finishes only now
            wait("the first run", lambda: app.ran == ["work"])
            time.sleep(0.2)
            [first] = pending(db)
            assert leases(db)[first.id].claimed_by == worker.owner
            assert writes == [[SWEPT], [LEASED]]  # done, not deleted yet
            queue(db, 1)
            nudger.nudge()
            wait("the second run", lambda: app.ran == ["work", "toggle"])
            wait("the first row deleted", lambda: first.id not in [w.id for w in pending(db)])
            assert first.id not in leases(db)  # its lease went with it
            # The deletion rode on the claim of the second row: one transaction, no other write.
            assert writes == [[SWEPT], [LEASED], [DELETED, LEASED]]
        finally:
            stopped(worker, thread)
    assert pending(db) == [] and leases(db) == {}  # what was done is deleted when the process stops


LEASED = ("INSERT", "work_lease")  # the claim's upsert: a lease row, new or taken over
DELETED = ("DELETE", "pending_work")  # a finished row, and its lease with it (ON DELETE CASCADE)
SWEPT = ("DELETE", "work_lease")  # the purge, as the loop starts: leases whose row is gone
# The writes the work process may send, by verb and table: a queued row is never updated.
_WRITES = re.compile(r"\b(INSERT INTO|UPDATE|DELETE FROM)\s+(pending_work|work_lease)\b", re.IGNORECASE)


@contextmanager
def committed_queue_writes(db: Database) -> Iterator[list[list[tuple[str, str]]]]:
    """The writes to `pending_work` and `work_lease` of each committed transaction (each
    statement's verb and table, found anywhere in it: Postgres's claim leases in a WITH), as
    the database was sent them: on SQLite by the driver's trace of every pooled connection
    (the claim runs there on the DBAPI connection, past SQLAlchemy's events), on Postgres by
    SQLAlchemy's events. Rows queued (INSERT INTO pending_work) are left out: the web
    process's queue write runs on the DBAPI connection on both, so Postgres's events miss it."""
    committed: list[list[tuple[str, str]]] = []
    open_: dict[int, list[tuple[str, str]]] = {}

    def seen(connection: int, statement: str) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb == "BEGIN" or verb == "ROLLBACK":
            open_[connection] = []
        elif verb == "COMMIT" or (verb == "END" and "TRANSACTION" in statement.upper()):
            if open_.get(connection):
                committed.append(open_[connection])
            open_[connection] = []
        else:
            for found, table in _WRITES.findall(statement):
                write = (found.split()[0].upper(), table.lower())
                if write != ("INSERT", "pending_work"):
                    open_.setdefault(connection, []).append(write)

    if db.dialect == "sqlite":

        def trace(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            last = [""]

            def traced(statement: str) -> None:
                # A statement is traced again as a trigger program of its starts, with its own
                # text: the DELETE of a finished row, once more for its lease's ON DELETE CASCADE.
                if statement != last[0]:
                    seen(id(dbapi_conn), statement)
                last[0] = statement

            dbapi_conn.set_trace_callback(traced)

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
        lease = session.scalar(select(WorkLease).where(WorkLease.work_id == row_id))
        assert row is not None and lease is not None
        # The lease's three from its own row (pending_work keeps unused columns of the same names).
        stored = {
            name: getattr(lease if hasattr(lease, name) else row, name) for name in Work.__dataclass_fields__
        }
        assert stored == {name: getattr(work, name) for name in Work.__dataclass_fields__}
    assert (work.attempts, work.claimed_by, work.request_key, work.headers) == (1, "me", "k-0", {})


def test_a_claim_deletes_the_finished_rows_it_is_given_and_only_its_own(db: Database) -> None:
    queue(db, 4)
    mine = claim(db, 3, lease_s=60, owner="me")
    [theirs] = claim(db, 1, lease_s=60, owner="them")
    assert claim(db, 1, lease_s=60, owner="me", done=[w.id for w in mine] + [theirs.id]) == []
    assert [row.id for row in pending(db)] == [theirs.id]
    assert list(leases(db)) == [theirs.id]  # no lease left behind by the rows deleted


CLICK_BODY = "payload=" + "%7B%22type%22%3A%22block_actions%22" * 700  # a click's 24 KB body


def queue_clicks(db: Database, n: int) -> None:
    with db.transaction() as session:
        session.execute(
            insert(PendingWork),
            [{"function_name": "toggle", "body": CLICK_BODY, "headers": {}, "created_at": utcnow()}] * n,
        )


def test_a_claim_writes_leases_and_never_the_queued_requests(db: Database) -> None:
    """On SQLite an UPDATE of a queued row rewrites its record, a click's 24 KB body and all,
    with the queue's write lock held (which every ack's queue write waits for): a claim, a
    claim again of a lease that ran out, renewing and releasing write only lease rows."""
    queue_clicks(db, 12)
    with committed_queue_writes(db) as writes:
        first = claim(db, 4, lease_s=60, owner="me")
        second = claim(db, 8, lease_s=60, owner="me", done=[w.id for w in first])
        renew(db, [w.id for w in second], lease_s=60, owner="me")
        release(db, second[0], 0)
        [again] = claim(db, 1, lease_s=60, owner="other")
    assert (again.id, again.attempts, again.body) == (second[0].id, 2, CLICK_BODY)
    assert writes == [
        [LEASED],
        [DELETED, LEASED],
        [("UPDATE", "work_lease")],
        [("UPDATE", "work_lease")],
        [LEASED],
    ]
    assert all(len(w.body) == len(CLICK_BODY) for w in second)


def test_on_sqlite_a_claim_writes_a_few_pages_not_the_bodies(tmp_path: Path) -> None:
    """What SQLite wrote, whatever the statements: a claim of 8 rows with 24 KB bodies (7 pages
    each) adds a few pages to the write-ahead log, where rewriting the rows added over 48."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    upgrade(url)
    db = Database(url)
    try:
        queue_clicks(db, 8)
        with db.connected() as conn:
            page = conn.exec_driver_sql("PRAGMA page_size").scalar()
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(f"{tmp_path / 'queue.db'}-wal")
        assert wal.stat().st_size == 0
        assert len(claim(db, 8, lease_s=60, owner="me")) == 8
        frames = (wal.stat().st_size - 32) // (page + 24)  # the WAL header, then a header per page
        assert 0 < frames <= 4
    finally:
        db.dispose()


def test_the_finished_rows_are_deleted_without_a_list_to_render() -> None:
    """Each claim deletes the rows finished since the last one: an expanding `IN` would be
    rendered into the statement again at every claim (one row per statement instead, run as
    an executemany)."""
    for statement in (lease_statements._DELETE_DONE, lease_statements._DELETE_DONE_LISTED.statement):
        compiled = statement.compile()
        assert not any(bind.expanding for bind in compiled.binds.values())
