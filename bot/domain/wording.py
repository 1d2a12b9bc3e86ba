"""How the gate puts rules, amounts and changes into words: "+0.5 pp (absolute)", "250 ms",
"a \u22120.2 pp change". Pure; shared by the gate's verdicts, its blockers and the metric form."""

from __future__ import annotations

from bot.domain.canary import judged_rule
from bot.domain.plans.model import Direction, Metric, Rule

MINUS = "\u2212"  # a real minus sign reads better than a hyphen next to numbers


def describe_rule(metric: Metric) -> str:
    """The rule as what must hold, e.g. "change vs baseline ≤ +10% (relative)",
    "change vs baseline ≤ +0.1 pp (absolute)", "≤ 250 ms (upper bound)", "must be 0"."""
    if metric.judge:
        return judged_rule(metric)
    match metric.rule:
        case Rule.RELATIVE | Rule.ABSOLUTE:
            op = "≤" if metric.bad is Direction.UP else "≥"
            return f"change vs baseline {op} {allowed_change(metric)} ({metric.rule.value})"
        case Rule.UPPER:
            return f"≤ {amount(metric.threshold, metric.unit)} (upper bound)"
        case Rule.LOWER:
            return f"≥ {amount(metric.threshold, metric.unit)} (lower bound)"
        case Rule.ZERO:
            return "must be 0"


def describe_trigger(metric: Metric) -> str:
    """The same rule read as what fires a rollback trigger, e.g.
    "fires when error rate rises more than 0.5 pp (absolute)"."""
    name = lower_first(metric.name)
    if metric.judge:
        return f"fires when {name} is significantly {'higher' if metric.bad is Direction.UP else 'lower'} than its control (Mann-Whitney)"
    match metric.rule:
        case Rule.RELATIVE | Rule.ABSOLUTE:
            if metric.threshold < 0:
                # "rises more than −5%" would be a riddle; say it with symbols instead.
                op = ">" if metric.bad is Direction.UP else "<"
                bound = allowed_change(metric)
                return f"fires when {name} change vs baseline {op} {bound} ({metric.rule.value})"
            verb = "rises" if metric.bad is Direction.UP else "falls"
            size = change_amount(metric.threshold, metric)
            return f"fires when {name} {verb} more than {size} ({metric.rule.value})"
        case Rule.UPPER:
            return f"fires when {name} is above {amount(metric.threshold, metric.unit)} (upper bound)"
        case Rule.LOWER:
            return f"fires when {name} is below {amount(metric.threshold, metric.unit)} (lower bound)"
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
