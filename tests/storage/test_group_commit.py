"""Group commit (storage/dbapi_writes.py `GroupCommit`): writes that come while another commits
share the next transaction, each caller hears back only once its own write is committed, the
lead passes on so nobody's write waits behind more than one batch of others', and one failing
write fails only its own caller. On SQLite and on Postgres."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from storage.db import Database
from storage.dbapi_writes import Cursor, GroupCommit, Writer, _Signal
from storage.models import PendingWork

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Queue:
    """A `GroupCommit` whose writes each add a `pending_work` row, remembering the transaction
    (its cursor) and the thread each write ran in."""

    def __init__(self, db: Database, *, together: bool = False) -> None:
        self.db = db
        writer = Writer(db)
        self.insert = writer.prepare(insert(PendingWork), ["function_name", "body", "headers", "created_at"])
        self.commits = GroupCommit(writer, together=self.together if together else None)
        # Each batch `together` was given, by the names of its writes.
        self.batches: list[list[str]] = []
        # name -> (the transaction's cursor, kept so no other takes its id; the thread)
        self.ran: dict[str, tuple[Cursor, int]] = {}

    def write(
        self, name: str, *, body: str | None = "{}", hold: threading.Event | None = None
    ) -> Callable[[Cursor], str]:
        def work(cursor: Cursor) -> str:
            self.ran[name] = (cursor, threading.get_ident())
            row = {"function_name": name, "body": body, "headers": {}, "created_at": WHEN}
            cursor.execute(self.insert, row)
            if hold is not None:
                assert hold.wait(10)
            return name

        return work

    def together(self, cursor: Cursor, works: list[Callable[[Cursor], str]]) -> list[str]:
        """Each write in turn, as a batch (the writes' own statements stand for the multi-row
        ones of bot/edge/queuing.py)."""
        self.batches.append([])
        results = []
        for work in works:
            results.append(work(cursor))
            self.batches[-1].append(results[-1])
        return results

    def names(self) -> list[str]:
        with self.db.reading() as session:
            return sorted(session.scalars(select(PendingWork.function_name)))

    def waiting(self, count: int) -> None:
        """Until `count` writes wait for the transaction being committed."""
        deadline = time.monotonic() + 10
        while len(self.commits._waiting) < count:
            assert time.monotonic() < deadline, "the writes never queued"
            time.sleep(0.005)


def in_thread(call: Callable[[], Any], answers: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            answers[name] = call()
        except Exception as error:  # noqa: BLE001 - the answer the test looks at
            answers[name] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def while_the_first_commits(queue: Queue, *writes: tuple[str, str | None]) -> dict[str, Any]:
    """The first write holds its transaction open until the others are all waiting; then
    every caller's answer, by name."""
    hold = threading.Event()
    answers: dict[str, Any] = {}
    threads = [in_thread(lambda: queue.commits.run(queue.write("first", hold=hold)), answers, "first")]
    while "first" not in queue.ran:
        time.sleep(0.001)
    for name, body in writes:
        threads.append(
            in_thread(lambda n=name, b=body: queue.commits.run(queue.write(n, body=b)), answers, name)
        )  # type: ignore[misc]
    queue.waiting(len(writes))
    hold.set()
    for thread in threads:
        thread.join(10)
    return answers


def test_writes_that_come_while_one_commits_share_the_next_transaction(db: Database) -> None:
    queue = Queue(db)
    answers = while_the_first_commits(queue, *((f"w{n}", "{}") for n in range(5)))
    assert answers == {"first": "first", **{f"w{n}": f"w{n}" for n in range(5)}}
    assert queue.names() == sorted(["first", "w0", "w1", "w2", "w3", "w4"])
    transactions = {id(cursor) for cursor, _thread in queue.ran.values()}
    assert len(transactions) == 2  # the first alone, then the five together


def test_the_lead_passes_to_the_first_write_still_waiting(db: Database) -> None:
    queue = Queue(db)
    while_the_first_commits(queue, ("w0", "{}"), ("w1", "{}"))
    first_thread = queue.ran["first"][1]
    [next_leader] = {thread for name, (_t, thread) in queue.ran.items() if name != "first"}
    assert next_leader != first_thread  # its caller went back with its answer at once


def test_a_caller_hears_back_only_once_its_write_is_committed(db: Database) -> None:
    queue = Queue(db)
    found: dict[str, bool] = {}
    barrier = threading.Barrier(8)

    def write_then_look(name: str) -> None:
        barrier.wait()
        queue.commits.run(queue.write(name))
        found[name] = name in queue.names()  # read on another connection

    threads = [threading.Thread(target=write_then_look, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert found == {f"w{n}": True for n in range(8)}


@pytest.mark.parametrize("together", [False, True], ids=["one by one", "together"])
def test_one_failing_write_fails_only_its_own_caller(db: Database, together: bool) -> None:
    """Together, the broken write fails the whole batch's transaction: rolled back, each is
    then written alone, and still only the broken one's caller hears of it."""
    queue = Queue(db, together=together)
    answers = while_the_first_commits(queue, ("w0", "{}"), ("broken", None), ("w1", "{}"))  # body NOT NULL
    # Together, it got as far as the broken write before rolling back.
    assert queue.batches == ([["w0"]] if together else [])
    assert isinstance(answers["broken"], SQLAlchemyError)
    assert {name: answers[name] for name in ("first", "w0", "w1")} == {
        "first": "first",
        "w0": "w0",
        "w1": "w1",
    }
    assert queue.names() == ["first", "w0", "w1"]


def test_a_write_alone_that_fails_is_rolled_back_and_said(db: Database) -> None:
    queue = Queue(db)
    with pytest.raises(SQLAlchemyError):
        queue.commits.run(queue.write("broken", body=None))
    assert queue.commits.run(queue.write("w0")) == "w0"  # and the next one leads again
    assert queue.names() == ["w0"]


@pytest.mark.parametrize("together", [False, True], ids=["one by one", "together"])
def test_a_locked_database_fails_every_waiting_write_at_once(db: Database, together: bool) -> None:
    """A transaction that cannot begin fails its whole batch at once: each caller may try
    again, and none waits for every other's timeout in turn (written together or not)."""
    queue = Queue(db, together=together)
    attempts: list[int] = []
    begin = queue.commits.writer.transaction

    def refused() -> Any:
        attempts.append(1)
        raise OperationalError("BEGIN", {}, Exception("database is locked"))

    hold = threading.Event()
    answers: dict[str, Any] = {}
    first = in_thread(lambda: queue.commits.run(queue.write("first", hold=hold)), answers, "first")
    while "first" not in queue.ran:
        time.sleep(0.001)
    others = [
        in_thread(lambda n=n: queue.commits.run(queue.write(f"w{n}")), answers, f"w{n}") for n in range(4)
    ]  # type: ignore[misc]
    queue.waiting(4)
    queue.commits.writer.transaction = refused  # type: ignore[method-assign]
    hold.set()
    for thread in [first, *others]:
        thread.join(10)
    queue.commits.writer.transaction = begin  # type: ignore[method-assign]
    assert answers["first"] == "first"
    assert all(isinstance(answers[f"w{n}"], OperationalError) for n in range(4))
    assert len(attempts) == 1  # one try for the four, not one each
    assert queue.batches == []  # and, together, not tried again one by one


def test_a_caller_interrupted_while_waiting_passes_the_lead_on(db: Database) -> None:
    queue = Queue(db)
    hold = threading.Event()
    answers: dict[str, Any] = {}
    first = in_thread(lambda: queue.commits.run(queue.write("first", hold=hold)), answers, "first")
    while "first" not in queue.ran:
        time.sleep(0.001)
    waiting = _Signal.wait

    def interrupted(signal: _Signal) -> None:
        waiting(signal)  # until woken to lead
        if threading.current_thread().name == "leaves":
            raise KeyboardInterrupt

    leaving = threading.Thread(
        target=lambda: _swallow(lambda: queue.commits.run(queue.write("left"))), name="leaves"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Signal, "wait", interrupted)
        leaving.start()
        queue.waiting(1)
        later = in_thread(lambda: queue.commits.run(queue.write("later")), answers, "later")
        queue.waiting(2)
        hold.set()
        for thread in (first, leaving, later):
            thread.join(10)
    assert answers == {"first": "first", "later": "later"}  # the lead went on to "later"
    assert queue.commits.run(queue.write("after")) == "after"
    assert queue.names() == ["after", "first", "later"]


def _swallow(call: Callable[[], Any]) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        call()


def test_a_batch_is_written_together_when_it_can_be(db: Database) -> None:
    queue = Queue(db, together=True)
    answers = while_the_first_commits(queue, *((f"w{n}", "{}") for n in range(3)))
    assert answers == {"first": "first", "w0": "w0", "w1": "w1", "w2": "w2"}
    assert queue.batches == [["w0", "w1", "w2"]]  # the first was alone: written on its own
    assert queue.names() == ["first", "w0", "w1", "w2"]


def test_a_callers_signal_wakes_its_waiter_once_however_often_it_is_set() -> None:
    """The leader sets the signal of every caller in its batch, its own included, and the next
    leader's too: set before the wait, set twice, or set while waited for, the wait returns."""

    def waited(signal: _Signal) -> threading.Event:
        """Waits for `signal` in a thread of its own; set when the wait returned."""
        woke = threading.Event()

        def wait_then_say() -> None:
            signal.wait()
            woke.set()

        threading.Thread(target=wait_then_say, daemon=True).start()
        return woke

    early = _Signal()
    early.set()
    early.set()  # again: nothing happens
    assert waited(early).wait(5)  # returns at once

    later = _Signal()
    woke = waited(later)
    assert not woke.wait(0.05)  # still waiting
    later.set()
    assert woke.wait(5)
