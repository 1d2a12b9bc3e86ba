"""Where the due-work tick's time goes: cProfile of `bot.delivery.jobs.run_due` at 10,000
rollouts with 5 due (one of each kind in turn, as `scheduler_tick.py` arms them), on SQLite
(a temp file) or on the database `BENCH_PROFILE_URL` names. Prints the top frames by own time
and by cumulative time, and the CPU time per tick. Not in `run_all.sh`; ~30 s.

Run: .venv/bin/python bench/profile_tick.py   (knobs: BENCH_TICKS [20], BENCH_TOP [10])
"""

from __future__ import annotations

import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

from benchlib import Fakes, machine_note, run_main
from scheduler_tick import Bench, services

from bot.delivery import jobs
from storage.migrate import upgrade

TICKS = int(os.environ.get("BENCH_TICKS", "20"))
TOP = int(os.environ.get("BENCH_TOP", "10"))
# `BENCH_PROFILE_CLOCK=cpu` times the frames by the thread's CPU time, not the wall clock: on
# Postgres the wall clock puts the round trips' waiting in the driver's frames.
CPU_CLOCK = os.environ.get("BENCH_PROFILE_CLOCK", "wall") == "cpu"


def profile(url: str, slack_api: str) -> None:
    svc = services(url, slack_api)
    bench = Bench(svc)
    try:
        bench.add_pool()
        bench.grow_to(10_000)
        bench.arm(5)
        jobs.run_due(svc)  # warm-up: connections, statement caches, imports
        profiler = cProfile.Profile(time.thread_time) if CPU_CLOCK else cProfile.Profile()
        cpu = 0.0
        for _ in range(TICKS):
            bench.arm(5)
            began = time.thread_time()
            profiler.enable()
            ran = jobs.run_due(svc)
            profiler.disable()
            cpu += time.thread_time() - began
            assert ran == 5, f"a tick ran {ran} of 5 due jobs"
        print(f"{TICKS} ticks at 10,000 rollouts, 5 due: CPU {cpu / TICKS * 1000:.1f} ms per tick (profiled)")
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(TOP)
        stats.sort_stats("cumulative").print_stats(TOP)
    finally:
        svc.db.dispose()


def main() -> int:
    print(machine_note())
    with Fakes() as fakes:
        url = os.environ.get("BENCH_PROFILE_URL")
        if url:
            profile(url, fakes.slack_api)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
                url = f"sqlite:///{Path(tmp) / 'tick.db'}"
                upgrade(url)
                profile(url, fakes.slack_api)
    return 0


if __name__ == "__main__":
    run_main(main)
