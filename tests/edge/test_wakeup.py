"""The web process nudges the work process when it queues work; the work process still finds
work whose nudge never came. Finished rows are deleted with the next claim. On SQLite and on
Postgres."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import BoltRequest
from sqlalchemy import func, select

from bot.edge import wakeup
from bot.edge.queuing import QueuedLazyRunner, delivery
from bot.edge.workqueue import Worker, claim
from storage.db import Database
from storage.models import PendingWork, WorkerHeartbeat
from tests.edge.test_work_leases import FakeApp, pending, queue


def count(db: Database, model: Any) -> int:
    with db.reading() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def wait(what: str, done: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.02)


def started(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.loop, daemon=True)
    thread.start()
    return thread


def stopped(worker: Worker, thread: threading.Thread) -> None:
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()


def queue_as_the_web_process(db: Database, nudger: wakeup.Nudger) -> None:
    """A lazy listener's request, through the runner the web process uses."""
    runner = QueuedLazyRunner(db, logging.getLogger("test"), None, nudger)
    request = BoltRequest(
        body="command=%2Frollout&text=status&team_id=T1&user_id=U1&channel_id=C1&trigger_id=1.2.3",
        headers={"content-type": ["application/x-www-form-urlencoded"]},
    )
    request.lazy_function_name = "work"
    with delivery():
        runner.start(lambda: None, request)


def test_a_nudge_wakes_the_work_process(db: Database, tmp_path: Path, monkeypatch: Any) -> None:
    # No polling to speak of: only the nudge can make it look at the queue again.
    monkeypatch.setattr(wakeup, "FALLBACK_POLL_S", 3600.0)
    address = str(tmp_path / "wake.sock")
    app = FakeApp()
    worker = Worker(app, db, threads=2, main=db, wake_address=address)  # type: ignore[arg-type]
    thread = started(worker)
    try:
        wait(
            "the work process listening", lambda: os.path.exists(address) and count(db, WorkerHeartbeat) == 1
        )
        time.sleep(0.3)  # its first look at the (empty) queue is done: it waits for a nudge now
        queue_as_the_web_process(db, wakeup.Nudger(address))
        wait("the queued work run", lambda: app.ran == ["work"])
        wait("its row deleted", lambda: not pending(db))
    finally:
        stopped(worker, thread)
    assert not os.path.exists(address)  # the socket goes with the process


def test_work_whose_nudge_was_lost_is_found_by_polling(
    db: Database, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(wakeup, "FALLBACK_POLL_S", 0.2)
    address = str(tmp_path / "wake.sock")
    app = FakeApp()
    worker = Worker(app, db, threads=2, main=db, wake_address=address)  # type: ignore[arg-type]
    thread = started(worker)
    try:
        wait("the work process listening", lambda: os.path.exists(address))
        # Nudges sent elsewhere (lost), and work queued by someone who sends none (a replica).
        queue_as_the_web_process(db, wakeup.Nudger(str(tmp_path / "nobody.sock")))
        queue(db, 2)
        wait("the queued work run", lambda: sorted(app.ran) == ["toggle", "toggle", "work"])
        wait("their rows deleted", lambda: not pending(db))
    finally:
        stopped(worker, thread)


def test_a_work_process_without_a_socket_polls(db: Database) -> None:
    app = FakeApp()
    worker = Worker(app, db, threads=1, main=db, wake_address=None)  # type: ignore[arg-type]
    thread = started(worker)
    try:
        queue(db, 2)
        wait("the queued work run", lambda: app.ran == ["toggle", "toggle"] and not pending(db))
    finally:
        stopped(worker, thread)


def test_nudging_nobody_is_harmless(tmp_path: Path) -> None:
    wakeup.Nudger(str(tmp_path / "nobody.sock")).nudge()
    wakeup.Nudger(None).nudge()


def test_many_nudges_wake_the_listener_once_they_are_read(tmp_path: Path) -> None:
    event = threading.Event()
    listener = wakeup.listen(str(tmp_path / "wake.sock"), event)
    assert listener is not None
    try:
        nudger = wakeup.Nudger(listener.address)
        for _ in range(50):
            nudger.nudge()
        assert event.wait(10)
    finally:
        listener.close()


def test_each_work_process_is_nudged_at_its_own_socket(tmp_path: Path) -> None:
    events = [threading.Event(), threading.Event()]
    listeners = [wakeup.listen(str(tmp_path / f"wake-{n}.sock"), e) for n, e in enumerate(events)]
    try:
        assert all(listeners)
        # What `serve` puts in the web process's environment: every socket, joined.
        wakeup.Nudger(os.pathsep.join(str(lst.address) for lst in listeners if lst)).nudge()
        assert all(e.wait(10) for e in events)
    finally:
        for listener in listeners:
            if listener is not None:
                listener.close()


def test_serve_names_a_socket_for_each_work_process(monkeypatch: Any) -> None:
    monkeypatch.delenv(wakeup.WAKE_ENV, raising=False)
    addresses = wakeup.make_addresses(3)
    try:
        assert len(set(addresses)) == 3
        assert os.environ[wakeup.WAKE_ENV].split(os.pathsep) == addresses
        assert wakeup.Nudger(os.environ[wakeup.WAKE_ENV]).addresses == addresses
    finally:
        wakeup.remove_address(addresses[0])
    assert not os.path.exists(os.path.dirname(addresses[0]))


def test_finished_rows_are_deleted_with_the_next_claim(db: Database) -> None:
    ids = queue(db, 3)
    first = claim(db, 2, lease_s=60, owner="a")
    assert [w.id for w in first] == ids[:2]
    # The first is done: it goes in the transaction that claims the third.
    assert [w.id for w in claim(db, 5, lease_s=60, owner="a", done=[ids[0]])] == [ids[2]]
    assert [w.id for w in pending(db)] == ids[1:]
    # Nothing left to claim, and the finished rows still go.
    assert claim(db, 5, lease_s=60, owner="a", done=ids[1:]) == []
    assert count(db, PendingWork) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's")
def test_the_work_process_yields_the_cpu_to_the_web_process() -> None:
    code = (
        "import os; from bot.runtime import yield_to_the_web_process as y; y(); "
        "import sys; print(os.nice(0), os.sched_getscheduler(0) == os.SCHED_BATCH, sys.getswitchinterval())"
    )
    before = os.nice(0)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    niceness, batch, switch = out.split()
    assert int(niceness) > before and batch == "True"
    # and hands the interpreter on sooner than Python's 5 ms, for the queue's lock
    assert float(switch) < sys.getswitchinterval()
