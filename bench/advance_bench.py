"""How much slower is a whole advance than one Datadog query?

Starts the Datadog fake (tests/fakes/datadog_api.py) with every query taking 200 ms, builds
the real `bot.metrics.DatadogMetricsSource` against it, and times

  (a) a snapshot of ONE query, and
  (b) `bot.usecases.advance.advance` on a temporary SQLite database, for a rollout whose plan has
      6 metrics (each its own 200 ms query), soak met and exit criteria ticked, with
      Services built from `bot.services.Services` and a WebClient pointed at the Slack fake.

Nagle's algorithm is turned off on the fakes' sockets (see main), so a 200 ms query takes
about 200 ms and not 240.

Each is repeated RUNS times after one warm-up run (which opens the connections). Prints the
median and p90 of both and the ratio of the medians; the target is advance <= 1.3 x the
single query. A missed target prints MISSED; only an error exits non-zero.

Run: .venv/bin/python bench/advance_bench.py
"""

from __future__ import annotations

import http.server
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import update  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.devtools.local_slack import LocalSlack  # noqa: E402
from bot.domain import rollouts  # noqa: E402
from bot.domain.plans.model import Metric, Phase, Plan, Rule, Step  # noqa: E402
from bot.metrics import DatadogMetricsSource, MetricQuery  # noqa: E402
from bot.services import Actor, Services  # noqa: E402
from bot.slackweb.client import make_client  # noqa: E402
from bot.usecases import advance as advancing  # noqa: E402
from bot.usecases import measure  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.enums import EventKind  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import ChecklistItem, Rollout  # noqa: E402
from tests.fakes.datadog_api import FakeDatadog  # noqa: E402

RUNS = 10
QUERY_DELAY = 0.2  # seconds the fake takes to answer each query
METRICS = 6
TARGET = 1.3
FEATURE = "bench-feature"
OWNER = "W0BENCH01"
TEAM = "T0BENCH01"
CHANNEL = "C0BENCH01"


def p90(samples: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def timed(label: str, run: Callable[[], None]) -> list[float]:
    run()  # warm-up: connections, caches
    samples = []
    for _ in range(RUNS):
        began = time.perf_counter()
        run()
        samples.append(time.perf_counter() - began)
    print(
        f"{label:<34} median {statistics.median(samples) * 1000:7.1f} ms   p90 {p90(samples) * 1000:7.1f} ms"
    )
    return samples


def bench_plan() -> Plan:
    """One step per phase, so every advance leaves a phase: soak and exit criteria both count."""
    metrics = tuple(
        Metric(
            key=f"m{i}",
            name=f"Metric {i}",
            query=f"avg:bench.metric{i}{{service:{{service}},feature_flag:{{flag}}}}",
            rule=Rule.RELATIVE if i % 2 else Rule.UPPER,
            threshold=10 if i % 2 else 500,
            unit="ms",
        )
        for i in range(METRICS)
    )
    phases = tuple(
        Phase(
            name=f"Phase {n}",
            steps=(Step(percent=n * 5, min_business_days=0.5),),
            tasks=(f"Task {n}",),
            exit_criteria=(f"Exit criterion {n}",),
        )
        for n in range(1, RUNS + 4)
    )
    return Plan(name="bench", title="Benchmark plan", phases=phases, metrics=metrics)


def create_rollout(svc: Services) -> int:
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = rollouts.new_rollout(
            bench_plan(),
            team_id=TEAM,
            channel_id=CHANNEL,
            feature=FEATURE,
            owner_id=OWNER,
            created_by=OWNER,
            flag_key=None,
            service=None,
            stakeholders=[],
            timezone="America/Los_Angeles",
            country="US",
            now=now,
        )
        session.add(rollout)
        session.flush()
        session.add(rollouts.event(rollout, EventKind.STARTED, OWNER, now, template="bench"))
        return rollout.id


def make_ready(svc: Services, rollout_id: int) -> None:
    """Soak long met, every exit criterion ticked (outside the timed part)."""
    now = datetime.now(UTC)
    with svc.db.transaction() as session:
        session.execute(
            update(Rollout).where(Rollout.id == rollout_id).values(step_started_at=now - timedelta(days=14))
        )
        session.execute(
            update(ChecklistItem)
            .where(ChecklistItem.rollout_id == rollout_id, ChecklistItem.checked_at.is_(None))
            .values(checked_at=now, checked_by=OWNER)
        )


def main() -> int:
    # The fakes answer with two writes (headers, then body); with Nagle's algorithm on, the
    # body waits for the client's delayed ACK, ~40 ms on Linux, which would add a constant to
    # both timings and flatter the ratio. Turn it off for this process's fakes only.
    http.server.BaseHTTPRequestHandler.disable_nagle_algorithm = True
    with FakeDatadog() as datadog, LocalSlack() as slack, tempfile.TemporaryDirectory() as folder:
        for i in range(METRICS):
            datadog.set_value(
                f"bench.metric{i}{{", 100.0 + i, delay=QUERY_DELAY, series=[100.0, 101.0, 100.0 + i]
            )
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        settings = load_settings(
            {
                "SLACK_BOT_TOKEN": "xoxb-bench",
                "SLACK_SIGNING_SECRET": "bench-secret",
                "SLACK_API_URL": slack.api_url,
                "DATABASE_URL": url,
                "DD_API_KEY": "bench-api-key",
                "DD_APP_KEY": "bench-app-key",
                "DD_API_URL": datadog.url,
            }
        )
        source = DatadogMetricsSource("bench-api-key", "bench-app-key", api_url=datadog.url)
        db = Database(url)
        svc = Services(
            settings=settings, db=db, client=make_client("xoxb-bench", slack.api_url), metrics=source
        )
        try:
            one = [MetricQuery(name="m0", query=f"avg:bench.metric0{{service:{FEATURE}}}")]

            def single() -> None:
                reading = source.snapshot(one, now=datetime.now(UTC))["m0"]
                if reading.value is None:
                    raise RuntimeError(f"the single query gave no value: {reading.problem}")

            rollout_id = create_rollout(svc)
            measure.capture_baseline(svc, rollout_id)
            actor = Actor(team_id=TEAM, user_id=OWNER, channel_id=CHANNEL)
            samples_advance: list[float] = []

            def advance() -> None:
                outcome = advancing.advance(svc, actor, advancing.may_advance(svc, actor, rollout_id))
                if outcome.moved is None:
                    raise RuntimeError(f"the gate did not open: {list(outcome.gate.blockers)}")

            print(
                f"{METRICS} metrics in the advance, every query {QUERY_DELAY * 1000:.0f} ms at the fake, {RUNS} runs each\n"
            )
            samples_single = timed("(a) snapshot of one query", single)
            # The advance is timed run by run, so the database is made ready between runs.
            make_ready(svc, rollout_id)
            advance()  # warm-up
            for _ in range(RUNS):
                make_ready(svc, rollout_id)
                began = time.perf_counter()
                advance()
                samples_advance.append(time.perf_counter() - began)
            print(
                f"{'(b) advance, ' + str(METRICS) + ' metrics':<34} median {statistics.median(samples_advance) * 1000:7.1f} ms"
                f"   p90 {p90(samples_advance) * 1000:7.1f} ms"
            )
            ratio = statistics.median(samples_advance) / statistics.median(samples_single)
            ratio_p90 = p90(samples_advance) / p90(samples_single)
            verdict = "OK" if ratio <= TARGET else "MISSED"
            print(
                f"\nratio advance / single query: median {ratio:.2f}x, p90 {ratio_p90:.2f}x (target <= {TARGET}x): {verdict}"
            )
        finally:
            source.close()
            db.dispose()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - any failure is reported and exits non-zero
        traceback.print_exc()
        print("ERROR: the benchmark did not complete", file=sys.stderr)
        sys.exit(1)
