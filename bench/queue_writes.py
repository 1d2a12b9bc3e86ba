"""The web process's queue write alone, under concurrency: THREADS threads, each queuing
PER_THREAD clicks of its own through `QueuedLazyRunner.start` (as the web worker does behind
each ack: remember the interaction, insert the row, commit with whoever else is writing), on
SQLite (the queue's file of its own) and on Postgres. No HTTP, no Bolt, no work process: what
moves here is the write and the way concurrent writes share transactions.

Printed per backend: writes a second, each write's wall time p50 / p99, this process's CPU per
write, and how many transactions the writes took. Run it on another checkout with
PYTHONPATH=that checkout to compare two versions on the same machine, one after the other.

Run: .venv/bin/python bench/queue_writes.py   (knobs: BENCH_QW_THREADS [16], BENCH_QW_N [300]
per thread)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

from benchlib import machine_note, pct, postgres_available, postgres_database, run_main, table
from slack_bolt import BoltRequest
from sqlalchemy import func, select

from bot.edge.queuing import QueuedLazyRunner, delivery
from storage.db import Database
from storage.migrate import upgrade
from storage.models import PendingWork
from storage.urls import queue_url

THREADS = int(os.environ.get("BENCH_QW_THREADS", "16"))
PER_THREAD = int(os.environ.get("BENCH_QW_N", "300"))


def click(n: int) -> BoltRequest:
    payload = {
        "type": "block_actions",
        "team": {"id": "TQW"},
        "user": {"id": f"W{n % 7}"},
        "actions": [
            {"action_id": "checklist_toggle", "action_ts": f"1700000000.{n:06d}", "block_id": "c:1:0:t0"}
        ],
    }
    request = BoltRequest(
        body=urlencode({"payload": json.dumps(payload)}),
        headers={"content-type": "application/x-www-form-urlencoded", "x-slack-signature": "v0=abc"},
    )
    request.lazy_function_name = "toggle"
    return request


def measure(name: str, url: str) -> list[str]:
    db = Database(url, pool_size=THREADS)
    commits = [0]  # transactions the writes took
    runner = QueuedLazyRunner(db, logging.getLogger("bench"))
    original = runner.writes.writer.transaction

    @contextmanager
    def counted():  # type: ignore[no-untyped-def]
        with original() as cursor:
            yield cursor
        commits[0] += 1

    runner.writes.writer.transaction = counted  # type: ignore[method-assign]
    requests = [[click(t * PER_THREAD + i) for i in range(PER_THREAD)] for t in range(THREADS)]
    for n in range(50):  # warm-up: connections, statements compiled
        with delivery():
            runner.start(lambda: None, click(10_000_000 + n))
    commits[0] = 0
    walls: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS + 1)

    def deliver(mine: list[BoltRequest]) -> None:
        barrier.wait()
        times = []
        for request in mine:
            began = time.perf_counter()
            with delivery():
                runner.start(lambda: None, request)
            times.append(time.perf_counter() - began)
        with lock:
            walls.extend(times)

    threads = [threading.Thread(target=deliver, args=(mine,)) for mine in requests]
    for thread in threads:
        thread.start()
    barrier.wait()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    total = THREADS * PER_THREAD
    with db.reading() as session:
        rows = session.scalar(select(func.count()).select_from(PendingWork))
    db.dispose()
    assert rows == total + 50, f"{name}: {rows} rows queued of {total + 50}"
    return [
        name,
        f"{total / elapsed:,.0f}/s",
        f"{pct(walls, 50) * 1000:.2f} ms",
        f"{pct(walls, 99) * 1000:.2f} ms",
        f"{cpu / total * 1000:.3f} ms",
        f"{commits[0]} ({total / max(1, commits[0]):.1f} writes each)",
    ]


def main() -> int:
    print(
        f"{THREADS} threads x {PER_THREAD} clicks, each queued through QueuedLazyRunner\n{machine_note()}\n"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-qw-") as tmp:
        url = queue_url(f"sqlite:///{Path(tmp) / 'bot.db'}")
        upgrade(url)
        rows.append(measure("SQLite", url))
    if postgres_available():
        with postgres_database("bench_qw") as url:
            rows.append(measure("Postgres", url))
    table(["backend", "writes", "wall p50", "wall p99", "CPU/write", "transactions"], rows)
    return 0


if __name__ == "__main__":
    run_main(main)
