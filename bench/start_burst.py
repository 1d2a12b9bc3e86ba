"""The start burst of `ack_latency.py` alone: the work process's CPU per `/rollout start` and how
many status messages Slack had by the end of the drain window, without the status and click
bursts around it (a quicker look at one kind; the same bot, stand-ins and load generator).

With BENCH_SPY=gil (or idle), py-spy samples the work process during the burst: `gil` counts
only samples holding the GIL (where the CPU goes), `idle` every thread's samples, waiting ones
too (where the threads wait: the SQLite writer's lock, Slack, Datadog).

Not in `run_all.sh`; ~60 s. Knobs: BENCH_PER_KIND [1500], BENCH_DRAIN_SECONDS [20],
BENCH_SPY [off|gil|idle|perf], BENCH_TOP [25], BENCH_PROFILE_KEEP=dir (the raw collapsed stacks),
BENCH_START_RATE [off]: the starts one at a time at this many a second instead of the burst
(the same bot and figures, for a start's cost without a backlog; use with a smaller
BENCH_PER_KIND, it runs PER_KIND / rate seconds), BENCH_BOT_ENV [""]: settings of the bot for
this run ("WORK_THREADS=4 OTHER=x"). `perf` samples the work process with Linux perf instead
(native frames: the interpreter, SQLite's C code, the kernel), by library and by symbol.
Besides the CPU per start, the user and system shares and the context switches per start.

Run: .venv/bin/python bench/start_burst.py
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ack_latency import (
    DRAIN_SECONDS,
    PER_KIND,
    RUN,
    SECRET,
    SETTLE_SECONDS,
    TARGET_WORK_MS,
    TEAM,
    THREADS,
    USER,
    PayloadDriver,
    _SlackStub,
    blast,
    headers_posted,
    settle,
    start_bot,
    wait_for,
)
from benchlib import Fakes, children, cpu_seconds, is_work_process, machine_note, run_main, verdict
from profile_work import py_spy, summarize

SPY = os.environ.get("BENCH_SPY", "off").strip().lower()
TOP = int(os.environ.get("BENCH_TOP", "25"))
KEEP = os.environ.get("BENCH_PROFILE_KEEP")
# The bot's own settings for this run, e.g. BENCH_BOT_ENV="WORK_THREADS=4 WORK_PROCESSES=1".
EXTRA_ENV = dict(pair.split("=", 1) for pair in os.environ.get("BENCH_BOT_ENV", "").split())
RATE = float(os.environ.get("BENCH_START_RATE", "0") or 0)


def _usage(pid: int) -> tuple[float, float, int, int]:
    """User and system CPU seconds, voluntary and involuntary context switches of every thread
    of `pid` (a GIL convoy or a spinning lock shows as many switches per request)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    switches = {"voluntary_ctxt_switches": 0, "nonvoluntary_ctxt_switches": 0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in switches:
                    switches[name] += int(value)
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
    return (
        int(fields[11]) / tick,
        int(fields[12]) / tick,
        switches["voluntary_ctxt_switches"],
        switches["nonvoluntary_ctxt_switches"],
    )


def main() -> int:
    what = f"{PER_KIND} starts at {RATE:g}/s, one at a time" if RATE > 0 else f"a burst of {PER_KIND} starts"
    print(f"{machine_note()}\n{what}, drain window {DRAIN_SECONDS:g} s, profiler: {SPY}\n")
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp, Fakes() as fakes:
        folder = Path(tmp)
        stub = _SlackStub(fakes)
        bot = start_bot(folder, fakes, WEB_THREADS=str(THREADS), **EXTRA_ENV)
        assert bot.proc is not None
        try:
            work = tuple(k for k in children(bot.proc.pid) if is_work_process(k))
            d_warm, d_start = (
                PayloadDriver(bot.url, SECRET, stub, team_id=TEAM, channel_id=ch, user_id=USER)  # type: ignore[arg-type]
                for ch in (f"CWARM{RUN.upper()}", f"CSTART{RUN.upper()}")
            )
            warm = {f"warm-{RUN}-{i}" for i in range(32)}
            blast(bot.port, [d_warm.command(f"start {f}") for f in sorted(warm)])
            wait_for("warm-up status messages", lambda: len(headers_posted(fakes, warm)) == len(warm), 30)
            settle(work, "warm-up", 20)

            recorder = None
            out = folder / "start.txt"
            if SPY in ("gil", "idle"):
                mode = "--gil" if SPY == "gil" else "--idle"
                recorder = subprocess.Popen(
                    [
                        *(py_spy(), "record", "--pid", str(work[0]), "--rate", "250", "--format", "raw"),
                        "--output",
                        str(out),
                        "--nonblocking",
                        mode,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                time.sleep(1.0)
            elif SPY == "perf":  # native frames too: SQLite's C code, the interpreter, the kernel's share
                recorder = subprocess.Popen(
                    ["perf", "record", "-F", "499", "-p", str(work[0]), "-o", str(folder / "perf.data")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
            features = [f"bench-{RUN}-{i:05d}" for i in range(PER_KIND)]
            work_before = cpu_seconds(work)
            usage_before = _usage(work[0])
            bodies = [d_start.command(f"start {f}") for f in features]
            if RATE > 0:
                res = blast(bot.port, bodies, concurrency=1, rate=RATE, max_seconds=PER_KIND / RATE + 30)
            else:
                res = blast(bot.port, bodies)
            sent = {f for f, t in zip(features, res.sent_at, strict=True) if not math.isnan(t)}
            t_sent = time.monotonic()
            wait_for(
                "status messages", lambda: len(headers_posted(fakes, sent)) >= len(sent), DRAIN_SECONDS, 0.5
            )
            posted = headers_posted(fakes, sent)
            print(
                f"start: {res.sent} sent in {res.elapsed:.1f} s, statuses {dict(res.statuses)}; "
                f"{len(posted)} status messages by the end of the drain window "
                f"(the last {time.monotonic() - t_sent:.1f} s after the last ack)"
            )
            settle(work, "start", SETTLE_SECONDS)
            spent = cpu_seconds(work) - work_before
            user, system, vol, invol = (b - a for a, b in zip(usage_before, _usage(work[0]), strict=True))
            if recorder is not None:
                recorder.send_signal(signal.SIGINT)
                try:
                    recorder.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    recorder.kill()
                    recorder.communicate()
            per = spent / max(res.sent, 1) * 1000
            print(f"  work process CPU/req for start: {per:.1f} ms")
            n = max(res.sent, 1)
            print(
                f"  of which user {user / n * 1000:.1f} ms, system {system / n * 1000:.1f} ms; "
                f"{vol / n:.0f} voluntary and {invol / n:.0f} involuntary context switches per start "
                f"(threads now: {len(list(Path(f'/proc/{work[0]}/task').iterdir()))})"
            )
            verdict(
                "start: work process CPU/req",
                per,
                TARGET_WORK_MS["start"],
                higher_is_better=False,
                unit=" ms",
            )
            print(
                f"  burst of {res.sent} starts: status messages by the end of the drain window: {len(posted)}"
            )
            if SPY == "perf":
                report = subprocess.run(
                    ["perf", "report", "-i", str(folder / "perf.data"), "--stdio", "--sort", "dso", "-q"],
                    capture_output=True,
                    text=True,
                ).stdout
                print("  perf, by library:\n" + "\n".join(report.splitlines()[:12]))
                report = subprocess.run(
                    ["perf", "report", "-i", str(folder / "perf.data"), "--stdio", "--sort", "dso,sym", "-q"],
                    capture_output=True,
                    text=True,
                ).stdout
                print(f"  perf, top {TOP} symbols:\n" + "\n".join(report.splitlines()[:TOP]))
                if KEEP:
                    Path(KEEP).mkdir(parents=True, exist_ok=True)
                    shutil.copy(folder / "perf.data", Path(KEEP) / "start-perf.data")
            if recorder is not None and out.exists():
                summarize(out, TOP)
                if KEEP:
                    Path(KEEP).mkdir(parents=True, exist_ok=True)
                    shutil.copy(out, Path(KEEP) / f"start-{SPY}.txt")
        finally:
            bot.kill()
        errors = [
            line for line in (folder / "bot.log").read_text(errors="replace").splitlines() if "ERROR" in line
        ]
        if errors:
            print(f"the bot logged {len(errors)} ERROR line(s), e.g.: {errors[0][:240]}")
    print(machine_note())
    return 0


if __name__ == "__main__":
    run_main(main)
