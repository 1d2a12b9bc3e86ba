"""Formula metrics and judged metrics in the domain: the formula rules, the canary judgement
wired into the gate (canary and control series in, verdicts, score and blockers out), the
Markdown round trip and the stored JSON of older metrics."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from bot.domain.formulas import SourceError, parse_source
from bot.domain.gates import GateInput, Observation, Verdict, evaluate_gate, fired_triggers
from bot.domain.plans.catalog import builtin_templates, plan_problems
from bot.domain.plans.markdown import parse_plan
from bot.domain.plans.model import Direction, Metric, Rule
from messages.plan_document import export_plan

ERRORS = "sum:trace.http.request.errors{service:{service},feature_flag:{flag}}.as_count()"
HITS = "sum:trace.http.request.hits{service:{service},feature_flag:{flag}}.as_count()"

# --- formulas -----------------------------------------------------------------------------


def test_a_formula_with_named_queries_and_a_minimum_reads() -> None:
    source = parse_source(f"100 * errors / hits; errors = {ERRORS}\nhits = {HITS}; at least 500 hits")
    assert source.queries == (("errors", ERRORS), ("hits", HITS))
    assert (source.formula, source.min_count, source.query) == ("100 * errors / hits", ("hits", 500.0), "")


def test_a_plain_query_stays_a_plain_query() -> None:
    assert parse_source("avg:trace.http.request.duration{service:{service}}") == parse_source(
        " avg:trace.http.request.duration{service:{service}} \n"
    )
    assert parse_source("avg:x{a:b}").query == "avg:x{a:b}"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"errors % hits; errors = {ERRORS}; hits = {HITS}", "not %"),
        (f"abs(errors); errors = {ERRORS}", "uses “abs”, which is not"),
        (f"errors / ; errors = {ERRORS}", "not a complete expression"),
        (f"(errors; errors = {ERRORS}", "not a complete expression"),
        (f"errors / total; errors = {ERRORS}", "“total”, which is not one of its named queries"),
        (f"errors; errors = {ERRORS}; hits = {HITS}", "“hits” is not used"),
        (f"errors; Errors = {ERRORS}", "cannot name a query"),
        (f"errors; errors = {ERRORS}; errors = {HITS}", "given twice"),
        (f"errors; errors = {ERRORS}; at least 5 hits", "there is no query “hits”"),
        (f"errors; errors = {ERRORS}; at least 0 errors", "above 0"),
        (f"{ERRORS}; at least 5 hits", "has none"),
        (f"errors; hits; errors = {ERRORS}", "exactly one formula"),
        (f"errors `x`; errors = {ERRORS}", "not `"),
    ],
)
def test_formula_rules(text: str, says: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_source(text)
    assert says in str(caught.value)


def test_the_templates_error_rate_is_a_ratio_in_percent() -> None:
    for plan in builtin_templates().values():
        (error_rate,) = [m for m in plan.metrics if m.key == "error_rate"]
        assert error_rate.formula == "100 * errors / hits" and error_rate.unit == "%"
        assert [q for _, q in error_rate.queries] == [ERRORS, HITS]
        assert ".as_rate()" not in " ".join(q for _, q in error_rate.queries)
        assert plan_problems(plan) == []
        # The rollback triggers on the error rate read the same ratio.
        for trigger in (t for t in plan.triggers if t.name == "Error rate"):
            assert (trigger.formula, trigger.unit) == ("100 * errors / hits", "%")


# --- judged metrics in the gate ------------------------------------------------------------

CONTROL = tuple(1.0 + 0.01 * (i % 10) for i in range(30))  # an error rate around 1 %
SAME = tuple(reversed(CONTROL))
HIGHER = tuple(v + 0.5 for v in CONTROL)
LOWER = tuple(v - 0.5 for v in CONTROL)
LA = "America/Los_Angeles"


def judged(key: str, **changes: object) -> Metric:
    base = Metric(key, key.replace("_", " ").capitalize(), "avg:x", Rule.ABSOLUTE, 0.0, unit="%")
    return dataclasses.replace(base, judge="mann-whitney", **changes)  # type: ignore[arg-type]


def gate_input(metrics: tuple[Metric, ...], canary: dict[str, tuple[float, ...]]) -> GateInput:
    return GateInput(
        metrics=metrics,
        triggers=(),
        readings={k: Observation(1.0, None, v) for k, v in canary.items()},
        baselines={m.key: Observation(1.0, None, CONTROL) for m in metrics},
        unchecked_exit_criteria=(),
        step_title="25%",
        step_started_at=datetime(2024, 1, 1, tzinfo=UTC),
        min_business_days=0,
        now=datetime(2024, 1, 10, tzinfo=UTC),
        tz=LA,
        country="US",
    )


@pytest.mark.parametrize(
    ("canary", "bad", "verdict", "words", "passed"),
    [
        (SAME, Direction.UP, Verdict.PASS, "no change (identical data)", True),
        (HIGHER, Direction.UP, Verdict.FAIL, "significantly higher", False),
        (LOWER, Direction.UP, Verdict.PASS, "significantly lower, the good way", True),
        (LOWER, Direction.DOWN, Verdict.FAIL, "significantly lower", False),
        ((1.0, 1.1, float("nan")), Direction.UP, Verdict.NO_DATA, "not enough data: 2 canary", False),
    ],
)
def test_one_judged_metric_decides_by_the_test(
    canary: tuple[float, ...], bad: Direction, verdict: Verdict, words: str, passed: bool
) -> None:
    result = evaluate_gate(gate_input((judged("error_rate", bad=bad),), {"error_rate": canary}))

    (metric,) = result.metrics
    assert metric.verdict is verdict and metric.judgement is not None
    assert metric.judgement.words.startswith(words)
    assert result.passed is passed
    assert result.judgement is not None
    if not passed:
        assert any(b.startswith("The canary judgement") for b in result.blockers)


def test_a_shift_inside_the_noise_passes_and_reads_as_one_line() -> None:
    noisy = tuple(v + (0.02 if i % 2 else -0.02) for i, v in enumerate(CONTROL))
    result = evaluate_gate(gate_input((judged("error_rate", name="Error rate"),), {"error_rate": noisy}))

    (metric,) = result.metrics
    assert metric.verdict is Verdict.PASS and result.passed
    assert metric.judgement is not None
    line = metric.judgement.line("Error rate", "%")
    assert line.startswith("Error rate: ") and " points (98% interval " in line
    assert line.endswith(" — no significant change")
    assert metric.change == metric.judgement.shift


def test_one_failing_metric_of_five_is_marginal_and_a_person_decides() -> None:
    metrics = tuple(judged(f"m{i}") for i in range(5))
    canary = {f"m{i}": SAME for i in range(4)} | {"m4": HIGHER}

    result = evaluate_gate(gate_input(metrics, canary))

    assert result.judgement is not None and result.judgement.verdict.value == "MARGINAL"
    assert result.judgement.value == pytest.approx(80)
    assert not result.passed
    (blocker,) = result.blockers
    assert blocker.startswith("The canary judgement is marginal (score 80; failing: M4; a person decides)")
    assert "Advance anyway" in blocker


def test_a_critical_metric_that_fails_forces_zero() -> None:
    metrics = (*(judged(f"m{i}") for i in range(9)), judged("errors", critical=True))
    canary = {f"m{i}": SAME for i in range(9)} | {"errors": HIGHER}

    result = evaluate_gate(gate_input(metrics, canary))

    assert result.judgement is not None and result.judgement.value == 0
    assert result.blockers == ("The canary judgement fails (critical metric failed: Errors).",)


def test_judged_and_rule_metrics_gate_together() -> None:
    rule = Metric("latency", "Latency", "avg:l", Rule.UPPER, 250, unit="ms")
    inp = gate_input((judged("error_rate"), rule), {"error_rate": SAME})
    inp = dataclasses.replace(inp, readings={**inp.readings, "latency": Observation(300.0)})

    result = evaluate_gate(inp)

    assert not result.passed
    assert result.blockers == ("Latency fails: 300 ms is above the upper bound of 250 ms.",)


def test_a_judged_trigger_fires_on_a_significant_rise() -> None:
    trigger = judged("spike")
    readings = {"spike": Observation(1.5, None, HIGHER)}
    baselines = {"spike": Observation(1.0, None, CONTROL)}

    (fired,) = fired_triggers((trigger,), readings, baselines)

    assert fired.key == "spike" and fired.judgement is not None
    assert fired_triggers((trigger,), {"spike": Observation(1.0, None, SAME)}, baselines) == ()


def test_not_enough_traffic_is_no_data_before_the_test() -> None:
    inp = gate_input((judged("error_rate"),), {"error_rate": HIGHER})
    short = Observation(None, "not enough traffic yet (312 of 500 requests)")
    result = evaluate_gate(dataclasses.replace(inp, readings={"error_rate": short}))

    (metric,) = result.metrics
    assert metric.verdict is Verdict.NO_DATA and metric.judgement is None
    assert result.blockers == ("Error rate has no data: not enough traffic yet (312 of 500 requests).",)


# --- the Markdown plan and stored JSON -----------------------------------------------------


def test_formula_judged_and_minimum_survive_export_and_import() -> None:
    template = builtin_templates()["backend"]
    error_rate = dataclasses.replace(
        template.metrics[1],
        min_count=("hits", 500.0),
        judge="mann-whitney",
        critical=True,
        weight=2.0,
        control_queries=(
            ("errors", ERRORS.replace("{flag}", "off")),
            ("hits", HITS.replace("{flag}", "off")),
        ),
    )
    plan = dataclasses.replace(template, metrics=(template.metrics[0], error_rate))

    text = export_plan(plan)
    again = parse_plan(text, name=plan.name)

    assert again.problems == [] or all("Results" in p.reason for p in again.problems)
    assert again.plan == plan
    assert export_plan(again.plan) == text
    assert "at least 500 hits` | `errors = " in text and "| mann-whitney, critical, weight 2 |" in text


def test_a_broken_formula_in_the_metric_gate_is_reported_not_imported() -> None:
    text = export_plan(builtin_templates()["aggressive"]).replace(
        "100 * errors / hits", "100 * errors % hits", 1
    )
    result = parse_plan(text, name="x")
    assert any("not a metric" in p.reason and "not %" in p.reason for p in result.problems)
    assert [m.key for m in result.plan.metrics] == []


def test_no_increase_in_error_rates_is_judged_not_held_to_zero() -> None:
    seed = "# Plan\n\n### Phase 1: Canary\n\n**Steps:**\n- 1%\n\n**Success Criteria:**\n- DataDog: No increase in error rates\n"
    result = parse_plan(seed, name="seed")
    (metric,) = result.plan.metrics
    assert (metric.judge, metric.bad) == ("mann-whitney", Direction.UP)
    assert any("judged as no significant increase" in p.reason for p in result.problems)


def test_stored_metrics_from_before_formulas_load_unchanged() -> None:
    old = {
        "key": "error_rate",
        "name": "Error rate",
        "query": "sum:e{*}.as_rate()",
        "rule": "absolute",
        "threshold": 0.1,
        "bad": "up",
        "aggregator": "avg",
        "window_minutes": 60,
        "unit": "%",
        "control_query": "",
    }
    metric = Metric.from_dict(old)
    assert (metric.query, metric.queries, metric.formula, metric.min_count, metric.judge) == (
        "sum:e{*}.as_rate()",
        (),
        "",
        None,
        "",
    )
    new = builtin_templates()["backend"].metrics[1]
    new = dataclasses.replace(new, min_count=("hits", 100.0), judge="mann-whitney")
    assert Metric.from_dict(json.loads(json.dumps(new.to_dict()))) == new
