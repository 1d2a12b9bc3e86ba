"""The metric gate: may a rollout advance? Pure: plan metrics and readings in, verdicts out.

Rules, per metric (`bot.plans.model.Rule`, bad direction `Direction`):

- RELATIVE: change % = (current − baseline) / |baseline| × 100. With bad=UP it fails when
  change > threshold; with bad=DOWN when change < −threshold.
- ABSOLUTE: change = current − baseline, in the metric's own unit (percentage points when the
  unit is "%"); same comparison as RELATIVE.
- UPPER: fails when value > threshold.  LOWER: fails when value < threshold.
- ZERO: fails when value ≠ 0.
- Exactly at the threshold, the metric's `Comparison` decides: INCLUSIVE ("≤", "at most", and
  every metric stored before comparisons existed) passes there, and a trigger exactly at its
  threshold does not fire; STRICT ("<", "less than", "under") fails there: change ≥ threshold
  (UPPER: value ≥ threshold, LOWER: value ≤ threshold) fails, and such a trigger fires.
  Comparisons allow a tolerance of a billionth of the numbers compared, so float noise
  (1.1 − 1.0 = 0.10000000000000009) counts as exactly at 0.1: it passes an inclusive 0.1 and
  fails a strict one.
- RELATIVE with baseline 0: current 0 is a 0 % change (pass); any move in the bad direction
  is an unbounded relative change: FAIL, marked `incomputable`; the good direction passes.
- Incomputable is not fired: a trigger whose change cannot be computed blocks the advance
  (it is not PASS) but is not in `fired`, so it never pauses or rolls back (the watch warns
  the owner instead, see `incomputable_triggers`).
- No data: a missing current value (None, NaN or ±inf) is NO_DATA, with the observation's
  `problem` as the reason; RELATIVE and ABSOLUTE with no usable baseline are NO_DATA
  ("no baseline captured").

A rollback trigger is the same Metric read the other way: its verdict FAIL means it fired,
unless it is incomputable (then it could not be judged, and has not fired).

The gate passes only when every success metric is PASS, no trigger is FAIL (fired or
incomputable) or NO_DATA (the bot never advances on missing data), no exit criterion of a
phase being left is unchecked, the judged metrics' score passes (`bot.domain.canary`: marked
`judge`, they are decided by the statistical canary test, not by their rule), and the step has
soaked its minimum business days (`bot.calendar`). Blockers are listed, one sentence each, in
that order of gravity: fired triggers, failing metrics, the canary judgement, triggers that
cannot be judged, metrics then triggers without data, unchecked exit criteria, soak.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from bot.domain import canary
from bot.domain.judgement import Score
from bot.domain.plans.model import Comparison, Direction, Metric, Rule
from bot.domain.soak import Soak, soak_status
from bot.domain.wording import allowed_change, amount, change_amount, describe_rule, describe_trigger

__all__ = [
    "GateInput",
    "GateResult",
    "MetricVerdict",
    "Observation",
    "Verdict",
    "evaluate_gate",
    "evaluate_metric",
    "fired_triggers",
    "incomputable_triggers",
]

# Relative tolerance of comparisons: far above float noise (~1e-16), far below any threshold
# a team would write. The absolute floor only matters when everything compared is ~0.
_REL_TOL = 1e-9
_ABS_TOL = 1e-12

_NO_READING = "no reading was taken"
_NO_BASELINE = "no baseline captured"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no data"


@dataclass(frozen=True)
class Observation:
    """One reading of a metric. `value` None means none could be had; `problem` says why."""

    value: float | None
    problem: str | None = None
    series: tuple[float, ...] = ()


@dataclass(frozen=True)
class MetricVerdict:
    """How one metric (or trigger) stands against its rule.

    `change` is in the rule's own terms: percent for RELATIVE, the metric's unit (pp for "%")
    for ABSOLUTE, None for the bounds and ZERO, and None when it is unbounded or unknown.
    """

    key: str
    name: str
    verdict: Verdict
    value: float | None
    baseline: float | None
    change: float | None
    allowed: str
    reason: str
    unit: str
    series: tuple[float, ...] = ()
    judgement: canary.Judged | None = None  # a judged metric's test; `change` is its shift
    incomputable: bool = False  # FAIL because no change can be computed (baseline 0)
    # The rule itself, for a report that puts the change beside its limit in numbers.
    rule: str = ""  # the Rule's value: "relative", "absolute", "upper", "lower", "zero"
    threshold: float = 0.0
    bad_up: bool = True  # which way is bad: up (error rate) or down (conversion)


@dataclass(frozen=True)
class GateInput:
    """Everything the gate looks at. `readings` and `baselines` are keyed by metric key and
    cover both success metrics and triggers. `unchecked_exit_criteria` is empty unless the
    advance leaves the phase."""

    metrics: Sequence[Metric]
    triggers: Sequence[Metric]
    readings: Mapping[str, Observation]
    baselines: Mapping[str, Observation]
    unchecked_exit_criteria: Sequence[str]
    step_title: str
    step_started_at: datetime
    min_business_days: float
    now: datetime
    tz: str
    country: str


@dataclass(frozen=True)
class GateResult:
    """The gate's decision. In `triggers`, FAIL means the trigger fired; `fired` holds those."""

    passed: bool
    metrics: tuple[MetricVerdict, ...]
    triggers: tuple[MetricVerdict, ...]
    fired: tuple[MetricVerdict, ...]
    unchecked: tuple[str, ...]
    soak: Soak
    blockers: tuple[str, ...]
    judgement: Score | None = None  # the judged success metrics' score; None when none is judged


# --- evaluating a metric ----------------------------------------------------------------


def evaluate_metric(metric: Metric, current: Observation, baseline: Observation | None) -> MetricVerdict:
    """Judge one metric's current reading against its rule (see the module docstring)."""
    allowed = describe_rule(metric)

    def verdict(
        v: Verdict,
        reason: str,
        *,
        value: float | None,
        base: float | None,
        change: float | None,
        incomputable: bool = False,
    ) -> MetricVerdict:
        return MetricVerdict(
            key=metric.key,
            name=metric.name,
            verdict=v,
            value=value,
            baseline=base,
            change=change,
            allowed=allowed,
            reason=reason,
            unit=metric.unit,
            series=current.series,
            incomputable=incomputable,
            rule=metric.rule.value,
            threshold=metric.threshold,
            bad_up=metric.bad is Direction.UP,
        )

    value = _usable(current.value)
    base = _usable(baseline.value) if baseline is not None else None
    if value is None:
        return verdict(
            Verdict.NO_DATA,
            _missing_reason(current),
            value=None,
            base=base,
            change=None,
        )

    if metric.judge:
        control = baseline.series if baseline is not None else ()
        found = canary.judge(metric, current.series, control)
        judged = verdict(
            Verdict(found.verdict),
            found.line(metric.name, metric.unit),
            value=value,
            base=base,
            change=found.shift,
        )
        return replace(judged, judgement=found)

    if metric.rule in (Rule.UPPER, Rule.LOWER, Rule.ZERO):
        ok, reason = _judge_level(metric, value)
        return verdict(_pass_fail(ok), reason, value=value, base=base, change=None)

    if base is None:
        reason = _NO_BASELINE
        if baseline is not None and baseline.problem:
            reason = f"{_NO_BASELINE}: {baseline.problem}"
        return verdict(Verdict.NO_DATA, reason, value=value, base=None, change=None)

    ok, change, reason = _judge_change(metric, value, base)
    incomputable = not ok and change is None  # only an unbounded change has none
    return verdict(_pass_fail(ok), reason, value=value, base=base, change=change, incomputable=incomputable)


def _judge_level(metric: Metric, value: float) -> tuple[bool, str]:
    """UPPER, LOWER and ZERO look at the value itself."""
    shown = amount(value, metric.unit)
    limit = amount(metric.threshold, metric.unit)
    strict = metric.comparison is Comparison.STRICT
    match metric.rule:
        case Rule.UPPER | Rule.LOWER:
            up = metric.rule is Rule.UPPER
            over, bound = (
                ("above", f"the upper bound of {limit}") if up else ("below", f"the lower bound of {limit}")
            )
            if not _beyond(value, metric.threshold, up=up, strict=strict):
                return True, f"{shown} is {'' if strict else 'at or '}{'below' if up else 'above'} {bound}"
            if _beyond(value, metric.threshold, up=up):
                return False, f"{shown} is {over} {bound}"
            return False, f"{shown} is at {bound}, and must stay {'under' if up else 'above'} it"
        case _:  # Rule.ZERO
            if _beyond(abs(value), 0.0, up=True):
                return False, f"{shown}, where there must be none"
            return True, f"{shown}, as required"


def _judge_change(metric: Metric, value: float, base: float) -> tuple[bool, float | None, str]:
    """RELATIVE and ABSOLUTE compare the change from the baseline with the threshold."""
    up = metric.bad is Direction.UP
    moved = f"({amount(base, metric.unit)} → {amount(value, metric.unit)})"
    if metric.rule is Rule.RELATIVE and base == 0:
        return _judge_from_zero(value, up=up, moved=moved)

    scale: tuple[float, ...]
    if metric.rule is Rule.RELATIVE:
        change = (value - base) / abs(base) * 100
        scale = (change,)
    else:
        change = value - base
        # Float noise of a difference scales with the operands, not with the difference.
        scale = (value, base)
    limit = metric.threshold if up else -metric.threshold
    failed = _beyond(change, limit, *scale, up=up, strict=metric.comparison is Comparison.STRICT)
    shown = "no change" if change == 0 else change_amount(change, metric, signed=True)
    if failed and not _beyond(change, limit, *scale, up=up):  # strict, and exactly at the limit
        must = f"it must stay {'under' if up else 'above'} {allowed_change(metric)}"
        return False, change, f"{shown} vs baseline {moved}, at the limit: {must}"
    where = "beyond" if failed else "within"
    reason = f"{shown} vs baseline {moved}, {where} the allowed {allowed_change(metric)}"
    return not failed, change, reason


def _judge_from_zero(value: float, *, up: bool, moved: str) -> tuple[bool, float | None, str]:
    """RELATIVE against a zero baseline: no percentage exists, only a direction."""
    if not _beyond(abs(value), 0.0, up=True):
        return True, 0.0, f"no change vs baseline {moved}"
    rose = value > 0
    if rose == up:
        word = "rise" if up else "fall"
        return (
            False,
            None,
            f"baseline is 0, so any {word} is an unbounded relative change {moved}",
        )
    return (
        True,
        None,
        f"baseline is 0 and the value {'rose' if rose else 'fell'}, the good way {moved}",
    )


def _beyond(x: float, limit: float, *scale: float, up: bool, strict: bool = False) -> bool:
    """Is `x` past `limit` (above it when `up`, else below it) by more than float noise? With
    `strict`, reaching the limit (to within float noise) counts as past it."""
    tolerance = max(_ABS_TOL, _REL_TOL * max(abs(x), abs(limit), *(abs(s) for s in scale)))
    excess = x - limit if up else limit - x
    return excess >= -tolerance if strict else excess > tolerance


def _usable(value: float | None) -> float | None:
    """The value if it is a finite number; NaN and ±inf are no data, not numbers to judge."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _missing_reason(current: Observation) -> str:
    if current.problem:
        return current.problem
    if current.value is not None:
        return f"the reading is not a finite number ({current.value})"
    return "no value was returned"


def _pass_fail(ok: bool) -> Verdict:
    return Verdict.PASS if ok else Verdict.FAIL


# --- the gate ---------------------------------------------------------------------------


def evaluate_gate(inp: GateInput) -> GateResult:
    """Decide whether the rollout may advance (rules in the module docstring)."""
    metrics = _evaluate_all(inp.metrics, inp.readings, inp.baselines)
    triggers = _evaluate_all(inp.triggers, inp.readings, inp.baselines)
    fired = tuple(t for t in triggers if _fired(t))
    unchecked = tuple(inp.unchecked_exit_criteria)
    soak = soak_status(
        inp.step_started_at,
        inp.min_business_days,
        inp.now,
        tz=inp.tz,
        country=inp.country,
    )
    judgement = canary.score_metrics(inp.metrics, [m.judgement for m in metrics])
    passed = (
        all(m.verdict is Verdict.PASS for m in metrics if m.judgement is None)
        and (judgement is None or judgement.verdict.value == "PASS")
        and all(t.verdict is Verdict.PASS for t in triggers)
        and not unchecked
        and soak.met
    )
    blockers = _blockers(inp, metrics, triggers, soak, judgement)
    return GateResult(
        passed=passed,
        metrics=metrics,
        triggers=triggers,
        fired=fired,
        unchecked=unchecked,
        soak=soak,
        blockers=blockers,
        judgement=judgement,
    )


def fired_triggers(
    triggers: Sequence[Metric],
    readings: Mapping[str, Observation],
    baselines: Mapping[str, Observation],
) -> tuple[MetricVerdict, ...]:
    """The triggers that fired (verdict FAIL, and computable), for the periodic watch. A
    trigger without data, or whose change cannot be computed, has not fired; the gate, not the
    watch, refuses to advance on it."""
    return tuple(v for v in _evaluate_all(triggers, readings, baselines) if _fired(v))


def incomputable_triggers(
    triggers: Sequence[Metric],
    readings: Mapping[str, Observation],
    baselines: Mapping[str, Observation],
) -> tuple[MetricVerdict, ...]:
    """The triggers whose change cannot be computed: the watch warns about them, once."""
    verdicts = _evaluate_all(triggers, readings, baselines)
    return tuple(v for v in verdicts if v.verdict is Verdict.FAIL and v.incomputable)


def _fired(trigger: MetricVerdict) -> bool:
    return trigger.verdict is Verdict.FAIL and not trigger.incomputable


def _evaluate_all(
    metrics: Sequence[Metric],
    readings: Mapping[str, Observation],
    baselines: Mapping[str, Observation],
) -> tuple[MetricVerdict, ...]:
    return tuple(
        evaluate_metric(m, readings.get(m.key, Observation(None, _NO_READING)), baselines.get(m.key))
        for m in metrics
    )


def _blockers(
    inp: GateInput,
    metrics: tuple[MetricVerdict, ...],
    triggers: tuple[MetricVerdict, ...],
    soak: Soak,
    judgement: Score | None = None,
) -> tuple[str, ...]:
    """One sentence per reason not to advance, gravest first."""
    out: list[str] = []
    out += [
        f"Rollback trigger {t.name} fired: {t.reason} ({describe_trigger(trigger)})."
        for trigger, t in zip(inp.triggers, triggers, strict=True)
        if _fired(t)
    ]
    out += [f"{m.name} fails: {m.reason}." for m in metrics if m.verdict is Verdict.FAIL and not m.judgement]
    out += [canary.blocker(judgement) or ""] if judgement is not None else []
    out = [line for line in out if line]
    out += [
        f"Rollback trigger {t.name} cannot be judged: {t.reason}."
        for t in triggers
        if t.verdict is Verdict.FAIL and t.incomputable
    ]
    out += [f"{m.name} has no data: {m.reason}." for m in metrics if m.verdict is Verdict.NO_DATA]
    out += [
        f"Rollback trigger {t.name} has no data: {t.reason}."
        for t in triggers
        if t.verdict is Verdict.NO_DATA
    ]
    out += [f"Exit criterion not checked: {item}." for item in inp.unchecked_exit_criteria]
    if not soak.met:
        out.append(f"{soak.describe(inp.step_title, inp.tz)}.")
    return tuple(out)
