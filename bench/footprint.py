"""Memory at idle and start-up time.

1. Idle RSS of `rollout-bot serve` (SQLite in a temp dir, the Slack/Datadog stand-ins from
   tests/fakes) after it started and served a few requests (`/rollout start`, `/rollout
   status`, a checklist tick) and went quiet: VmRSS of the gunicorn master and its worker
   from /proc/<pid>/status, against the bare Bolt app (bench/bare_app.py, same stack) after
   a few requests.
2. `rollout-bot --help` start-up time, median of RUNS runs, against
   `python -c "import slack_bolt"` (and `python -c pass` for the interpreter alone).

No targets: figures and ratios. Only an error exits non-zero.

Run: .venv/bin/python bench/footprint.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from ack_latency import (
    SECRET,
    TEAM,
    THREADS,
    USER,
    PayloadDriver,
    _SlackStub,
    blast,
    headers_posted,
    plan_clicks,
    start_bare,
    status_messages,
)
from benchlib import (
    PYTHON,
    ROOT,
    Fakes,
    gunicorn_worker,
    machine_note,
    median,
    pss_kib,
    rss_kib,
    run_main,
    stop_process_group,
    table,
    wait_cpu_idle,
)

from tests.conftest import BotProcess, bot_env

RUNS = 10
ROLLOUT_BOT = str(Path(PYTHON).with_name("rollout-bot"))


def rss_pair(master: int) -> tuple[int, int, int]:
    """VmRSS of the master and of the worker, and their PSS summed."""
    worker = gunicorn_worker(master)
    return rss_kib(master), rss_kib(worker), pss_kib(master) + pss_kib(worker)


def idle(pid: int) -> None:
    wait_cpu_idle(pid, 15, window=0.5, busy_share=0.02)


def bot_rss(folder: Path, fakes: Fakes, stub: _SlackStub) -> tuple[int, int, int]:
    env = bot_env(
        f"sqlite:///{folder / 'bot.db'}", fakes, fakes, WEB_THREADS=str(THREADS), LOG_LEVEL="WARNING"
    )  # type: ignore[arg-type]
    env["SLACK_SIGNING_SECRET"] = SECRET
    bot = BotProcess(env, folder / "bot.log").start(timeout=60)
    assert bot.proc is not None
    try:
        driver = PayloadDriver(bot.url, SECRET, stub, team_id=TEAM, channel_id="CFOOT0001", user_id=USER)  # type: ignore[arg-type]
        features = {f"foot-{i}" for i in range(3)}
        blast(bot.port, [driver.command(f"start {f}") for f in sorted(features)], concurrency=3)
        deadline = time.monotonic() + 20
        while len(headers_posted(fakes, features)) < len(features) and time.monotonic() < deadline:
            time.sleep(0.2)
        blast(bot.port, [driver.command(f"status {f}") for f in sorted(features)], concurrency=3)
        clicks = plan_clicks(driver, status_messages(fakes, "CFOOT0001"), 6)
        blast(bot.port, [c.body for c in clicks], concurrency=3)
        worker = gunicorn_worker(bot.proc.pid)
        idle(worker)
        time.sleep(2)
        return rss_pair(bot.proc.pid)
    finally:
        bot.kill()


def bare_rss(folder: Path, fakes: Fakes, stub: _SlackStub) -> tuple[int, int, int]:
    proc, port = start_bare(folder, fakes)
    try:
        driver = PayloadDriver(
            f"http://127.0.0.1:{port}", SECRET, stub, team_id=TEAM, channel_id="CBARE", user_id=USER
        )  # type: ignore[arg-type]
        blast(port, [driver.command("status") for _ in range(12)], concurrency=3)
        idle(gunicorn_worker(proc.pid))
        time.sleep(2)
        return rss_pair(proc.pid)
    finally:
        stop_process_group(proc)


def startup(argv: list[str]) -> float:
    """Median wall time of RUNS runs of argv (after one untimed run, so the files are cached)."""
    env = dict(os.environ)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT, env=env)
    samples = []
    for _ in range(RUNS):
        began = time.perf_counter()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT, env=env
        )
        samples.append(time.perf_counter() - began)
    return median(samples)


def imported_modules(code: str) -> int:
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(out.stdout.strip())


def main() -> int:
    began = time.monotonic()
    print(f"footprint\n{machine_note()}\n")
    with tempfile.TemporaryDirectory(prefix="bench-foot-") as tmp, Fakes() as fakes:
        folder = Path(tmp)
        stub = _SlackStub(fakes)
        bare_master, bare_worker, bare_pss = bare_rss(folder, fakes, stub)
        bot_master, bot_worker, bot_pss = bot_rss(folder, fakes, stub)

    mib = 1024
    print("idle RSS after a few requests (VmRSS)")
    bare_total, bot_total = bare_master + bare_worker, bot_master + bot_worker
    table(
        ["process", "gunicorn master", "worker", "master + worker", "vs bare", "PSS (both)", "PSS vs bare"],
        [
            [
                "bare Bolt app",
                f"{bare_master / mib:.1f} MiB",
                f"{bare_worker / mib:.1f} MiB",
                f"{bare_total / mib:.1f} MiB",
                "1.00x",
                f"{bare_pss / mib:.1f} MiB",
                "1.00x",
            ],
            [
                "rollout-bot serve",
                f"{bot_master / mib:.1f} MiB",
                f"{bot_worker / mib:.1f} MiB",
                f"{bot_total / mib:.1f} MiB",
                f"{bot_total / bare_total:.2f}x",
                f"{bot_pss / mib:.1f} MiB",
                f"{bot_pss / bare_pss:.2f}x",
            ],
        ],
    )
    print("  (the worker is forked from the master: VmRSS counts the pages they share in both, PSS once)")
    print("  (the bare app imports bot.web for serve_http, which brings SQLAlchemy in with storage.db)")

    help_s = startup([ROLLOUT_BOT, "--help"])
    bolt_s = startup([PYTHON, "-c", "import slack_bolt"])
    bare_py = startup([PYTHON, "-c", "pass"])
    help_modules = imported_modules(
        "import sys, contextlib, io\n"
        "sys.argv = ['rollout-bot', '--help']\n"
        "from bot.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "print(len(sys.modules), file=sys.__stdout__)"
    )
    bolt_modules = imported_modules("import sys, slack_bolt; print(len(sys.modules))")
    print(f"\nstart-up, median of {RUNS} runs")
    table(
        ["command", "median", "vs import slack_bolt", "modules loaded"],
        [
            ["python -c pass", f"{bare_py * 1000:.0f} ms", f"{bare_py / bolt_s:.2f}x", ""],
            ['python -c "import slack_bolt"', f"{bolt_s * 1000:.0f} ms", "1.00x", str(bolt_modules)],
            ["rollout-bot --help", f"{help_s * 1000:.0f} ms", f"{help_s / bolt_s:.2f}x", str(help_modules)],
        ],
    )
    print(f"\n{machine_note()}\n(total {time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
