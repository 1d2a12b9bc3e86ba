"""The web process's CPU per request, in one thread, without the HTTP server: the bot's Flask
app (built as `rollout-bot serve` builds it, queuing into SQLite) against the bare app's
(bench/bare_app.py), each request a signed WSGI call, timed with the process's CPU clock (the bare app acks on
Bolt's listener threads).

gunicorn's share (reading the socket, parsing HTTP, writing the answer) is the same for both
and is left out, so the difference between the two columns is what the bot adds to each
request. `bench/ack_latency.py` and `bench/profile_web.py` measure the whole web worker under
load; this one is for looking at one change at a time: the figures hardly move with the
machine's load. `BENCH_WEB_PROFILE=1` adds the top frames of a cProfile of each kind.

Run: .venv/bin/python bench/web_cpu.py   (~30 s; knobs: BENCH_WEB_N [2000] per kind, BENCH_TOP [20])
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ack_latency import (
    SECRET,
    TEAM,
    USER,
    PayloadDriver,
    _SlackStub,
    blast,
    plan_clicks,
    status_messages,
    wait_for,
)
from benchlib import Fakes, machine_note, median, run_main, table
from flask import Flask
from werkzeug.test import EnvironBuilder

from tests.conftest import BotProcess, bot_env
from tests.driver import FORM, sign

N = int(os.environ.get("BENCH_WEB_N", "2000"))
TOP = int(os.environ.get("BENCH_TOP", "20"))
PROFILE = os.environ.get("BENCH_WEB_PROFILE", "") not in ("", "0")
ROUNDS = 5


def click_message(fakes: Fakes, folder: Path, stub: _SlackStub) -> dict[str, Any]:
    """A real status message with its checklist, posted by a real `serve` (clicks carry it)."""
    env = bot_env(f"sqlite:///{folder / 'msg.db'}", fakes, fakes, LOG_LEVEL="WARNING")  # type: ignore[arg-type]
    env["SLACK_SIGNING_SECRET"] = SECRET
    bot = BotProcess(env, folder / "msg.log").start(timeout=60)
    try:
        driver = PayloadDriver(bot.url, SECRET, stub, team_id=TEAM, channel_id="CWEBCPU", user_id=USER)  # type: ignore[arg-type]
        blast(bot.port, [driver.command("start webcpu")])
        wait_for("the status message", lambda: bool(status_messages(fakes, "CWEBCPU")), 30)
        return status_messages(fakes, "CWEBCPU")[0]
    finally:
        bot.kill()


def bot_web(fakes: Fakes, folder: Path) -> Flask:
    """`serve`'s web app, in this process (no gunicorn, no work process: nobody is nudged)."""
    env = bot_env(f"sqlite:///{folder / 'bot.db'}", fakes, fakes, LOG_LEVEL="WARNING")  # type: ignore[arg-type]
    env.update(SLACK_SIGNING_SECRET=SECRET, ROLLOUT_METRICS="1", LOG_FORMAT="json")
    os.environ.update(env)
    os.environ.pop("ROLLOUT_WAKE_SOCKET", None)
    from bot.cli import _setup_logging, upgrade_database
    from bot.config import load_settings
    from bot.runtime import build_web_process

    _setup_logging()
    settings = load_settings()
    upgrade_database(settings)
    return build_web_process(settings).web


def bare_web(fakes: Fakes) -> Flask:
    from bare_app import build

    return build(16, SECRET, fakes.slack_api)


def environ_of(body: str) -> dict[str, Any]:
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(SECRET, stamp, body),
    }
    return EnvironBuilder(
        path="/slack/events", method="POST", data=body.encode(), headers=headers
    ).get_environ()


def call(app: Flask, environ: dict[str, Any]) -> int:
    status: list[str] = []
    out = app.wsgi_app(dict(environ), lambda s, h, e=None: status.append(s))
    for _chunk in out:
        pass
    if hasattr(out, "close"):
        out.close()
    return int(status[0].split()[0])


def cpu_per_request(app: Flask, bodies: list[str]) -> float:
    """Median over ROUNDS of the process's CPU seconds per request."""
    environs = [environ_of(b) for b in bodies]
    per_round = len(environs) // ROUNDS
    figures = []
    for r in range(ROUNDS):
        chunk = environs[r * per_round : (r + 1) * per_round]
        began = time.process_time()
        for environ in chunk:
            status = call(app, environ)
            if status != 200:
                raise RuntimeError(f"answered {status}")
        figures.append((time.process_time() - began) / len(chunk))
    return median(figures)


def profile(app: Flask, bodies: list[str]) -> None:
    environs = [environ_of(b) for b in bodies]
    prof = cProfile.Profile()
    prof.enable()
    for environ in environs:
        call(app, environ)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(TOP)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-6000:])


def main() -> int:
    print(f"{machine_note()}\n{N} requests of each kind, one thread, WSGI calls without gunicorn\n")
    with tempfile.TemporaryDirectory(prefix="bench-webcpu-") as tmp, Fakes() as fakes:
        folder = Path(tmp)
        stub = _SlackStub(fakes)
        message = click_message(fakes, folder, stub)
        driver = PayloadDriver(
            "http://unused", SECRET, stub, team_id=TEAM, channel_id="CWEBCPU", user_id=USER
        )  # type: ignore[arg-type]
        kinds: dict[str, Callable[[], list[str]]] = {
            "status": lambda: [driver.command("status") for _ in range(N)],
            "start": lambda: [driver.command(f"start webcpu-{i}") for i in range(N)],
            "click": lambda: fresh_clicks(driver, message, N),
        }
        bare, bot = bare_web(fakes), bot_web(fakes, folder)
        # warm-up: imports, Bolt's auth.test, first statements
        for body in kinds["status"]()[:20]:
            call(bare, environ_of(body))
        for make in kinds.values():
            for body in make()[:20]:
                call(bot, environ_of(body))
        rows = []
        bare_status = cpu_per_request(bare, kinds["status"]())
        rows.append(["bare app: /rollout status", f"{bare_status * 1000:.3f} ms", "1.00x"])
        for kind, make in kinds.items():
            bodies = make()
            spent = cpu_per_request(bot, bodies)
            rows.append([f"bot: {kind}", f"{spent * 1000:.3f} ms", f"{spent / bare_status:.2f}x"])
        table(["request", "CPU/req", "vs bare"], rows)
        if PROFILE:
            for kind, make in kinds.items():
                print(f"\n{kind}: top {TOP} by own time")
                profile(bot, make()[: N // 2])
    print(f"\n{machine_note()}")
    return 0


def fresh_clicks(driver: PayloadDriver, message: dict[str, Any], count: int) -> list[str]:
    """`count` clicks on the message's first box, each with its own action_ts (its own
    interaction, so each is queued, as a burst of different people's clicks would be)."""
    value = plan_clicks(driver, [message], 1)[0].value
    return [driver.toggle(message, value) for _ in range(count)]


if __name__ == "__main__":
    run_main(main)
