"""The work process's CPU per request, one request at a time in one thread: a figure the
machine's load hardly moves (`profile_work.py` and `ack_latency.py` measure the real work
process, whose CPU per request also depends on how many requests each claim finds queued, which
a busy machine changes: the work process gives way to everything else and then finds more).

Each request is queued as the web process queues it (the app with `queue_lazy_work`, untimed),
then claimed (deleting the previous request's row, as the work loop does) and run by
`Worker._run_one` on this thread; the CPU of this thread for the claim and the run is the
first figure. It is not all a request costs the work process: the metric reads (a start's
baseline) run in the Datadog client's pool threads, and what the request queued in the outbox
(a start's "started" message in its status thread) is posted by the scheduler's thread. So
each request is also timed in this process's CPU (every thread), and then the outbox is drained
as the scheduler would, timed apart; their sum is what compares with the work process's CPU per
request in `ack_latency.py` and `start_burst.py`. The Slack and Datadog stand-ins run in a
child process (`benchlib.Fakes`), so their CPU is in none of it. The work loop's own cost
(waiting for nudges, handing rows to its threads) is not either. SQLite, as `ack_latency.py`
runs the bot.

Run: .venv/bin/python bench/work_costs.py   (knobs: BENCH_COST_N [300] per kind; run it on
another checkout with PYTHONPATH=that checkout for that checkout's code)
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ack_latency import RUN, TEAM, USER, PayloadDriver, _SlackStub, plan_clicks, status_messages
from benchlib import Fakes, run_main
from slack_bolt import BoltRequest

from bot.app import build_app
from bot.config import load_settings
from bot.delivery.scheduler import drain_outbox
from bot.edge import form_bodies, json_bodies
from bot.edge.workqueue import Worker, claim, delivery, queue_lazy_work
from bot.runtime import build_services
from storage.db import Database
from storage.migrate import upgrade
from storage.urls import queue_url
from tests.conftest import bot_env

N = int(os.environ.get("BENCH_COST_N", "300"))
FORM = {"content-type": ["application/x-www-form-urlencoded"]}


class Harness:
    def __init__(self, folder: Path, fakes: Fakes) -> None:
        env = bot_env(f"sqlite:///{folder / 'bot.db'}", fakes, fakes, LOG_LEVEL="WARNING")  # type: ignore[arg-type]
        env.update(LOG_FORMAT="json", ROLLOUT_METRICS="0")
        os.environ.update(env)
        settings = load_settings(env)
        upgrade(settings.database_url)
        upgrade(queue_url(settings.database_url))
        form_bodies.install()
        json_bodies.install()
        svc = self.svc = build_services(settings)
        self.queue = Database(queue_url(settings.database_url))
        self.web = build_app(svc, verify_requests=False)  # the web process's copy: acks and queues
        queue_lazy_work(self.web, self.queue)
        self.worker = Worker(build_app(svc, verify_requests=False), self.queue, threads=1, main=svc.db)
        self.done: list[int] = []

    def queue_one(self, body: str) -> None:
        with delivery():
            self.web.dispatch(BoltRequest(body=body, headers=dict(FORM)))

    def work_one(self) -> None:
        works = claim(self.queue, 1, lease_s=60, owner=self.worker.owner, done=self.done)
        for work in works:
            with self.worker._lock:
                self.worker._running.add(work.id)
            self.worker._run_one(work)
        self.done = self.worker._take_done()

    def cpu_per_request(self, bodies: list[str]) -> list[float]:
        return [thread for thread, _process, _outbox in self.costs(bodies)]

    def costs(self, bodies: list[str]) -> list[tuple[float, float, float]]:
        """Per request: this thread's CPU for its claim and run, the process's CPU for the
        same (its Datadog reads' threads too), and the process's CPU for the outbox drain
        after it."""
        spent: list[tuple[float, float, float]] = []
        for body in bodies:
            self.queue_one(body)  # untimed: the web process's part
            start, process = time.thread_time(), time.process_time()
            self.work_one()
            thread, process = time.thread_time() - start, time.process_time() - process
            drained = time.process_time()
            drain_outbox(self.svc)
            spent.append((thread, process, time.process_time() - drained))
        return spent


def report(kind: str, spent: list[tuple[float, float, float]]) -> None:
    ms = sorted(s[0] * 1000 for s in spent)
    trimmed = ms[len(ms) // 20 : len(ms) - len(ms) // 20] or ms  # a GC pause or two either side
    process = statistics.median(s[1] * 1000 for s in spent)
    outbox = statistics.median(s[2] * 1000 for s in spent)
    print(
        f"  {kind}: {statistics.fmean(ms):.2f} ms CPU per request (median {statistics.median(ms):.2f}, "
        f"trimmed mean {statistics.fmean(trimmed):.2f}; {len(ms)} requests); in the whole process "
        f"(median): {process:.2f} ms, and {outbox:.2f} ms to drain the outbox after it, "
        f"{process + outbox:.2f} ms in all"
    )


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    print(f"load average {os.getloadavg()[0]:.1f}; {N} requests per kind, one at a time, this thread's CPU")
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp, Fakes() as fakes:
        harness = Harness(Path(tmp), fakes)
        stub = _SlackStub(fakes)

        def driver(channel: str) -> PayloadDriver:
            return PayloadDriver(
                "http://unused", "unused", stub, team_id=TEAM, channel_id=channel, user_id=USER
            )  # type: ignore[arg-type]

        d_status, d_start = driver(f"CCSTATUS{RUN.upper()}"), driver(f"CCSTART{RUN.upper()}")
        features = [f"cost-{RUN}-{i:04d}" for i in range(N)]
        harness.cpu_per_request([d_status.command(f"start status-{RUN}")])
        harness.cpu_per_request([d_status.command("status") for _ in range(20)])  # warm-up
        kinds: list[tuple[str, Callable[[], list[str]]]] = [
            ("status", lambda: [d_status.command("status") for _ in range(N)]),
            ("start", lambda: [d_start.command(f"start {f}") for f in features]),
            (
                "click",
                lambda: [
                    c.body
                    for c in plan_clicks(
                        d_start, status_messages(fakes, d_start.channel_id, set(features)), N
                    )
                ],
            ),
        ]
        for kind, bodies in kinds:
            report(kind, harness.costs(bodies()))
            if kind == "start":
                time.sleep(2.0)  # the stand-in has every status message before the clicks read them
        harness.queue.dispose()
    return 0


if __name__ == "__main__":
    run_main(main)
