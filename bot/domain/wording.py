"""How the gate puts rules, amounts and changes into words: "+0.5 pp (absolute)", "250 ms",
"a \u22120.2 pp change". Pure; shared by the gate's verdicts, its blockers and the metric form."""

from __future__ import annotations

from bot.domain.canary import judged_rule
from bot.domain.plans.model import Comparison, Direction, Metric, Rule

MINUS = "\u2212"  # a real minus sign reads better than a hyphen next to numbers


def describe_rule(metric: Metric) -> str:
    """The rule as what must hold, e.g. "change vs baseline ≤ +10% (relative)",
    "change vs baseline ≤ +0.1 pp (absolute)", "≤ 250 ms (upper bound)", "must be 0".

    A strict rule says so in words, not with a "<" one glyph away from "≤": "change vs
    baseline under +0.1 pp (absolute)", "above 40% (lower bound)"."""
    if metric.judge:
        return judged_rule(metric)
    strict = metric.comparison is Comparison.STRICT
    match metric.rule:
        case Rule.RELATIVE | Rule.ABSOLUTE:
            if strict:
                op = "under" if metric.bad is Direction.UP else "above"
            else:
                op = "≤" if metric.bad is Direction.UP else "≥"
            return f"change vs baseline {op} {allowed_change(metric)} ({metric.rule.value})"
        case Rule.UPPER:
            return f"{'under' if strict else '≤'} {amount(metric.threshold, metric.unit)} (upper bound)"
        case Rule.LOWER:
            return f"{'above' if strict else '≥'} {amount(metric.threshold, metric.unit)} (lower bound)"
        case Rule.ZERO:
            return "must be 0"


def describe_trigger(metric: Metric) -> str:
    """The same rule read as what fires a rollback trigger, e.g.
    "fires when error rate rises more than 0.5 pp (absolute)"; a strict rule fires at its
    threshold: "fires when error rate rises 0.5 pp or more (absolute)"."""
    name = lower_first(metric.name)
    if metric.judge:
        return f"fires when {name} is significantly {'higher' if metric.bad is Direction.UP else 'lower'} than its control (Mann-Whitney)"
    strict = metric.comparison is Comparison.STRICT
    match metric.rule:
        case Rule.RELATIVE | Rule.ABSOLUTE:
            if metric.threshold < 0:
                # "rises more than −5%" would be a riddle; say it with symbols instead.
                op = (">", "<") if not strict else ("≥", "≤")
                bound = allowed_change(metric)
                sign = op[0] if metric.bad is Direction.UP else op[1]
                return f"fires when {name} change vs baseline {sign} {bound} ({metric.rule.value})"
            verb = "rises" if metric.bad is Direction.UP else "falls"
            size = change_amount(metric.threshold, metric)
            if strict:
                return f"fires when {name} {verb} {size} or more ({metric.rule.value})"
            return f"fires when {name} {verb} more than {size} ({metric.rule.value})"
        case Rule.UPPER:
            side = "at or above" if strict else "above"
            return f"fires when {name} is {side} {amount(metric.threshold, metric.unit)} (upper bound)"
        case Rule.LOWER:
            side = "at or below" if strict else "below"
            return f"fires when {name} is {side} {amount(metric.threshold, metric.unit)} (lower bound)"
        case Rule.ZERO:
            return f"fires when {name} is not 0"


def allowed_change(metric: Metric) -> str:
    """The signed limit on the change: "+10%", "−0.1 pp", "+5 ms"."""
    limit = metric.threshold if metric.bad is Direction.UP else -metric.threshold
    return change_amount(limit, metric, signed=True)


def change_amount(change: float, metric: Metric, *, signed: bool = False) -> str:
    """A change in the rule's terms: percent for RELATIVE, pp for an ABSOLUTE rate."""
    if metric.rule is Rule.RELATIVE:
        unit = "%"
    elif metric.unit == "%":
        unit = "pp"  # an absolute change of a percentage is in percentage points
    else:
        unit = metric.unit
    text = amount(abs(change) if signed else change, unit)
    if not signed:
        return text
    return f"{'+' if change >= 0 else MINUS}{text}"


def amount(x: float, unit: str) -> str:
    """A number with its unit: "12%", "250 ms", "3 records", "7"."""
    number = plain_number(x)
    if not unit:
        return number
    return f"{number}{unit}" if unit == "%" else f"{number} {unit}"


def plain_number(x: float) -> str:
    """Up to six decimals, no exponent, no trailing zeros; a real minus sign."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text.replace("-", MINUS)


def lower_first(name: str) -> str:
    """ "Error rate" -> "error rate", but "API errors" stays as written."""
    if len(name) > 1 and name[1].isupper():
        return name
    return name[:1].lower() + name[1:]
