"""The metric gate: one table per rule, then the gate as a whole."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.gates import (
    GateInput,
    GateResult,
    Observation,
    Verdict,
    describe_rule,
    describe_trigger,
    evaluate_gate,
    evaluate_metric,
    fired_triggers,
    soak_status,
)
from bot.domain.plans.model import Direction, Metric, Rule

LA = "America/Los_Angeles"
UP, DOWN = Direction.UP, Direction.DOWN
NAN, INF = math.nan, math.inf


def metric(
    rule: Rule,
    threshold: float = 0.0,
    bad: Direction = UP,
    unit: str = "",
    key: str = "m",
    name: str = "Metric",
) -> Metric:
    return Metric(key=key, name=name, query="q", rule=rule, threshold=threshold, bad=bad, unit=unit)


def obs(value: float | None, problem: str | None = None) -> Observation:
    return Observation(value, problem)


def la(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(LA))  # type: ignore[misc]


REL10 = metric(Rule.RELATIVE, 10, unit="ms")
REL10_DOWN = metric(Rule.RELATIVE, 10, DOWN)
ABS_PP = metric(Rule.ABSOLUTE, 0.1, unit="%")
ABS_PP_DOWN = metric(Rule.ABSOLUTE, 5, DOWN, unit="%")
ABS_MS = metric(Rule.ABSOLUTE, 0.1, unit="ms")
UPPER = metric(Rule.UPPER, 250, unit="ms")
LOWER = metric(Rule.LOWER, 40, unit="%")
ZERO = metric(Rule.ZERO, unit="records")

PASS, FAIL, NO_DATA = Verdict.PASS, Verdict.FAIL, Verdict.NO_DATA

# --- evaluate_metric ------------------------------------------------------------------

METRIC_CASES = [
    # id, metric, current, baseline, verdict, change (None = no change reported)
    # RELATIVE, bad = UP
    ("relative-exactly-at-threshold", REL10, 220, 200, PASS, 10.0),
    ("relative-at-threshold-float-noise", REL10, 1.1, 1.0, PASS, 10.0),
    ("relative-just-over", REL10, 220.02, 200, FAIL, 10.01),
    ("relative-drop-where-rise-is-bad", REL10, 100, 200, PASS, -50.0),
    ("relative-negative-baseline-uses-abs", REL10, -170, -200, FAIL, 15.0),
    ("relative-negative-baseline-at-threshold", REL10, -180, -200, PASS, 10.0),
    # RELATIVE, bad = DOWN: the signs flip
    ("relative-down-exactly-at-threshold", REL10_DOWN, 180, 200, PASS, -10.0),
    ("relative-down-just-over", REL10_DOWN, 179.98, 200, FAIL, -10.01),
    ("relative-down-rise-is-good", REL10_DOWN, 400, 200, PASS, 100.0),
    # RELATIVE against a zero baseline
    ("relative-baseline-zero-flat", REL10, 0, 0, PASS, 0.0),
    ("relative-baseline-zero-rise", REL10, 0.001, 0, FAIL, None),
    ("relative-baseline-zero-drop", REL10, -1, 0, PASS, None),
    ("relative-down-baseline-zero-drop", REL10_DOWN, -1, 0, FAIL, None),
    ("relative-down-baseline-zero-rise", REL10_DOWN, 5, 0, PASS, None),
    # ABSOLUTE, in percentage points for a "%" metric
    ("absolute-exactly-at-threshold-float-noise", ABS_PP, 1.1, 1.0, PASS, 0.1),
    ("absolute-exactly-at-threshold", ABS_PP, 0.35, 0.25, PASS, 0.1),
    ("absolute-just-over", ABS_PP, 1.11, 1.0, FAIL, 0.11),
    ("absolute-drop-where-rise-is-bad", ABS_PP, 0.2, 1.0, PASS, -0.8),
    # 100000.1 - 100000.0 = 0.10000000000582077: noise grows with the operands
    ("absolute-big-operands-at-threshold", ABS_MS, 100_000.1, 100_000.0, PASS, 0.1),
    ("absolute-big-operands-just-over", ABS_MS, 100_000.2, 100_000.0, FAIL, 0.2),
    ("absolute-down-exactly-at-threshold", ABS_PP_DOWN, 35, 40, PASS, -5.0),
    ("absolute-down-just-over", ABS_PP_DOWN, 34.9, 40, FAIL, -5.1),
    ("absolute-down-rise-is-good", ABS_PP_DOWN, 60, 40, PASS, 20.0),
    # UPPER and LOWER bounds look at the value, need no baseline
    ("upper-exactly-at-threshold", UPPER, 250, None, PASS, None),
    ("upper-just-over", UPPER, 250.001, None, FAIL, None),
    ("upper-well-below", UPPER, 100, None, PASS, None),
    ("lower-exactly-at-threshold", LOWER, 40, None, PASS, None),
    ("lower-just-under", LOWER, 39.99, None, FAIL, None),
    ("lower-well-above", LOWER, 90, None, PASS, None),
    # ZERO
    ("zero-rule-with-0", ZERO, 0, None, PASS, None),
    ("zero-rule-with-1", ZERO, 1, None, FAIL, None),
    ("zero-rule-with-negative", ZERO, -1, None, FAIL, None),
    # No data: never a pass
    ("no-data-none", REL10, None, 200, NO_DATA, None),
    ("no-data-none-zero-rule-is-not-zero", ZERO, None, None, NO_DATA, None),
    ("no-data-nan", UPPER, NAN, None, NO_DATA, None),
    ("no-data-inf", LOWER, INF, None, NO_DATA, None),
    ("no-data-minus-inf", UPPER, -INF, None, NO_DATA, None),
    ("no-baseline-relative", REL10, 200, None, NO_DATA, None),
    ("no-baseline-absolute", ABS_PP, 1.0, None, NO_DATA, None),
    ("baseline-nan", ABS_PP, 1.0, NAN, NO_DATA, None),
]


@pytest.mark.parametrize(
    ("m", "current", "baseline", "verdict", "change"),
    [pytest.param(*row[1:], id=row[0]) for row in METRIC_CASES],
)
def test_evaluate_metric(
    m: Metric,
    current: float | None,
    baseline: float | None,
    verdict: Verdict,
    change: float | None,
) -> None:
    base = None if baseline is None else obs(baseline)
    result = evaluate_metric(m, obs(current), base)
    assert result.verdict is verdict
    if change is None:
        assert result.change is None
    else:
        assert result.change == pytest.approx(change, abs=1e-6)


@pytest.mark.parametrize(
    ("m", "current", "baseline", "reason"),
    [
        pytest.param(
            REL10, 1, 0, "baseline is 0, so any rise is an unbounded relative change", id="zero-rise"
        ),
        pytest.param(
            REL10_DOWN, -1, 0, "baseline is 0, so any fall is an unbounded relative change", id="zero-fall"
        ),
        pytest.param(
            UPPER,
            obs(None, "Datadog returned no series"),
            None,
            "Datadog returned no series",
            id="problem-is-the-reason",
        ),
        pytest.param(UPPER, NAN, None, "not a finite number", id="nan-says-so"),
        pytest.param(REL10, 200, None, "no baseline captured", id="no-baseline"),
        pytest.param(
            ABS_PP,
            1.0,
            obs(None, "query timed out"),
            "no baseline captured: query timed out",
            id="baseline-problem",
        ),
        pytest.param(
            ABS_PP,
            1.3,
            1.0,
            "+0.3 pp vs baseline (1% → 1.3%), beyond the allowed +0.1 pp",
            id="absolute-fail-reason",
        ),
        pytest.param(
            REL10,
            210,
            200,
            "+5% vs baseline (200 ms → 210 ms), within the allowed +10%",
            id="relative-pass-reason",
        ),
        pytest.param(
            REL10_DOWN,
            100,
            200,
            "\u221250% vs baseline (200 → 100), beyond the allowed \u221210%",
            id="down-fail-reason",
        ),
        pytest.param(UPPER, 300, None, "300 ms is above the upper bound of 250 ms", id="upper-reason"),
        pytest.param(ZERO, 3, None, "3 records, where there must be none", id="zero-reason"),
    ],
)
def test_reason(
    m: Metric, current: float | Observation, baseline: float | Observation | None, reason: str
) -> None:
    cur = current if isinstance(current, Observation) else obs(current)
    base = baseline if isinstance(baseline, Observation) or baseline is None else obs(baseline)
    assert reason in evaluate_metric(m, cur, base).reason


def test_verdict_carries_the_reading() -> None:
    m = metric(Rule.ABSOLUTE, 0.1, unit="%", key="error_rate", name="Error rate")
    current = Observation(1.05, series=(1.0, 1.1, 1.05))
    v = evaluate_metric(m, current, obs(1.0))
    assert (v.key, v.name, v.unit, v.series) == ("error_rate", "Error rate", "%", (1.0, 1.1, 1.05))
    assert (v.value, v.baseline) == (1.05, 1.0)
    assert v.allowed == "change vs baseline ≤ +0.1 pp (absolute)"


def test_nan_is_not_reported_as_a_value() -> None:
    v = evaluate_metric(UPPER, obs(NAN), None)
    assert v.value is None


# --- describing rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        pytest.param(REL10, "change vs baseline ≤ +10% (relative)", id="relative-up"),
        pytest.param(REL10_DOWN, "change vs baseline ≥ \u221210% (relative)", id="relative-down-flips"),
        pytest.param(ABS_PP, "change vs baseline ≤ +0.1 pp (absolute)", id="absolute-percent-is-pp"),
        pytest.param(ABS_MS, "change vs baseline ≤ +0.1 ms (absolute)", id="absolute-own-unit"),
        pytest.param(ABS_PP_DOWN, "change vs baseline ≥ \u22125 pp (absolute)", id="absolute-down-flips"),
        pytest.param(metric(Rule.ABSOLUTE, 3), "change vs baseline ≤ +3 (absolute)", id="absolute-no-unit"),
        pytest.param(UPPER, "≤ 250 ms (upper bound)", id="upper"),
        pytest.param(LOWER, "≥ 40% (lower bound)", id="lower"),
        pytest.param(ZERO, "must be 0", id="zero"),
    ],
)
def test_describe_rule(m: Metric, expected: str) -> None:
    assert describe_rule(m) == expected


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        pytest.param(
            metric(Rule.ABSOLUTE, 0.5, unit="%", name="Error rate"),
            "fires when error rate rises more than 0.5 pp (absolute)",
            id="absolute-pp",
        ),
        pytest.param(
            metric(Rule.RELATIVE, 50, unit="ms", name="Latency (p95)"),
            "fires when latency (p95) rises more than 50% (relative)",
            id="relative",
        ),
        pytest.param(
            metric(Rule.RELATIVE, 20, DOWN, name="Checkout conversion"),
            "fires when checkout conversion falls more than 20% (relative)",
            id="relative-down",
        ),
        pytest.param(
            metric(Rule.UPPER, 800, unit="ms", name="API latency"),
            "fires when API latency is above 800 ms (upper bound)",
            id="upper-keeps-acronym",
        ),
        pytest.param(
            metric(Rule.LOWER, 95, unit="%", name="Success rate"),
            "fires when success rate is below 95% (lower bound)",
            id="lower",
        ),
        pytest.param(
            metric(Rule.ZERO, name="Wrong-type records"),
            "fires when wrong-type records is not 0",
            id="zero",
        ),
    ],
)
def test_describe_trigger(m: Metric, expected: str) -> None:
    assert describe_trigger(m) == expected


# --- the gate -------------------------------------------------------------------------

ERROR_RATE = metric(Rule.ABSOLUTE, 0.1, unit="%", key="error_rate", name="Error rate")
LATENCY = metric(Rule.RELATIVE, 10, unit="ms", key="latency", name="Latency")
WRONG_TYPE = metric(Rule.ZERO, unit="records", key="wrong_type", name="Wrong-type records")
SPIKE = metric(Rule.ABSOLUTE, 0.5, unit="%", key="spike", name="Error spike")
STALL = metric(Rule.LOWER, 10, key="throughput", name="Throughput")

GOOD = GateInput(
    metrics=(ERROR_RATE, LATENCY, WRONG_TYPE),
    triggers=(SPIKE, STALL),
    readings={
        "error_rate": obs(1.05),
        "latency": obs(205),
        "wrong_type": obs(0),
        "spike": obs(1.05),
        "throughput": obs(50),
    },
    baselines={"error_rate": obs(1.0), "latency": obs(200), "spike": obs(1.0)},
    unchecked_exit_criteria=(),
    step_title="25%",
    step_started_at=la(2024, 1, 9, 10),  # a Tuesday
    min_business_days=1,
    now=la(2024, 1, 11, 10),
    tz=LA,
    country="US",
)


def with_readings(**changes: Observation) -> dict[str, Observation]:
    return {**GOOD.readings, **changes}


def without(key: str) -> dict[str, Observation]:
    return {k: v for k, v in GOOD.readings.items() if k != key}


def gate(**changes: object) -> GateResult:
    return evaluate_gate(dataclasses.replace(GOOD, **changes))  # type: ignore[arg-type]


def category(blocker: str) -> str:
    """Which kind of blocker a sentence is, to check their order."""
    if blocker.startswith("Rollback trigger") and " fired: " in blocker:
        return "fired"
    if blocker.startswith("Rollback trigger") and " has no data: " in blocker:
        return "trigger-no-data"
    if " fails: " in blocker:
        return "failing"
    if " has no data: " in blocker:
        return "metric-no-data"
    if blocker.startswith("Exit criterion not checked: "):
        return "unchecked"
    if " has run " in blocker or " is on day " in blocker:
        return "soak"
    raise AssertionError(f"unknown blocker {blocker!r}")


GATE_CASES = [
    # id, changes to GOOD, passed, blocker kinds in order
    ("all-good-passes", {}, True, []),
    ("metric-just-over-blocks", {"readings": with_readings(error_rate=obs(1.11))}, False, ["failing"]),
    ("metric-exactly-at-threshold-passes", {"readings": with_readings(error_rate=obs(1.1))}, True, []),
    ("metric-reading-missing-blocks", {"readings": without("latency")}, False, ["metric-no-data"]),
    ("metric-nan-blocks", {"readings": with_readings(latency=obs(NAN))}, False, ["metric-no-data"]),
    (
        "metric-baseline-missing-blocks",
        {"baselines": {"spike": obs(1.0), "error_rate": obs(1.0)}},
        False,
        ["metric-no-data"],
    ),
    ("trigger-fired-blocks", {"readings": with_readings(spike=obs(1.6))}, False, ["fired"]),
    ("trigger-exactly-at-threshold-does-not-fire", {"readings": with_readings(spike=obs(1.5))}, True, []),
    (
        "trigger-no-data-blocks",
        {"readings": with_readings(throughput=obs(None, "timed out"))},
        False,
        ["trigger-no-data"],
    ),
    (
        "trigger-no-baseline-blocks",
        {"baselines": {"error_rate": obs(1.0), "latency": obs(200)}},
        False,
        ["trigger-no-data"],
    ),
    (
        "unchecked-exit-criteria-block",
        {"unchecked_exit_criteria": ("Sign-off", "Runbook")},
        False,
        ["unchecked", "unchecked"],
    ),
    ("soak-not-met-blocks", {"now": la(2024, 1, 9, 16)}, False, ["soak"]),
    ("soak-met-exactly-at-earliest", {"now": la(2024, 1, 10, 10)}, True, []),
    ("soak-one-microsecond-short", {"now": la(2024, 1, 10, 10) - timedelta(microseconds=1)}, False, ["soak"]),
    ("no-soak-required", {"min_business_days": 0, "now": la(2024, 1, 9, 10)}, True, []),
    (
        "fri-evening-before-mlk-not-met-on-the-holiday",
        {"step_started_at": la(2024, 1, 12, 18), "now": la(2024, 1, 15, 23)},
        False,
        ["soak"],
    ),
    (
        "fri-evening-before-mlk-met-tue-1800",
        {"step_started_at": la(2024, 1, 12, 18), "now": la(2024, 1, 16, 18)},
        True,
        [],
    ),
    (
        "blockers-in-order",
        {
            "readings": {
                "error_rate": obs(2.0),  # failing metric
                "wrong_type": obs(None, "query failed"),  # metric without data
                "latency": obs(300),  # failing metric
                "spike": obs(3.0),  # fired trigger
                # throughput missing: trigger without data
            },
            "unchecked_exit_criteria": ("Sign-off",),
            "now": la(2024, 1, 9, 11),
        },
        False,
        ["fired", "failing", "failing", "metric-no-data", "trigger-no-data", "unchecked", "soak"],
    ),
]


@pytest.mark.parametrize(
    ("changes", "passed", "kinds"),
    [pytest.param(*row[1:], id=row[0]) for row in GATE_CASES],
)
def test_evaluate_gate(changes: dict[str, object], passed: bool, kinds: list[str]) -> None:
    result = gate(**changes)
    assert result.passed is passed
    assert [category(b) for b in result.blockers] == kinds


def test_gate_result_parts() -> None:
    result = gate(
        readings=with_readings(spike=obs(1.6), error_rate=obs(2.0)),
        unchecked_exit_criteria=["Sign-off"],
    )
    assert [v.key for v in result.metrics] == ["error_rate", "latency", "wrong_type"]
    assert [v.verdict for v in result.metrics] == [FAIL, PASS, PASS]
    assert [v.verdict for v in result.triggers] == [FAIL, PASS]  # FAIL = fired
    assert [v.key for v in result.fired] == ["spike"]
    assert result.unchecked == ("Sign-off",)
    assert result.blockers[0] == (
        "Rollback trigger Error spike fired: +0.6 pp vs baseline (1% → 1.6%), beyond the "
        "allowed +0.5 pp (fires when error spike rises more than 0.5 pp (absolute))."
    )
    assert result.blockers[-1] == "Exit criterion not checked: Sign-off."


@pytest.mark.parametrize(
    ("changes", "sentence"),
    [
        pytest.param(
            {"now": la(2024, 1, 9, 16)},
            "25% is on day 1 of 1 business day; ready Wed 10 Jan 10:00 PST.",
            id="not-met-six-hours",
        ),
        pytest.param(
            {"step_started_at": la(2024, 1, 12, 18), "now": la(2024, 1, 15, 12)},
            "25% is on day 1 of 1 business day; ready Tue 16 Jan 18:00 PST.",
            id="not-met-over-mlk-weekend",
        ),
        pytest.param(
            {"min_business_days": 2, "now": la(2024, 1, 10, 22)},
            "25% is on day 2 of 2 business days; ready Thu 11 Jan 10:00 PST.",
            id="not-met-in-days",
        ),
    ],
)
def test_soak_blocker_sentence(changes: dict[str, object], sentence: str) -> None:
    assert gate(**changes).blockers == (sentence,)


@pytest.mark.parametrize(
    ("started", "required", "now", "met", "text"),
    [
        pytest.param(
            la(2024, 1, 9, 10),
            1,
            la(2024, 1, 11, 10),
            True,
            "25% has soaked its 1 business day; ready since Wed 10 Jan 10:00 PST",
            id="met",
        ),
        pytest.param(
            la(2024, 1, 9, 10),
            0,
            la(2024, 1, 9, 10),
            True,
            "25% has no minimum soak time",
            id="none-required",
        ),
        pytest.param(
            la(2024, 1, 6, 10),
            0.5,
            la(2024, 1, 8, 11, 59),
            False,
            "25% has run 11.9 h of 0.5 business days; ready Mon 8 Jan 12:00 PST",
            id="weekend-start-not-met",
        ),
    ],
)
def test_soak_describe(started: datetime, required: float, now: datetime, met: bool, text: str) -> None:
    soak = soak_status(started, required, now, tz=LA, country="US")
    assert soak.met is met
    assert soak.describe("25%", LA) == text


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(la(2024, 1, 12, 23), id="friday-night"),
        pytest.param(la(2024, 1, 15, 12), id="on-the-holiday"),
        pytest.param(la(2024, 1, 16, 17, 59, 59), id="one-second-short"),
        pytest.param(la(2024, 1, 16, 18), id="at-earliest"),
        pytest.param(la(2024, 1, 17, 9), id="after"),
    ],
)
def test_soak_met_agrees_with_elapsed(now: datetime) -> None:
    soak = soak_status(la(2024, 1, 12, 18), 1, now, tz=LA, country="US")
    assert soak.met is (soak.elapsed_days >= soak.required_days)
    assert soak.met is (now >= soak.earliest)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        gate(now=datetime(2024, 1, 11, 10))


# --- the periodic watch ---------------------------------------------------------------

WATCH_CASES = [
    # id, readings, baselines, keys of fired triggers
    ("quiet", {"spike": obs(1.2), "throughput": obs(50)}, {"spike": obs(1.0)}, []),
    ("spike-fires", {"spike": obs(1.6), "throughput": obs(50)}, {"spike": obs(1.0)}, ["spike"]),
    ("spike-at-threshold-does-not-fire", {"spike": obs(1.5), "throughput": obs(50)}, {"spike": obs(1.0)}, []),
    (
        "both-fire-in-plan-order",
        {"spike": obs(9.0), "throughput": obs(1)},
        {"spike": obs(1.0)},
        ["spike", "throughput"],
    ),
    ("no-data-has-not-fired", {"spike": obs(None), "throughput": obs(NAN)}, {}, []),
]


@pytest.mark.parametrize(
    ("readings", "baselines", "keys"),
    [pytest.param(*row[1:], id=row[0]) for row in WATCH_CASES],
)
def test_fired_triggers(
    readings: dict[str, Observation], baselines: dict[str, Observation], keys: list[str]
) -> None:
    fired = fired_triggers((SPIKE, STALL), readings, baselines)
    assert [v.key for v in fired] == keys
    assert all(v.verdict is FAIL for v in fired)
