"""An advance gated by a formula metric and a judged metric, end to end through the real
`rollout-bot serve`: the `aggressive` template's error rate (100 × errors ÷ hits, one v2
request) and a latency judged by the Mann-Whitney test against its control cohort, read live
over the same window."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from bot.devtools.local_slack import LocalSlack
from bot.domain.plans.model import Metric, Rule
from storage.db import Database
from storage.enums import SnapshotKind
from storage.models import Rollout
from tests.driver import SlackDriver
from tests.e2e_rollouts import Scenario, section
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body

pytestmark = pytest.mark.e2e

CONTROL = [200.0 + (i % 10) for i in range(30)]
SAME = list(reversed(CONTROL))
SLOWER = [v + 40.0 for v in CONTROL]


@pytest.fixture
def sc(
    driver: SlackDriver, slack: LocalSlack, datadog: FakeDatadog, bot_db: Database, channel: str
) -> Scenario:
    return Scenario(driver, slack, datadog, bot_db, channel)


def with_judged_latency(sc: Scenario) -> None:
    """Adds a judged latency whose control cohort is the flag-off traffic."""
    latency = Metric(
        key="latency",
        name="Latency",
        query="avg:trace.http.request.duration{service:{service},feature_flag:{flag}}",
        control_query="avg:trace.http.request.duration{service:{service},feature_flag:off}",
        rule=Rule.RELATIVE,
        unit="ms",
        judge="mann-whitney",
    )
    metrics = [*sc.rollout().metrics, latency.to_dict()]
    with sc.db.transaction() as s:
        s.execute(update(Rollout).where(Rollout.id == sc.rollout_id).values(metrics=metrics))


def latency(sc: Scenario, canary: list[float]) -> None:
    sc.datadog.set_value(f"duration{{service:{sc.feature},feature_flag:off}}", 204.5, series=CONTROL)
    sc.datadog.set_value(f"duration{{service:{sc.feature},feature_flag:{sc.feature}}}", 210.0, series=canary)


def test_a_formula_and_a_judged_metric_gate_the_advance(sc: Scenario) -> None:
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.start("aggressive")
    with_judged_latency(sc)
    sc.ready()

    # A slower canary: the judgement fails and holds the rollout.
    latency(sc, SLOWER)
    blocked = sc.advance()

    assert sc.where() == ("active", 0, 0)
    metrics = section(blocked, "*2 metrics*")
    assert ":x: Failed · *Latency*: +40 ms (98% interval +" in metrics and "— significantly higher" in metrics
    assert (
        ":white_check_mark: Passed · *Error rate* _(success metric and rollback trigger)_: 1.00% → 1.00%"
        in metrics
    )
    assert "• The canary judgement fails (score 0" in section(blocked, "• ")

    # The same latency as the control and the error rate within +0.2 pp: it advances.
    latency(sc, SAME)
    sc.datadog.set_value(sc.errors_match, 1.1)
    sc.datadog.set_value(sc.hits_match, 100.0)
    moved = sc.advance()

    assert body(moved) == f":arrow_up: *{sc.feature}* advanced from 5% to *50%*: the gate passed."
    assert sc.where() == ("active", 1, 0)
    assert ":white_check_mark: Passed · *Latency*: " in section(moved, "*2 metrics*")
    gate = sc.snapshots(SnapshotKind.GATE)[-1]
    judged = next(m for m in gate.verdict["metrics"] if m["key"] == "latency")
    assert (judged["judgement"]["outcome"], judged["judgement"]["words"]) == (
        "PASS",
        "no change (identical data)",
    )
    assert gate.verdict["judgement"]["verdict"] == "PASS"
    assert gate.readings["error_rate"]["value"] == 1.1

    # The error rate was one request with both queries and the formula.
    formula_requests = [
        r
        for r in sc.datadog_requests()
        if r.body["data"]["attributes"]["formulas"][0]["formula"] == "100 * errors / hits"
    ]
    assert formula_requests
    names = [q["name"] for q in formula_requests[-1].body["data"]["attributes"]["queries"]]
    assert names == ["errors", "hits"]
