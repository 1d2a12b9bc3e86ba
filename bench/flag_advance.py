"""What the flag write costs: an advance with and without a flag service, and the time from a
rollback click to the flag at 0 % in a real Unleash.

    .ci/unleash.sh start && .venv/bin/python bench/flag_advance.py

Uses TEST_UNLEASH_URL / TEST_UNLEASH_TOKEN when set, else 127.0.0.1:4242 (`.ci/unleash.sh`).

1. Advance (in this process, SQLite in a temp dir): `advance.advance` timed alone, RUNS times
   each, interleaved: without a flag service (the baseline) and with `UnleashProvider` (the
   flag written inside the advance's transaction, before its commit). Each rollout advances
   twice: internal -> 25 % (the bot's strategy created, the flag turned on: three requests)
   and 25 % -> 50 % (read + update: two requests, every later advance). Twice: with metric
   reads that answer at once (the write's whole cost shows), and with each Datadog query
   taking 200 ms as in bench/advance_bench.py (what a person waits for). Median, p90, ratio.
2. Rollback (`rollout-bot serve` in a child process, Slack and Datadog stand-ins from
   tests/fakes): a rollout on the `aggressive` plan (its flag at 5 % from the start), the
   "Roll back" form submitted as a signed request; timed from sending it to Unleash's admin
   API reading the bot's strategy at 0 % and the environment off (polled every 5 ms).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import load_settings  # noqa: E402
from bot.domain.plans.model import Metric, Phase, Plan, Rule, Step  # noqa: E402
from bot.flags.unleash import UnleashProvider  # noqa: E402
from bot.metrics import MetricQuery, MetricReading, StaticMetricsSource  # noqa: E402
from bot.services import Actor, Services  # noqa: E402
from bot.slackweb.client import make_client  # noqa: E402
from bot.usecases import advance, plan_store  # noqa: E402
from bot.usecases import start as starting  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

URL = os.environ.get("TEST_UNLEASH_URL", "http://127.0.0.1:4242").rstrip("/")
TOKEN = os.environ.get("TEST_UNLEASH_TOKEN", "*:*.rollout-bot-test-admin-token")
RUNS = int(os.environ.get("BENCH_RUNS", "25"))
TEAM = "TBENCH"
PLAN = Plan(
    name="bench",
    title="Bench",
    phases=(Phase("Rollout", steps=(Step(0, label="internal"), Step(25), Step(50))),),
    metrics=tuple(
        Metric(f"m{i}", f"Metric {i}", f"metric{i}{{service:{{service}}}}", Rule.UPPER, threshold=1.0)
        for i in range(6)
    ),
)
VALUES = {f"m{i}": 0.5 for i in range(6)}


def admin(method: str, path: str, body: object = None) -> tuple[int, object]:
    request = urllib.request.Request(
        URL + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": TOKEN, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


def create_flag() -> str:
    name = f"rb-bench-{uuid.uuid4().hex[:10]}"
    admin("POST", "/api/admin/projects/default/features", {"name": name, "type": "release"})
    return name


def line(label: str, samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    med = statistics.median(ordered)
    p90 = ordered[max(0, int(0.9 * len(ordered)) - 1)]
    print(f"  {label:<44} median {med * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  (n={len(ordered)})")
    return med


class SlowMetrics(StaticMetricsSource):
    """Each query answers after `delay` seconds, in parallel, like the Datadog client."""

    def __init__(self, delay: float) -> None:
        super().__init__(VALUES)
        self.delay = delay

    def snapshot(self, queries: Sequence[MetricQuery], *, now: datetime) -> dict[str, MetricReading]:
        time.sleep(self.delay)
        return super().snapshot(queries, now=now)


def advance_part(folder: Path) -> None:
    from bot.devtools.local_slack import LocalSlack

    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    db = Database(url)
    provider = UnleashProvider(URL, TOKEN)
    print(provider.check())
    with LocalSlack() as slack:
        settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": slack.api_url})
        svc = Services(
            settings=settings,
            db=db,
            client=make_client("xoxb-bench", slack.api_url, max_retries=0),
            metrics=StaticMetricsSource(VALUES),
        )
        plan_store.save(svc, Actor(team_id=TEAM, user_id="U0BENCH", channel_id="C0BENCH"), PLAN, source="")
        provider.read(create_flag())  # a running bot has its connections open

        def one(with_flags: bool) -> tuple[float, float]:
            """(first advance: internal -> 25 %, the bot's strategy created and the flag turned
            on; second advance: 25 -> 50 %, the strategy updated)."""
            svc.flags = provider if with_flags else None
            feature = create_flag() if with_flags else f"rb-bench-{uuid.uuid4().hex[:10]}"
            actor = Actor(team_id=TEAM, user_id="WBENCH", channel_id="CBENCH" + uuid.uuid4().hex[:6].upper())
            rollout_id = starting.start(svc, actor, starting.Start(feature=feature, template="bench"))
            took = []
            for _ in range(2):
                rollout = advance.may_advance(svc, actor, rollout_id)
                started = time.perf_counter()
                outcome = advance.advance(svc, actor, rollout)
                took.append(time.perf_counter() - started)
                assert outcome.moved is not None and bool(outcome.flag) == with_flags, outcome
            return took[0], took[1]

        for label, metrics in (
            ("metric reads answering at once", StaticMetricsSource(VALUES)),
            ("each Datadog query taking 200 ms", SlowMetrics(0.2)),
        ):
            svc.metrics = metrics
            one(True), one(False)  # warm-up
            without: list[tuple[float, float]] = []
            with_flag: list[tuple[float, float]] = []
            for _ in range(RUNS):
                without.append(one(False))
                with_flag.append(one(True))
            for index, which in ((1, "25% -> 50% (strategy updated)"), (0, "internal -> 25% (created, on)")):
                print(f"advance {which}, {label}:")
                base = line("without a flag service (baseline)", [w[index] for w in without])
                flagged = line("with Unleash (flag written before commit)", [w[index] for w in with_flag])
                print(
                    f"  added by the flag write: {(flagged - base) * 1000:.1f} ms; ratio {flagged / base:.2f}x"
                )
    provider.close()
    db.dispose()


def rollback_part(folder: Path) -> None:
    from bot.devtools.local_slack import LocalSlack
    from tests.conftest import SIGNING_SECRET, BotProcess, bot_env
    from tests.driver import SlackDriver
    from tests.fakes.datadog_api import FakeDatadog

    with LocalSlack() as slack, FakeDatadog() as datadog:
        env = bot_env(
            f"sqlite:///{folder / 'serve.db'}",
            slack,
            datadog,
            FLAG_PROVIDER="unleash",
            UNLEASH_URL=URL,
            UNLEASH_API_TOKEN=TOKEN,
            LOG_LEVEL="WARNING",
        )
        bot = BotProcess(env, folder / "bot.log").start(timeout=40)
        try:
            samples = []
            for _ in range(RUNS):
                flag = create_flag()
                channel = "C" + uuid.uuid4().hex[:10].upper()
                driver = SlackDriver(bot.url, SIGNING_SECRET, slack, team_id="TBENCH", channel_id=channel)
                driver.command(f"start {flag} aggressive")
                slack.wait_for("chat.postMessage", lambda c, ch=channel: c.params.get("channel") == ch, 20)
                status = next(
                    m
                    for m in slack.messages(channel)
                    if any(b.get("block_id") == "controls" for b in m.get("blocks") or [])
                )
                driver.click(status, "rollback")

                def mine(call: object, ch: str = channel) -> bool:
                    view = call.params.get("view") or {}  # type: ignore[attr-defined]
                    return view.get("callback_id") == "rollback_confirm" and ch in view.get(
                        "private_metadata", ""
                    )

                view = slack.wait_for("views.open", mine, 20)[-1].params["view"]
                path = f"/api/admin/projects/default/features/{flag}/environments/production"
                sent = time.perf_counter()
                driver.submit_view(view, {"reason": "bench"})
                while True:
                    _, answer = admin("GET", path)
                    assert isinstance(answer, dict)
                    rollouts = [
                        s["parameters"]["rollout"]
                        for s in answer["strategies"]
                        if s.get("title") == "Rollout Bot"
                    ]
                    if rollouts == ["0"] and not answer["enabled"]:
                        break
                    if time.perf_counter() - sent > 20:
                        raise RuntimeError(f"flag {flag} not at 0% after 20 s: {answer}")
                    time.sleep(0.005)
                samples.append(time.perf_counter() - sent)
            print("rollback form submitted (signed request) -> flag at 0% and off in Unleash:")
            line("click to flag at 0%", samples)
        finally:
            bot.kill()


def main() -> int:
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        advance_part(Path(tmp))
        rollback_part(Path(tmp))
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
