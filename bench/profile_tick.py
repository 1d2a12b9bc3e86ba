"""Where the due-work tick's time goes: cProfile of `bot.delivery.jobs.run_due` at 10,000
rollouts with 5 due (one of each kind in turn, as `scheduler_tick.py` arms them), on SQLite
(a temp file) or on Postgres: `BENCH_PROFILE_URL` names the server (a `postgresql://` URL, as
`BENCH_POSTGRES_URL` does for `scheduler_tick.py`), and the run creates, migrates and drops a
throw-away database of its own there, as `scheduler_tick.py` does. Prints the top frames by own time
and by cumulative time, and the CPU time per tick. Not in `run_all.sh`; ~30 s.

`BENCH_PROFILE_SQL=1` counts instead of profiling: the statements, transactions and round
trips of a tick, each distinct statement with its count per tick and the wall time from its
send to its result, and on Postgres the plan of each (`EXPLAIN (ANALYZE, BUFFERS)` with the
parameters a tick sent, in a transaction rolled back, after the ticks).

Run: .venv/bin/python bench/profile_tick.py   (knobs: BENCH_TICKS [20], BENCH_TOP [10])
"""

from __future__ import annotations

import cProfile
import os
import pstats
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import Fakes, cpu_seconds, machine_note, postgres_database, run_main
from scheduler_tick import Bench, services
from sqlalchemy import Engine, event, text

from bot.delivery import jobs
from bot.services import Services
from storage.dbapi_statements import Fixed
from storage.migrate import upgrade

TICKS = int(os.environ.get("BENCH_TICKS", "20"))
TOP = int(os.environ.get("BENCH_TOP", "10"))
# `BENCH_PROFILE_CLOCK=cpu` times the frames by the thread's CPU time, not the wall clock: on
# Postgres the wall clock puts the round trips' waiting in the driver's frames.
CPU_CLOCK = os.environ.get("BENCH_PROFILE_CLOCK", "wall") == "cpu"
SQL = os.environ.get("BENCH_PROFILE_SQL") == "1"


@dataclass
class Statement:
    text: str
    params: Any  # the first parameters sent, for EXPLAIN
    count: int = 0
    seconds: float = 0.0


@dataclass
class SqlTrace:
    """Every statement sent on the engine while `on`, by text, and the transactions' ends."""

    engine: Engine
    on: bool = False
    statements: dict[str, Statement] = field(default_factory=dict)
    commits: int = 0
    rollbacks: int = 0
    _began: float = 0.0

    round_trips: int = 0

    def __post_init__(self) -> None:
        if self.engine.dialect.name == "postgresql":
            import psycopg

            # Every exchange with the server (a statement, BEGIN, COMMIT) runs in a generator
            # that `wait` drives, and waits to read the server's answer (a large answer may
            # be waited for more than once, so this is an upper bound); one that never waits
            # to read (setting autocommit, a rollback with no transaction open) sent nothing.
            wait = psycopg.Connection.wait

            def counted(conn: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
                return wait(conn, self._counting(gen), *args, **kwargs)

            psycopg.Connection.wait = counted  # type: ignore[method-assign]
        # The statements run on the DBAPI connection (`storage.dbapi_statements`) pass no
        # engine event: counted where they run.
        run = Fixed.run

        def fixed_run(fixed: Fixed, on: Any, values: Any) -> Any:
            compiled = fixed._for(self.engine.dialect)
            sent = compiled.parameters(values)  # as the driver gets them, for EXPLAIN
            self._before(None, None, compiled.sql, sent, None, False)
            try:
                return run(fixed, on, values)
            finally:
                self._after(None, None, compiled.sql, sent, None, False)

        Fixed.run = fixed_run  # type: ignore[method-assign]
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        event.listen(self.engine, "commit", self._commit)
        event.listen(self.engine, "rollback", self._rollback)

    def _counting(self, gen: Any) -> Any:
        from psycopg.waiting import Wait

        sent = None
        while True:
            try:
                waiting = gen.send(sent)
            except StopIteration as done:
                return done.value
            self.round_trips += self.on and waiting == Wait.R
            sent = yield waiting

    def _before(self, _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if self.on:
            self.statements.setdefault(statement, Statement(statement, params))
            self._began = time.perf_counter()

    def _after(self, _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, many: bool) -> None:
        if self.on:
            found = self.statements[statement]
            found.count += 1
            found.seconds += time.perf_counter() - self._began

    def _commit(self, _conn: Any) -> None:
        self.commits += self.on

    def _rollback(self, _conn: Any) -> None:
        self.rollbacks += self.on

    def report(self, ticks: int) -> None:
        sent = sum(s.count for s in self.statements.values())
        print(
            f"per tick: {sent / ticks:.1f} statements, {self.commits / ticks:.1f} commits, "
            f"{self.rollbacks / ticks:.1f} rollbacks (read transactions end so), "
            f"{self.round_trips / ticks:.1f} round trips (Postgres)"
        )
        print(f"{'per tick':>8} {'ms each':>8}  statement")
        for s in sorted(self.statements.values(), key=lambda s: -s.seconds):
            one_line = " ".join(s.text.split())
            print(f"{s.count / ticks:8.1f} {s.seconds / s.count * 1000:8.3f}  {one_line[:160]}")

    def explain(self) -> None:
        """Each distinct statement's plan as it ran, with the parameters first sent."""
        if self.engine.dialect.name != "postgresql":
            return
        for s in self.statements.values():
            if isinstance(s.params, (list, tuple)):
                continue  # executemany
            with self.engine.connect() as conn:
                cursor = conn.connection.dbapi_connection.cursor()
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + s.text, s.params or None)
                plan = "\n".join(f"    {r[0]}" for r in cursor.fetchall())
                conn.rollback()
            print(f"\n{' '.join(s.text.split())[:300]}\n{plan}")


def profile(url: str, slack_api: str) -> None:
    svc = services(url, slack_api)
    bench = Bench(svc)
    try:
        bench.add_pool()
        bench.grow_to(10_000)
        bench.arm(5)
        jobs.run_due(svc)  # warm-up: connections, statement caches, imports
        if SQL:
            trace(svc, bench)
            return
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


def _backends(svc: Services) -> tuple[int, ...]:
    """The server processes serving this database's connections (Postgres on this machine)."""
    if svc.db.dialect != "postgresql":
        return ()
    with svc.db.engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        return tuple(pid for pid in pids if Path(f"/proc/{pid}/stat").exists())


def trace(svc: Services, bench: Bench) -> None:
    sql = SqlTrace(svc.db.engine)
    backends = _backends(svc)  # the pool's connections, opened by the warm-up
    wall = cpu = server = 0.0
    for _ in range(TICKS):
        bench.arm(5)
        sql.on = True
        began, began_cpu, began_server = time.perf_counter(), time.thread_time(), cpu_seconds(backends)
        ran = jobs.run_due(svc)
        wall += time.perf_counter() - began
        cpu += time.thread_time() - began_cpu
        server += cpu_seconds(backends) - began_server
        sql.on = False
        assert ran == 5, f"a tick ran {ran} of 5 due jobs"
    # Where a tick's wall time goes: the ticking thread's CPU, the server's (Postgres here:
    # its backends' CPU from /proc, in clock ticks, so only a sum over many ticks means
    # anything), and the rest, waiting (round trips, and the CPU other processes hold).
    print(
        f"per tick: wall {wall / TICKS * 1000:.1f} ms, ticking thread CPU {cpu / TICKS * 1000:.1f} ms, "
        f"server CPU {server / TICKS * 1000:.1f} ms ({len(backends)} backends)"
    )
    sql.report(TICKS)
    sql.explain()


def main() -> int:
    print(machine_note())
    with Fakes() as fakes:
        url = os.environ.get("BENCH_PROFILE_URL")
        if url:
            # The named server gets a fresh database of its own (migrated, dropped afterwards):
            # the bench bulk-loads rows, so it must never run on a database someone uses.
            with postgres_database("bench_profile", url) as pg_url:
                profile(pg_url, fakes.slack_api)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
                url = f"sqlite:///{Path(tmp) / 'tick.db'}"
                upgrade(url)
                profile(url, fakes.slack_api)
    return 0


if __name__ == "__main__":
    run_main(main)
