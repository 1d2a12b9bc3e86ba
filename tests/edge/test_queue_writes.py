"""The web process queues each interaction's work once, on its pooled DBAPI connection
(storage/dbapi_writes.py): the rows read back as SQLAlchemy wrote them, a second delivery is
dropped however the deliveries interleave, and a failed write is a SQLAlchemy error that
leaves nothing behind. On SQLite and on Postgres."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt import BoltRequest
from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError

from bot.edge.queuing import QueuedLazyRunner, QueueWrite, QueueWrites, delivery
from bot.edge.work_keys import command_fingerprint
from storage.db import Database
from storage.dbapi_writes import Cursor, Writer
from storage.models import PendingWork, SeenRequest, utcnow
from tests.edge.test_work_leases import leases

LOG = logging.getLogger("test")


def command(text: str, trigger: str, user: str = "W1") -> BoltRequest:
    body = urlencode(
        {
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": user,
            "command": "/rollout",
            "text": text,
            "trigger_id": trigger,
            "response_url": "http://127.0.0.1:9/response",
        }
    )
    request = BoltRequest(body=body, headers={"content-type": "application/x-www-form-urlencoded"})
    request.lazy_function_name = "work"
    return request


def click(ts: str, user: str = "W1") -> BoltRequest:
    payload = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": user},
        "actions": [{"action_id": "checklist_toggle", "action_ts": ts, "block_id": "checklist:1:0:t0"}],
    }
    request = BoltRequest(
        body=urlencode({"payload": json.dumps(payload)}),
        headers={"content-type": "application/x-www-form-urlencoded", "x-slack-signature": "v0=abc"},
    )
    request.lazy_function_name = "toggle"
    return request


def queued(db: Database) -> list[PendingWork]:
    with db.reading() as session:
        return list(session.scalars(select(PendingWork).order_by(PendingWork.id)))


def seen(db: Database) -> dict[str, str | None]:
    with db.reading() as session:
        return {row.key: row.fingerprint for row in session.scalars(select(SeenRequest))}


def test_a_typed_command_is_queued_as_it_arrived(db: Database) -> None:
    runner = QueuedLazyRunner(db, LOG)
    request = command("status checkout-v2", "trig-1")
    before = utcnow()
    with delivery():
        runner.start(lambda: None, request)
    [row] = queued(db)
    assert row.function_name == "work"
    assert row.body == request.raw_body
    assert row.headers == {"content-type": ["application/x-www-form-urlencoded"]}
    assert row.request_key == "command:T1:trig-1/work"
    assert leases(db) == {}  # nobody's yet: the queue write is the one INSERT
    assert row.created_at.tzinfo is not None and before <= row.created_at <= utcnow()
    assert seen(db) == {"command:T1:trig-1": command_fingerprint(request.body)}


def test_a_click_delivered_twice_is_queued_once(db: Database) -> None:
    runner = QueuedLazyRunner(db, LOG)
    with delivery():
        runner.start(lambda: None, click("1700000000.000100"))
    with delivery():
        runner.start(lambda: None, click("1700000000.000100"))  # Slack's second delivery
    with delivery():
        runner.start(lambda: None, click("1700000000.000200"))  # another click
    assert [row.request_key for row in queued(db)] == [
        "action:T1:W1:1700000000.000100/toggle",
        "action:T1:W1:1700000000.000200/toggle",
    ]
    assert queued(db)[0].headers["x-slack-signature"] == ["v0=abc"]
    assert set(seen(db)) == {"action:T1:W1:1700000000.000100", "action:T1:W1:1700000000.000200"}


def test_one_delivery_with_two_lazy_functions_queues_both_and_a_repeat_neither(db: Database) -> None:
    """Slack's second delivery of the command: its first lazy function is dropped as a repeat,
    and so is the second (the same interaction)."""
    runner = QueuedLazyRunner(db, LOG)
    for _delivery in range(2):
        first, second = command("start x", "trig-2"), command("start x", "trig-2")
        second.lazy_function_name = "announce"
        with delivery():
            runner.start(lambda: None, first)
            runner.start(lambda: None, second)
    assert [row.function_name for row in queued(db)] == ["work", "announce"]


def test_deliveries_racing_from_many_threads_queue_each_interaction_once(db: Database) -> None:
    runner = QueuedLazyRunner(db, LOG)
    clicks = [f"1700000001.{n:06d}" for n in range(20)]
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        for ts in clicks:  # every thread delivers every click
            with delivery():
                runner.start(lambda: None, click(ts))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = [row.request_key for row in queued(db)]
    assert sorted(keys) == sorted(f"action:T1:W1:{ts}/toggle" for ts in clicks)


def test_a_failed_write_is_rolled_back_and_said_as_a_sqlalchemy_error(db: Database) -> None:
    writer = Writer(db)
    queue = writer.prepare(insert(PendingWork), ["function_name", "body", "headers", "created_at"])
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = {"function_name": "work", "body": "{}", "headers": {}, "created_at": when}
    with pytest.raises(SQLAlchemyError), writer.transaction() as cursor:
        cursor.execute(queue, row)
        cursor.execute(queue, {**row, "body": None})  # NOT NULL
    assert queued(db) == []
    with writer.transaction() as cursor:  # the connection went back to the pool usable
        cursor.execute(queue, row)
    [stored] = queued(db)
    assert stored.created_at == when and stored.request_key is None


def test_a_statement_is_prepared_only_with_every_value_it_needs(db: Database) -> None:
    with pytest.raises(ValueError, match="request_key"):
        Writer(db).prepare(insert(PendingWork).values(request_key=None), ["function_name"])


def behind_a_locked_queue(
    db: Database, writes: QueueWrites, first: Callable[[], object], *others: Callable[[], object]
) -> None:
    """With the queue locked, `first` starts and waits for the lock, alone in its batch; the
    `others` then queue behind it (each in a thread of its own); the lock is let go, and every
    one of them finishes."""
    blocker = db.engine.raw_connection()
    cursor = blocker.cursor()
    if db.dialect == "sqlite":
        cursor.execute("BEGIN IMMEDIATE")
    else:
        cursor.execute("LOCK TABLE seen_request IN EXCLUSIVE MODE")
    threads = [threading.Thread(target=first)]
    threads[0].start()
    time.sleep(0.1)  # its write is waiting for the lock
    for call in others:
        threads.append(threading.Thread(target=call))
        threads[-1].start()
    deadline = time.monotonic() + 10
    while len(writes.commits._waiting) < len(others):
        assert time.monotonic() < deadline, "the writes never queued"
        time.sleep(0.005)
    blocker.rollback()
    blocker.close()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def delivered(runner: QueuedLazyRunner, request: BoltRequest) -> Callable[[], None]:
    """Slack's delivery of `request`, as the web process takes it."""

    def deliver() -> None:
        with delivery():
            runner.start(lambda: None, request)

    return deliver


def test_two_deliveries_of_one_click_in_one_shared_transaction_queue_it_once(db: Database) -> None:
    """While the queue is locked, the first delivery's write waits to begin and Slack's two
    deliveries of another click queue behind it: they share the next transaction."""
    runner = QueuedLazyRunner(db, LOG)
    again = click("1700000002.000200")
    behind_a_locked_queue(
        db,
        runner.writes,
        delivered(runner, click("1700000002.000100")),
        delivered(runner, again),
        delivered(runner, again),
    )
    assert [row.request_key for row in queued(db)] == [
        "action:T1:W1:1700000002.000100/toggle",
        "action:T1:W1:1700000002.000200/toggle",
    ]


def test_on_postgres_a_shared_transaction_writes_its_batch_in_two_statements(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writes that queued behind one waiting for the lock share a transaction; on Postgres
    they are written together (the interactions remembered, saying which were new; the new
    ones' rows), on SQLite one by one. Either way each delivery ends as it would alone: a click
    queued earlier and a second delivery within the batch are dropped, a typed command keeps
    its fingerprint."""
    statements: list[str] = []
    run, run_all = Cursor.execute, Cursor.all

    def counted(original: Any) -> Any:
        def call(self: Cursor, prepared: Any, values: Any) -> Any:
            statements.append(prepared.sql)
            return original(self, prepared, values)

        return call

    monkeypatch.setattr(Cursor, "execute", counted(run))
    monkeypatch.setattr(Cursor, "all", counted(run_all))
    runner = QueuedLazyRunner(db, LOG)
    with delivery():
        runner.start(lambda: None, click("1700000003.000100"))  # queued before
    statements.clear()
    typed = command("status checkout-v2", "trig-3")
    twice = click("1700000003.000300")
    behind_a_locked_queue(
        db,
        runner.writes,
        delivered(runner, click("1700000003.000200")),
        delivered(runner, click("1700000003.000100")),  # Slack again, long after
        delivered(runner, twice),
        delivered(runner, twice),  # and twice, within the batch
        delivered(runner, typed),
    )
    assert [row.request_key for row in queued(db)] == [
        "action:T1:W1:1700000003.000100/toggle",
        "action:T1:W1:1700000003.000200/toggle",
        "action:T1:W1:1700000003.000300/toggle",
        "command:T1:trig-3/work",
    ]
    assert seen(db) == {
        "action:T1:W1:1700000003.000100": None,
        "action:T1:W1:1700000003.000200": None,
        "action:T1:W1:1700000003.000300": None,
        "command:T1:trig-3": command_fingerprint(typed.body),
    }
    # The write alone: 2 (remember, row). The four behind it, one by one: 1 + 2 + 1 + 2.
    assert len(statements) == (2 + 2 if db.dialect == "postgresql" else 2 + 6), statements


def test_a_bad_row_in_a_shared_transaction_fails_only_its_own_delivery(db: Database) -> None:
    """Written together (Postgres), the batch's statement fails for one bad row: rolled back,
    the writes are run one by one, and only that one's caller hears of it; nothing it tried
    to remember stays remembered."""
    runner = QueuedLazyRunner(db, LOG)
    writes = runner.writes
    when = utcnow()

    def row(key: str, body: str | None) -> dict[str, Any]:
        return {
            "function_name": "toggle",
            "body": body,
            "headers": {},
            "created_at": when,
            "request_key": key,
        }

    answers: dict[str, Any] = {}

    def write(name: str, body: str | None, interaction: str | None) -> Callable[[], None]:
        def run() -> None:
            try:
                answers[name] = writes.commits.run(QueueWrite(writes, row(name, body), interaction, None))
            except Exception as error:  # noqa: BLE001 - the answer the test looks at
                answers[name] = error

        return run

    behind_a_locked_queue(
        db,
        writes,
        write("alone", "{}", "action:T1:W1:1"),
        write("good", "{}", "action:T1:W1:2"),
        write("bad", None, "action:T1:W1:3"),  # body NOT NULL
        write("no interaction", "{}", None),
    )
    assert isinstance(answers.pop("bad"), SQLAlchemyError)
    assert answers == {"alone": True, "good": True, "no interaction": True}
    assert [row.request_key for row in queued(db)] == ["alone", "good", "no interaction"]
    assert set(seen(db)) == {"action:T1:W1:1", "action:T1:W1:2"}
