"""The built-in templates measure what their names say."""

from __future__ import annotations

import pytest

from bot.domain.plans.catalog import builtin_templates


@pytest.mark.parametrize("name", sorted(builtin_templates()))
def test_every_error_rate_is_errors_over_requests_in_percent(name: str) -> None:
    plan = builtin_templates()[name]
    rates = [m for m in (*plan.metrics, *plan.triggers) if m.name.lower().startswith("error rate")]
    assert rates, "each template watches its error rate"
    for metric in rates:
        # Errors per second grow with the traffic a rollout adds; a share of requests does not.
        assert ".as_rate()" not in metric.query and metric.unit == "%"
        assert metric.formula.replace(" ", "") == "100*errors/hits", (name, metric.key, metric.formula)
        assert set(dict(metric.queries)) == {"errors", "hits"}
