"""Where a metric's rule breaks, as a value on the metric's own scale: the line a chart draws.

The gate itself (bot/domain/gates.py) judges the change from the baseline; this only turns
the same rule round, for a picture: RELATIVE +t % of a baseline b lies at b + |b|·t/100 (minus
when the bad direction is down), ABSOLUTE +t at b + t, UPPER and LOWER at their bound, ZERO at 0.
"""

from __future__ import annotations

from bot.domain.plans.model import Direction, Metric, Rule


def limit_value(metric: Metric, baseline: float | None) -> float | None:
    """The value past which the metric fails (a trigger fires); None when the rule compares
    with a baseline and there is none."""
    if metric.rule in (Rule.UPPER, Rule.LOWER):
        return metric.threshold
    if metric.rule is Rule.ZERO:
        return 0.0
    if baseline is None:
        return None
    sign = 1.0 if metric.bad is Direction.UP else -1.0
    if metric.rule is Rule.RELATIVE:
        return baseline + sign * abs(baseline) * metric.threshold / 100
    return baseline + sign * metric.threshold
