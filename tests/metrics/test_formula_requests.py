"""Formula metrics against the Datadog stand-in: the exact v2 JSON the client sends (one scalar
and one timeseries request per metric, every named query and the formula in it), the formula
computed by the stand-in from per-query values, the counted query's total beside the value, and
the minimum of traffic applied on the way to the gate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.domain.plans.model import Metric, Rule
from bot.metrics import DatadogMetricsSource, MetricQuery
from bot.usecases import measure
from tests.fakes.datadog_api import FakeDatadog

NOW = datetime(2024, 3, 25, 19, 28, tzinfo=UTC)
NOW_MS = 1_711_394_880_000
ERRORS = "sum:trace.http.request.errors{service:checkout}.as_count()"
HITS = "sum:trace.http.request.hits{service:checkout}.as_count()"


@pytest.fixture(autouse=True)
def _no_datadog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DD_SITE", "DD_API_KEY", "DD_APP_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeDatadog]:
    with FakeDatadog() as server:
        yield server


@pytest.fixture
def source(fake: FakeDatadog) -> Iterator[DatadogMetricsSource]:
    with DatadogMetricsSource("key", "app", api_url=fake.url) as src:
        yield src


def error_rate(count_of: str = "") -> MetricQuery:
    return MetricQuery(
        name="error_rate",
        query="",
        aggregator="sum",
        queries=(("errors", ERRORS), ("hits", HITS)),
        formula="100 * errors / hits",
        count_of=count_of,
    )


def test_one_scalar_request_carries_both_queries_and_the_formula(
    fake: FakeDatadog, source: DatadogMetricsSource
) -> None:
    fake.set_value("request.errors", 5.0)
    fake.set_value("request.hits", 2000.0)

    reading = source.snapshot([error_rate()], now=NOW)["error_rate"]

    assert reading.value == 0.25
    (scalar,) = fake.requests_to("scalar")
    assert scalar.body == {
        "data": {
            "type": "scalar_request",
            "attributes": {
                "from": NOW_MS - 3_600_000,
                "to": NOW_MS,
                "queries": [
                    {"name": "errors", "data_source": "metrics", "aggregator": "sum", "query": ERRORS},
                    {"name": "hits", "data_source": "metrics", "aggregator": "sum", "query": HITS},
                ],
                "formulas": [{"formula": "100 * errors / hits"}],
            },
        }
    }


def test_the_timeseries_carries_the_same_queries_and_formula(
    fake: FakeDatadog, source: DatadogMetricsSource
) -> None:
    fake.set_value("request.errors", 5.0, series=[1.0, 2.0, 3.0])
    fake.set_value("request.hits", 2000.0, series=[100.0, 100.0, 200.0])

    reading = source.snapshot([error_rate()], now=NOW)["error_rate"]

    assert reading.series == (1.0, 2.0, 1.5)
    (series,) = fake.requests_to("timeseries")
    assert series.body == {
        "data": {
            "type": "timeseries_request",
            "attributes": {
                "from": NOW_MS - 3_600_000,
                "to": NOW_MS,
                "interval": 240_000,
                "queries": [
                    {"name": "errors", "data_source": "metrics", "query": ERRORS},
                    {"name": "hits", "data_source": "metrics", "query": HITS},
                ],
                "formulas": [{"formula": "100 * errors / hits"}],
            },
        }
    }


def test_the_counted_query_is_a_second_formula_and_its_total_comes_back(
    fake: FakeDatadog, source: DatadogMetricsSource
) -> None:
    fake.set_value("request.errors", 3.0)
    fake.set_value("request.hits", 312.0)

    reading = source.snapshot([error_rate(count_of="hits")], now=NOW)["error_rate"]

    (scalar,) = fake.requests_to("scalar")
    assert scalar.body["data"]["attributes"]["formulas"] == [
        {"formula": "100 * errors / hits"},
        {"formula": "hits"},
    ]
    assert (reading.value, reading.count) == (pytest.approx(100 * 3 / 312), 312.0)


def test_a_query_without_data_gives_no_value_and_no_traffic(
    fake: FakeDatadog, source: DatadogMetricsSource
) -> None:
    fake.set_value("request.errors", 3.0)
    fake.set_value("request.hits", None)

    reading = source.snapshot([error_rate(count_of="hits")], now=NOW)["error_rate"]

    assert (reading.value, reading.problem, reading.count) == (None, "no data points in the last 1 h", 0.0)


def test_division_by_zero_is_no_usable_number(fake: FakeDatadog, source: DatadogMetricsSource) -> None:
    fake.set_value("request.errors", 0.0)
    fake.set_value("request.hits", 0.0)

    reading = source.snapshot([error_rate()], now=NOW)["error_rate"]

    assert reading.value is None and "no usable number" in (reading.problem or "")


@pytest.mark.parametrize(
    "formula", ["100 * errors / hits; drop", "errors % hits", "errors\nhits", "{errors}", "errors^2"]
)
def test_a_formula_with_other_characters_never_reaches_datadog(
    fake: FakeDatadog, source: DatadogMetricsSource, formula: str
) -> None:
    query = MetricQuery("x", "", queries=(("errors", ERRORS), ("hits", HITS)), formula=formula)

    reading = source.snapshot([query], now=NOW)["x"]

    assert reading.value is None and "may not" in (reading.problem or "")
    assert fake.requests_to("scalar") == []


# --- minimum traffic, on the way to the gate ------------------------------------------


def formula_metric(min_count: tuple[str, float] | None) -> Metric:
    return Metric(
        key="error_rate",
        name="Error rate",
        query="",
        rule=Rule.ABSOLUTE,
        threshold=0.1,
        unit="%",
        aggregator="sum",
        queries=(("errors", ERRORS), ("hits", HITS)),
        formula="100 * errors / hits",
        min_count=min_count,
    )


@pytest.mark.parametrize(
    ("hits", "min_count", "value", "problem"),
    [
        (312.0, ("hits", 500.0), None, "not enough traffic yet (312 of 500 requests)"),
        (500.0, ("hits", 500.0), 0.6, None),
        (None, ("hits", 500.0), None, "not enough traffic yet (0 of 500 requests)"),
        (312.0, None, 100 * 3 / 312, None),
    ],
)
def test_min_count_blocks_like_no_data_and_says_so(
    fake: FakeDatadog,
    source: DatadogMetricsSource,
    hits: float | None,
    min_count: tuple[str, float] | None,
    value: float | None,
    problem: str | None,
) -> None:
    fake.set_value("request.errors", 3.0)
    fake.set_value("request.hits", hits)
    metric = formula_metric(min_count)
    plan = measure.plan_queries([metric], feature="f", flag=None, service="checkout")

    readings = measure.take(source, plan, NOW)
    seen = measure.by_metric(plan, readings, {metric.key: metric})["error_rate"]

    assert (seen.value, seen.problem) == (pytest.approx(value) if value else value, problem)
    formulas = fake.requests_to("scalar")[0].body["data"]["attributes"]["formulas"]
    assert [f["formula"] for f in formulas] == ["100 * errors / hits", *(["hits"] if min_count else [])]
