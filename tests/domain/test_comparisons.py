"""Comparisons as written: a metric's rule is strict where the plan writes "<", "less than" or
"under", inclusive where it writes "≤", "at most" or "no more than"; the gate, the rule text,
the Markdown reader and writer, the metrics form and JSON storage all keep it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.domain.gates import Observation, Verdict, evaluate_metric, fired_triggers
from bot.domain.plans.catalog import builtin_templates
from bot.domain.plans.markdown import parse_plan
from bot.domain.plans.model import Comparison, Direction, Metric, Rule
from bot.domain.wording import describe_rule, describe_trigger
from bot.edge.forms import FormContext
from bot.edge.metric_forms import read_form
from bot.usecases.metrics_edit import apply_form, form_errors
from messages.metric_modal import Field, FieldId, metric_editor
from messages.plan_document import export_plan
from tests.driver import _rendered_state

SEED = Path(__file__).parents[1] / "fixtures" / "seeds" / "rollout-plan-template.md"
UP, DOWN = Direction.UP, Direction.DOWN
PASS, FAIL = Verdict.PASS, Verdict.FAIL
STRICT, INCLUSIVE = Comparison.STRICT, Comparison.INCLUSIVE


def metric(rule: Rule, threshold: float, cmp: Comparison, bad: Direction = UP, unit: str = "%") -> Metric:
    return Metric("m", "Error rate", "q", rule, threshold, bad, unit=unit, comparison=cmp)


# --- the gate ----------------------------------------------------------------------------------

GATE_CASES = [
    # rule, threshold, bad, current, baseline, inclusive verdict, strict verdict
    ("absolute, float noise at the limit", Rule.ABSOLUTE, 0.1, UP, 1.10, 1.00, PASS, FAIL),
    ("absolute, exactly at the limit", Rule.ABSOLUTE, 0.1, UP, 0.35, 0.25, PASS, FAIL),
    ("absolute, just under", Rule.ABSOLUTE, 0.1, UP, 1.0999, 1.0, PASS, PASS),
    ("absolute, just over", Rule.ABSOLUTE, 0.1, UP, 1.1001, 1.0, FAIL, FAIL),
    ("absolute down, at the limit", Rule.ABSOLUTE, 5, DOWN, 35, 40, PASS, FAIL),
    ("absolute down, inside", Rule.ABSOLUTE, 5, DOWN, 36, 40, PASS, PASS),
    ("relative, at the limit", Rule.RELATIVE, 10, UP, 220, 200, PASS, FAIL),
    ("relative, float noise at the limit", Rule.RELATIVE, 10, UP, 1.1, 1.0, PASS, FAIL),
    ("relative, under", Rule.RELATIVE, 10, UP, 219, 200, PASS, PASS),
    ("relative, over", Rule.RELATIVE, 10, UP, 221, 200, FAIL, FAIL),
    ("relative down, at the limit", Rule.RELATIVE, 10, DOWN, 180, 200, PASS, FAIL),
    ("upper, at the bound", Rule.UPPER, 250, UP, 250, None, PASS, FAIL),
    ("upper, under", Rule.UPPER, 250, UP, 249.9, None, PASS, PASS),
    ("upper, over", Rule.UPPER, 250, UP, 250.1, None, FAIL, FAIL),
    ("lower, at the bound", Rule.LOWER, 40, DOWN, 40, None, PASS, FAIL),
    ("lower, above", Rule.LOWER, 40, DOWN, 40.1, None, PASS, PASS),
    ("lower, below", Rule.LOWER, 40, DOWN, 39.9, None, FAIL, FAIL),
    ("zero rule ignores the comparison", Rule.ZERO, 0, UP, 0, None, PASS, PASS),
]


@pytest.mark.parametrize(
    ("rule", "threshold", "bad", "current", "baseline", "inclusive", "strict"),
    [pytest.param(*case[1:], id=case[0]) for case in GATE_CASES],
)
def test_the_comparison_decides_exactly_at_the_threshold(
    rule: Rule,
    threshold: float,
    bad: Direction,
    current: float,
    baseline: float | None,
    inclusive: Verdict,
    strict: Verdict,
) -> None:
    base = Observation(baseline) if baseline is not None else None
    for cmp, expected in ((INCLUSIVE, inclusive), (STRICT, strict)):
        got = evaluate_metric(metric(rule, threshold, cmp, bad), Observation(current), base)
        assert got.verdict is expected, (cmp, got.reason)


def test_the_seed_templates_error_rate_fails_at_exactly_a_tenth_of_a_point() -> None:
    """The seed writes "<0.1% increase": 1.00% → 1.10% is +0.1 pp (1.10 − 1.00 is
    0.10000000000000009 in floats), which is not under +0.1 pp."""
    (error_rate, _latency) = parse_plan(SEED.read_text(), name="seed").plan.metrics
    assert error_rate.comparison is STRICT

    verdict = evaluate_metric(error_rate, Observation(1.10), Observation(1.00))

    assert verdict.verdict is FAIL
    assert verdict.reason == "+0.1 pp vs baseline (1% → 1.1%), at the limit: it must stay under +0.1 pp"
    assert evaluate_metric(error_rate, Observation(1.09), Observation(1.00)).verdict is PASS


def test_a_strict_trigger_fires_at_its_threshold_and_an_inclusive_one_does_not() -> None:
    inclusive = replace(metric(Rule.ABSOLUTE, 0.5, INCLUSIVE), key="incl")
    strict = replace(metric(Rule.ABSOLUTE, 0.5, STRICT), key="strict")
    readings = {"incl": Observation(1.5), "strict": Observation(1.5)}
    baselines = {"incl": Observation(1.0), "strict": Observation(1.0)}

    assert [t.key for t in fired_triggers([inclusive, strict], readings, baselines)] == ["strict"]


# --- the words ---------------------------------------------------------------------------------

RULE_TEXT = [
    (Rule.ABSOLUTE, 0.1, UP, "%", "change vs baseline ≤ +0.1 pp (absolute)", "change vs baseline under +0.1 pp (absolute)"),
    (Rule.ABSOLUTE, 5, DOWN, "%", "change vs baseline ≥ −5 pp (absolute)", "change vs baseline above −5 pp (absolute)"),
    (Rule.RELATIVE, 10, UP, "ms", "change vs baseline ≤ +10% (relative)", "change vs baseline under +10% (relative)"),
    (Rule.UPPER, 250, UP, "ms", "≤ 250 ms (upper bound)", "under 250 ms (upper bound)"),
    (Rule.LOWER, 40, DOWN, "%", "≥ 40% (lower bound)", "above 40% (lower bound)"),
    (Rule.ZERO, 0, UP, "", "must be 0", "must be 0"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "threshold", "bad", "unit", "inclusive", "strict"), RULE_TEXT)
def test_the_rule_text_says_which_comparison(
    rule: Rule, threshold: float, bad: Direction, unit: str, inclusive: str, strict: str
) -> None:
    assert describe_rule(metric(rule, threshold, INCLUSIVE, bad, unit)) == inclusive
    assert describe_rule(metric(rule, threshold, STRICT, bad, unit)) == strict


TRIGGER_TEXT = [
    (Rule.ABSOLUTE, 0.5, UP, "fires when error rate rises more than 0.5 pp (absolute)",
     "fires when error rate rises 0.5 pp or more (absolute)"),
    (Rule.UPPER, 50, UP, "fires when error rate is above 50% (upper bound)",
     "fires when error rate is at or above 50% (upper bound)"),
    (Rule.LOWER, 2, DOWN, "fires when error rate is below 2% (lower bound)",
     "fires when error rate is at or below 2% (lower bound)"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "threshold", "bad", "inclusive", "strict"), TRIGGER_TEXT)
def test_the_trigger_text_says_whether_the_threshold_itself_fires(
    rule: Rule, threshold: float, bad: Direction, inclusive: str, strict: str
) -> None:
    assert describe_trigger(metric(rule, threshold, INCLUSIVE, bad)) == inclusive
    assert describe_trigger(metric(rule, threshold, STRICT, bad)) == strict


# --- the Markdown reader and writer ----------------------------------------------------------

CRITERIA = [
    ("| Error rate | [current] | <0.1% increase | Monitoring |", STRICT),
    ("| Error rate | [current] | < 0.1% increase | Monitoring |", STRICT),
    ("| Error rate | [current] | ≤0.1% increase | Monitoring |", INCLUSIVE),
    ("| Error rate | [current] | <=0.1% increase | Monitoring |", INCLUSIVE),
]


@pytest.mark.parametrize(("row", "expected"), CRITERIA)
def test_a_success_table_target_keeps_its_comparison(row: str, expected: Comparison) -> None:
    doc = f"# Rollout Plan: X\n\n## Success Metrics\n\n| Metric | Baseline | Target | Method |\n|---|---|---|---|\n{row}\n"
    (error_rate,) = parse_plan(doc, name="x").plan.metrics
    assert (error_rate.rule, error_rate.threshold, error_rate.comparison) == (Rule.ABSOLUTE, 0.1, expected)


SENTENCES = [
    ("DataDog: Error rate increases by less than 0.5 pp", "criterion", STRICT),
    ("DataDog: Error rate increases by under 0.5 pp", "criterion", STRICT),
    ("DataDog: Error rate increases by at most 0.5 pp", "criterion", INCLUSIVE),
    ("DataDog: Error rate increases by no more than 0.5 pp", "criterion", INCLUSIVE),
    ("DataDog: Checkout latency stays below 250 ms", "criterion", STRICT),
    ("Error rate increases by more than 0.5 pp", "trigger", INCLUSIVE),
    ("Error rate increases by at least 0.5 pp", "trigger", STRICT),
    ("Checkout errors go above 50", "trigger", INCLUSIVE),
    ("Checkout errors reaches or goes above 50", "trigger", STRICT),
]


@pytest.mark.parametrize(("sentence", "kind", "expected"), SENTENCES)
def test_a_sentence_keeps_its_comparison(sentence: str, kind: str, expected: Comparison) -> None:
    if kind == "criterion":
        doc = f"# Rollout Plan: X\n\n### Phase 1: One\n\n**Success Criteria:**\n- {sentence}\n"
        (made,) = parse_plan(doc, name="x").plan.metrics
    else:
        doc = (
            f"# Rollout Plan: X\n\n## Rollback Triggers\n\nImmediately halt and rollback if:\n- {sentence}\n"
        )
        (made,) = parse_plan(doc, name="x").plan.triggers
    assert made.comparison is expected


def test_an_exported_plan_keeps_each_comparison_and_says_it_in_words() -> None:
    plan = builtin_templates()["standard"]
    error_rate, latency = plan.metrics
    spike, *others = plan.triggers
    changed = replace(
        plan,
        metrics=(replace(error_rate, comparison=STRICT), latency),
        triggers=(replace(spike, comparison=STRICT), *others),
    )

    text = export_plan(changed)

    assert "- Error rate increases by at least 0.5 pp\n" in text
    assert "| success criterion | error_rate | Error rate | absolute | 0.1 | % | up |" in text
    rows = [line for line in text.splitlines() if line.startswith("| success criterion | error_rate |")]
    assert rows[0].endswith("| fails |")
    assert parse_plan(text, name=plan.name).plan == changed


def test_a_metric_gate_table_without_the_column_reads_as_inclusive() -> None:
    """Documents exported before comparisons existed: the bot then passed at the threshold."""
    text = export_plan(builtin_templates()["standard"])
    old = "\n".join(
        line.removesuffix(" passes |").removesuffix(" At threshold |") for line in text.splitlines()
    )
    old = old.replace(
        "|---|---|---|---|---|---|---|---|---|---|---|---|", "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    assert "At threshold" not in old and "passes" not in old

    plan = parse_plan(old, name="standard")

    assert plan.problems == []
    assert {m.comparison for m in (*plan.plan.metrics, *plan.plan.triggers)} == {INCLUSIVE}


# --- JSON storage and the form ---------------------------------------------------------------


def test_a_metric_stored_without_a_comparison_loads_as_inclusive() -> None:
    stored: dict[str, Any] = {"key": "e", "name": "E", "query": "q", "rule": "absolute", "threshold": 0.1}
    assert Metric.from_dict(stored).comparison is INCLUSIVE
    strict = metric(Rule.ABSOLUTE, 0.1, STRICT)
    assert strict.to_dict()["comparison"] == "strict"
    assert Metric.from_dict(strict.to_dict()) == strict


def _editor(metrics: list[Metric]) -> dict[str, Any]:
    return metric_editor(
        feature="f", metrics=metrics, triggers=[], private_metadata=FormContext(channel_id="C1").dumps()
    )


def test_the_form_shows_the_comparison_and_saves_a_change_to_it() -> None:
    strict = metric(Rule.ABSOLUTE, 0.1, STRICT)
    view = _editor([strict])
    state = _rendered_state(view["blocks"])
    (block_id,) = [
        b for b in state if (f := FieldId.parse(b)) and f.group == 0 and f.field is Field.COMPARISON
    ]
    assert state[block_id]["value"]["selected_option"]["value"] == "strict"

    unchanged = read_form(state)
    assert form_errors(unchanged) == {}
    assert apply_form(unchanged, [strict], []).metrics == (strict,)

    state[block_id]["value"]["selected_option"] = {
        "text": {"type": "plain_text", "text": "x"},
        "value": "inclusive",
    }
    assert apply_form(read_form(state), [strict], []).metrics == (replace(strict, comparison=INCLUSIVE),)


def test_a_form_opened_before_the_field_existed_keeps_the_comparison() -> None:
    strict = metric(Rule.ABSOLUTE, 0.1, STRICT)
    state = _rendered_state(_editor([strict])["blocks"])
    old_form = {
        b: v for b, v in state.items() if not ((f := FieldId.parse(b)) and f.field is Field.COMPARISON)
    }

    assert apply_form(read_form(old_form), [strict], []).metrics == (strict,)


def test_a_forged_comparison_is_refused() -> None:
    state = _rendered_state(_editor([metric(Rule.ABSOLUTE, 0.1, STRICT)])["blocks"])
    (block_id,) = [
        b for b in state if (f := FieldId.parse(b)) and f.group == 0 and f.field is Field.COMPARISON
    ]
    state[block_id]["value"]["selected_option"] = {
        "text": {"type": "plain_text", "text": "x"},
        "value": "sorta",
    }
    assert form_errors(read_form(state)) == {block_id: "Pick one of the options."}
