"""How long the work process's claim holds the SQLite queue's write lock, which the web
process's queue write (so every ack) waits for: from `BEGIN IMMEDIATE` until `COMMIT` has
returned, timed in-process around the dialect's begin and commit, in wall time and in this
thread's CPU time (the two agree on an idle machine; the CPU figure hardly moves with load).

Each claim is the loop's under a burst of clicks: `ROWS` rows with 24 KB bodies (a click's
payload) are queued (untimed, as the web process would), and one claim leases them and deletes
4 rows finished since the last one. Also the claim's whole CPU, lock and all (`claim CPU`).

Given another checkout, runs alternate between it and this one (a child process each, the
checkout first on its path), `BENCH_LOCK_RUNS` runs of `BENCH_CLAIMS` claims per checkout and
row count; each figure is the median of the runs' medians.

Run: .venv/bin/python bench/claim_lock.py [OTHER_CHECKOUT]   (~1 min; knobs: BENCH_CLAIMS [300],
BENCH_LOCK_RUNS [3]; e.g. `git archive 21bc062 | tar -x -C /tmp/before` for OTHER_CHECKOUT)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
CLAIMS = int(os.environ.get("BENCH_CLAIMS", "300"))
RUNS = int(os.environ.get("BENCH_LOCK_RUNS", "3"))
DONE = 4  # rows finished since the last claim, deleted by it
WARM_UP = 20
BODY = "payload=" + "%7B%22type%22%3A%22block_actions%22" * 700  # ~24 KB, a click's form body


def measure(checkout: str, rows: int) -> dict[str, float]:
    """In a child process whose path starts at `checkout`: the medians of `CLAIMS` claims."""
    sys.path.insert(0, checkout)
    from statistics import median

    from sqlalchemy import insert

    from bot.edge.workqueue import claim
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import PendingWork, utcnow

    assert Path(sys.modules["bot"].__file__ or "").is_relative_to(checkout)
    held: list[float] = []
    held_cpu: list[float] = []
    whole_cpu: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/rollout-bot-queue.db"
        upgrade(url)
        db = Database(url)
        dialect: Any = db.engine.dialect
        begin, commit = dialect.do_begin, dialect.do_commit
        timing = {"on": False, "at": 0.0, "cpu": 0.0}

        def timed_begin(dbapi_connection: Any) -> None:
            timing["at"], timing["cpu"] = time.perf_counter(), time.thread_time()
            begin(dbapi_connection)

        def timed_commit(dbapi_connection: Any) -> None:
            commit(dbapi_connection)
            if timing["on"]:
                held.append(time.perf_counter() - timing["at"])
                held_cpu.append(time.thread_time() - timing["cpu"])

        dialect.do_begin, dialect.do_commit = timed_begin, timed_commit

        def arrive(count: int) -> None:
            with db.writing() as conn:
                values = {"function_name": "toggle", "body": BODY, "headers": {"content-type": ["x"]}}
                conn.execute(insert(PendingWork), [{**values, "created_at": utcnow()} for _ in range(count)])

        leased: list[int] = []
        for n in range(WARM_UP + CLAIMS):
            arrive(DONE + rows)
            # Untimed: DONE rows leased, and the last claim's rows deleted as finished.
            finished = [w.id for w in claim(db, DONE, lease_s=60, owner="me", done=leased)]
            timing["on"] = n >= WARM_UP
            started = time.thread_time()
            got = claim(db, rows, lease_s=60, owner="me", done=finished)
            if timing["on"]:
                whole_cpu.append(time.thread_time() - started)
            timing["on"] = False
            assert len(got) == rows and all(len(w.body) == len(BODY) for w in got)
            leased = [w.id for w in got]
        db.dispose()
    assert len(held) == CLAIMS
    return {
        "held": median(held) * 1000,
        "held_cpu": median(held_cpu) * 1000,
        "claim_cpu": median(whole_cpu) * 1000,
    }


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    from benchlib import machine_note, median, table

    this = str(HERE.parent.parent)
    other = sys.argv[1] if len(sys.argv) > 1 else None
    checkouts = [other, this] if other else [this]
    print(f"{machine_note()}; body {len(BODY)} bytes, {DONE} done rows, {RUNS} runs of {CLAIMS} claims")
    figures: dict[tuple[str, int], list[dict[str, float]]] = {}
    for run in range(RUNS):
        for checkout in checkouts:  # alternated, so a busier minute hits both
            for rows in (1, 8):
                out = subprocess.run(
                    [sys.executable, str(HERE), "--child", checkout, str(rows)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                got = json.loads(out.strip().splitlines()[-1])
                figures.setdefault((checkout, rows), []).append(got)
                print(f"  run {run + 1}, {checkout}, {rows} rows: {got}")
    rows_out = []
    for (checkout, rows), runs in figures.items():
        rows_out.append(
            [
                checkout,
                rows,
                f"{median([r['held'] for r in runs]):.3f} ms",
                f"{median([r['held_cpu'] for r in runs]):.3f} ms",
                f"{median([r['claim_cpu'] for r in runs]):.3f} ms",
            ]
        )
    print("medians of the runs' medians:")
    table(["checkout", "rows", "lock held", "lock held, CPU", "claim CPU"], rows_out)
    print(machine_note())
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]))))
    else:
        from benchlib import run_main

        run_main(main)
