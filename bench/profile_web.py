"""Where the web worker's time goes, per kind of request: `py-spy` samples gunicorn's worker of
the real `rollout-bot serve` (started as `ack_latency.py` starts it) while a burst of one kind
(`/rollout status`, `/rollout start`, a checklist tick) is sent at concurrency 16. Prints the web
worker's and the work process's CPU per request and the web worker's top frames, by own
samples and by samples under them (`profile_work.py` does the same for the work process).

Not in `run_all.sh`; ~60 s. Needs `py-spy`, as `profile_work.py`.

Run: .venv/bin/python bench/profile_web.py   (knobs: BENCH_PROFILE_N [600] per kind,
BENCH_TOP [25], BENCH_PROFILE_KEEP=dir to keep the raw collapsed stacks)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ack_latency import (
    RUN,
    SECRET,
    TEAM,
    USER,
    PayloadDriver,
    _SlackStub,
    blast,
    headers_posted,
    plan_clicks,
    settle,
    start_bot,
    status_messages,
    wait_for,
)
from benchlib import Fakes, children, cpu_seconds, gunicorn_worker, is_work_process, machine_note, run_main
from profile_work import py_spy, summarize

N = int(os.environ.get("BENCH_PROFILE_N", "600"))
TOP = int(os.environ.get("BENCH_TOP", "25"))
KEEP = os.environ.get("BENCH_PROFILE_KEEP")


def main() -> int:
    spy = py_spy()
    print(
        f"{machine_note()}\n{N} requests of each kind at concurrency 16, the web worker sampled by py-spy\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-profweb-") as tmp, Fakes() as fakes:
        folder = Path(tmp)
        stub = _SlackStub(fakes)
        bot = start_bot(folder, fakes, WEB_THREADS="16")
        assert bot.proc is not None
        try:
            web = gunicorn_worker(bot.proc.pid)
            work = next(k for k in children(bot.proc.pid) if is_work_process(k))

            def driver(channel: str) -> PayloadDriver:
                return PayloadDriver(bot.url, SECRET, stub, team_id=TEAM, channel_id=channel, user_id=USER)  # type: ignore[arg-type]

            d_status, d_start = driver(f"CWSTATUS{RUN.upper()}"), driver(f"CWSTART{RUN.upper()}")
            blast(bot.port, [d_status.command(f"start status-{RUN}")])
            features = [f"profw-{RUN}-{i:04d}" for i in range(N)]
            warm = [f"warmw-{RUN}-{i}" for i in range(20)]
            blast(bot.port, [d_start.command(f"start {f}") for f in warm])
            wait_for("warm-up", lambda: len(headers_posted(fakes, set(warm))) == len(warm), 30)
            blast(bot.port, [d_status.command("status") for _ in range(50)])
            settle(work, "warm-up", 20)

            for kind in ("status", "start", "click"):
                if kind == "status":
                    sent = [d_status.command("status") for _ in range(N)]
                elif kind == "start":
                    sent = [d_start.command(f"start {f}") for f in features]
                else:
                    wait_for("statuses", lambda: len(headers_posted(fakes, set(features))) >= N, 60, 0.5)
                    messages = status_messages(fakes, d_start.channel_id, set(features))
                    sent = [c.body for c in plan_clicks(d_start, messages, N)]
                out = folder / f"{kind}.txt"
                command = [spy, "record", "--pid", str(web), "--rate", "250", "--format", "raw"]
                command += ["--output", str(out), "--nonblocking", "--gil"]
                recorder = subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                time.sleep(1.0)  # py-spy attaches
                before, work_before = cpu_seconds(web), cpu_seconds(work)
                res = blast(bot.port, sent)
                spent = cpu_seconds(web) - before
                recorder.send_signal(signal.SIGINT)
                try:
                    _, err = recorder.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    recorder.kill()
                    _, err = recorder.communicate()
                settle(work, kind, 60)
                work_spent = cpu_seconds(work) - work_before
                per = max(res.sent, 1)
                print(
                    f"{kind}: {res.sent} sent in {res.elapsed:.1f} s, statuses {dict(res.statuses)}; "
                    f"web CPU {spent / per * 1000:.2f} ms/req, work CPU {work_spent / per * 1000:.2f} ms/req"
                )
                if not out.exists():
                    print(f"  (py-spy wrote nothing: {err.decode(errors='replace').strip()[-300:]})")
                    continue
                summarize(out, TOP)
                if KEEP:
                    Path(KEEP).mkdir(parents=True, exist_ok=True)
                    shutil.copy(out, Path(KEEP) / out.name)
                print()
        finally:
            bot.kill()
    print(machine_note())
    return 0


if __name__ == "__main__":
    run_main(main)
