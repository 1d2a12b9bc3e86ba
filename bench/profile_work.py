"""Where the work process's time goes, per kind of request: `py-spy` samples the work process
of the real `rollout-bot serve` (started as `ack_latency.py` starts it) while it works off a
steady stream of one kind at a time (`/rollout status`, `/rollout start`, a checklist tick),
slow enough that nothing queues. Prints the work process's CPU per request and the top frames
by own samples and by samples under them (a frame counted once per stack).

Not in `run_all.sh`; ~90 s. Needs `py-spy` (`pip install py-spy`; the `bench` extra) and the
right to trace a child process (the default on Linux: ptrace_scope 1 allows it).

Run: .venv/bin/python bench/profile_work.py   (knobs: BENCH_PROFILE_N [200] per kind,
BENCH_PROFILE_RATE [25] a second, BENCH_TOP [15], BENCH_PROFILE_KEEP=dir to keep the raw
collapsed stacks for a flame graph)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
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
from benchlib import Fakes, children, cpu_seconds, is_work_process, machine_note, run_main

N = int(os.environ.get("BENCH_PROFILE_N", "200"))
RATE = float(os.environ.get("BENCH_PROFILE_RATE", "25"))
TOP = int(os.environ.get("BENCH_TOP", "25"))
KEEP = os.environ.get("BENCH_PROFILE_KEEP")
# Frames every sample passes through (thread start-up, the pool, Bolt's dispatch): left out
# of the inclusive list, which would otherwise open with them.
BOILERPLATE = ("threading.py", "concurrent/futures/", "slack_bolt/", "_run_one", "_run_scoped")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def summarize(raw: Path, top: int) -> None:
    """Collapsed stacks ("frame;frame;frame count") -> top frames by own and inclusive samples."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if not any(skip in frame for skip in BOILERPLATE):
                under[frame] += n
    if not total:
        print("  (no samples)")
        return
    for title, counts in (("own samples", own), ("samples under the frame", under)):
        print(f"  top {top} by {title} (of {total})")
        for frame, n in counts.most_common(top):
            print(f"    {n / total * 100:5.1f}%  {frame[:150]}")


def main() -> int:
    spy = py_spy()
    print(f"{machine_note()}\n{N} requests of each kind at {RATE:g}/s, the work process sampled by py-spy\n")
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp, Fakes() as fakes:
        folder = Path(tmp)
        stub = _SlackStub(fakes)
        bot = start_bot(folder, fakes)
        assert bot.proc is not None
        try:
            work = next(k for k in children(bot.proc.pid) if is_work_process(k))

            def driver(channel: str) -> PayloadDriver:
                return PayloadDriver(bot.url, SECRET, stub, team_id=TEAM, channel_id=channel, user_id=USER)  # type: ignore[arg-type]

            d_status, d_start = driver(f"CPSTATUS{RUN.upper()}"), driver(f"CPSTART{RUN.upper()}")
            blast(bot.port, [d_status.command(f"start status-{RUN}")])
            warm = [f"warm-{RUN}-{i}" for i in range(20)]
            blast(bot.port, [d_start.command(f"start {f}") for f in warm])
            wait_for("warm-up", lambda: len(headers_posted(fakes, set(warm))) == len(warm), 30)
            blast(bot.port, [d_status.command("status") for _ in range(20)])
            settle(work, "warm-up", 20)

            features = [f"prof-{RUN}-{i:04d}" for i in range(N)]

            def bodies(kind: str) -> list[str]:
                if kind == "status":
                    return [d_status.command("status") for _ in range(N)]
                if kind == "start":
                    return [d_start.command(f"start {f}") for f in features]
                messages = status_messages(fakes, d_start.channel_id, set(features))
                return [c.body for c in plan_clicks(d_start, messages, N)]

            for kind in ("status", "start", "click"):
                sent = bodies(kind)
                out = folder / f"{kind}.txt"
                recorder = subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(work),
                        "--rate",
                        "250",
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                        "--nonblocking",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                time.sleep(1.0)  # py-spy attaches
                before = cpu_seconds(work)
                res = blast(bot.port, sent, concurrency=4, max_seconds=len(sent) / RATE + 30, rate=RATE)
                settle(work, kind, 30)
                spent = cpu_seconds(work) - before
                recorder.send_signal(signal.SIGINT)
                try:
                    _, err = recorder.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    recorder.kill()
                    _, err = recorder.communicate()
                print(
                    f"{kind}: {res.sent} sent, work process CPU {spent / max(res.sent, 1) * 1000:.1f} ms/req"
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
