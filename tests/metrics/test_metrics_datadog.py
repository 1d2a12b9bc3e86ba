"""DatadogMetricsSource through the real datadog-api-client against FakeDatadog,
plus StaticMetricsSource. Timing bounds are loose on purpose: they only fail when
work that should overlap runs serially, or a wait that should be skipped happens."""

from __future__ import annotations

import json
import logging
import math
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from bot.metrics import (
    DatadogMetricsSource,
    MetricQuery,
    MetricReading,
    StaticMetricsSource,
    shapes,
)
from tests.fakes.datadog_api import FakeDatadog

NOW = datetime(2024, 3, 25, 19, 28, tzinfo=UTC)
NOW_MS = 1_711_394_880_000

SourceFactory = Callable[..., DatadogMetricsSource]


@pytest.fixture(autouse=True)
def _no_datadog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client reads DD_SITE / DD_API_KEY / DD_APP_KEY itself; keep tests hermetic.
    for name in ("DD_SITE", "DD_API_KEY", "DD_APP_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeDatadog]:
    with FakeDatadog() as server:
        yield server


@pytest.fixture
def make_source(fake: FakeDatadog) -> Iterator[SourceFactory]:
    sources: list[DatadogMetricsSource] = []

    def make(**overrides: object) -> DatadogMetricsSource:
        settings: dict[str, object] = {
            "api_key": "test-api-key",
            "app_key": "test-app-key",
            "api_url": fake.url,
        }
        settings.update(overrides)
        source = DatadogMetricsSource(**settings)  # type: ignore[arg-type]
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def query(name: str, **kwargs: object) -> MetricQuery:
    return MetricQuery(name, f"avg:rollout.{name}{{service:checkout}}", **kwargs)  # type: ignore[arg-type]


def read_one(source: DatadogMetricsSource, name: str) -> MetricReading:
    return source.snapshot([query(name)], now=NOW)[name]


# --- values and no-data -----------------------------------------------------


def test_value_passes_through_with_unit_and_series(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("error_rate", 0.42, unit="%", series=[0.1, 0.25, 0.42])

    reading = read_one(make_source(), "error_rate")

    assert reading == MetricReading("error_rate", 0.42, problem=None, series=(0.1, 0.25, 0.42), unit="%")


def test_metric_without_unit_has_no_unit(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("checkouts", 983.0)

    reading = read_one(make_source(), "checkouts")

    assert (reading.value, reading.unit) == (983.0, None)


@pytest.mark.parametrize("configure", ["empty values", "unmatched query"])
def test_empty_values_is_no_data(fake: FakeDatadog, make_source: SourceFactory, configure: str) -> None:
    if configure == "empty values":
        fake.set_value("error_rate", None)

    reading = read_one(make_source(), "error_rate")

    assert reading.value is None
    assert reading.problem == "no data points in the last 1 h"
    assert reading.series == ()


def test_no_data_names_the_window(fake: FakeDatadog, make_source: SourceFactory) -> None:
    reading = make_source().snapshot([query("p95", window_seconds=900)], now=NOW)["p95"]

    assert reading.problem == "no data points in the last 15 min"


def test_nan_value_is_no_data(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("error_rate", math.nan)

    reading = read_one(make_source(), "error_rate")

    assert reading.value is None
    assert reading.problem is not None and "no usable number" in reading.problem


def test_grouped_answer_is_no_data_rather_than_an_arbitrary_group(
    fake: FakeDatadog, make_source: SourceFactory
) -> None:
    body = {
        "data": {
            "type": "scalar_response",
            "attributes": {
                "columns": [
                    {"name": "host", "type": "group", "values": [["a"], ["b"]]},
                    {"name": "a", "type": "number", "values": [9.0, 0.1], "meta": {"unit": None}},
                ]
            },
        }
    }
    fake.fail("error_rate", 200, body=body, endpoint="scalar")

    reading = read_one(make_source(), "error_rate")

    assert reading.value is None
    assert reading.problem is not None and "2 values" in reading.problem


def number_column(**column: object) -> dict[str, object]:
    return {"data": {"attributes": {"columns": [{"name": "a", "type": "number", **column}]}}}


@pytest.mark.parametrize(
    "body",
    [
        b"<html>upstream hiccup</html>",
        {"data": {"attributes": {"columns": "x"}}},
        {},
        {"data": []},
        {"errors": 5},
        {"data": {"attributes": {"columns": ["x"]}}},
        number_column(values=0.4),
        number_column(values=["0.4"]),
        number_column(values=[True]),
    ],
)
def test_malformed_body_is_no_data(fake: FakeDatadog, make_source: SourceFactory, body: object) -> None:
    fake.fail("error_rate", 200, body=body, endpoint="scalar")  # type: ignore[arg-type]

    reading = read_one(make_source(), "error_rate")

    assert (reading.value, reading.problem) == (
        None,
        "Datadog sent a response we could not read",
    )


@pytest.mark.parametrize("meta", [{"unit": "%"}, {"unit": [{"short_name": 3}]}, "%", {"unit": ["%"]}])
def test_an_odd_unit_keeps_the_value_without_a_unit(
    fake: FakeDatadog, make_source: SourceFactory, meta: object
) -> None:
    """The unit only labels the number: a unit not of Datadog's documented shape is no unit."""
    fake.fail("error_rate", 200, body=number_column(values=[0.4], meta=meta), endpoint="scalar")

    reading = read_one(make_source(), "error_rate")

    assert (reading.value, reading.unit, reading.problem) == (0.4, None, None)


def test_a_body_is_read_in_the_charset_its_content_type_names() -> None:
    body = number_column(values=[0.5], meta={"unit": [{"short_name": "µs"}]})
    raw = json.dumps(body, ensure_ascii=False).encode("utf-16")

    read = shapes.scalar_json(raw, "application/json; charset=utf-16")

    assert read == body
    assert shapes.value_and_unit(read, 3600) == (0.5, "µs")
    with pytest.raises(shapes.Unavailable):
        shapes.scalar_json(raw, "application/json")


# --- HTTP errors ------------------------------------------------------------


def test_403_says_to_check_the_keys_and_is_logged_with_the_name(
    fake: FakeDatadog, make_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail("error_rate", 403)
    caplog.set_level(logging.WARNING, logger="bot.metrics")

    reading = read_one(make_source(), "error_rate")

    assert reading.value is None
    assert reading.problem == "Datadog answered 403 Forbidden: check DD_API_KEY/DD_APP_KEY"
    assert any("error_rate" in r.getMessage() and "403" in r.getMessage() for r in caplog.records)


def test_missing_key_is_no_data_naming_the_variable(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("error_rate", 0.1)

    reading = read_one(make_source(app_key=""), "error_rate")

    assert (reading.value, reading.problem) == (
        None,
        "DD_APP_KEY not set, so Datadog cannot be asked",
    )
    assert fake.requests == []


def test_fake_answers_403_without_keys_like_datadog(fake: FakeDatadog) -> None:
    request = urllib.request.Request(fake.url + "/api/v2/query/scalar", data=b"{}", method="POST")

    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=2)

    assert answer.value.code == 403
    assert json.loads(answer.value.read()) == {"errors": ["API key required"]}


def test_500_is_no_data_without_client_retries(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.fail("error_rate", 500)

    reading = read_one(make_source(), "error_rate")

    assert (reading.value, reading.problem) == (None, "Datadog error 500")
    assert len(fake.requests_to("scalar")) == 1


def test_400_shows_datadogs_reason(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.fail("error_rate", 400)

    reading = read_one(make_source(), "error_rate")

    assert reading.value is None
    assert reading.problem == (
        "Datadog rejected the query (400 Bad Request): Queries ending outside the retention date are invalid"
    )


def test_unknown_aggregator_is_no_data_and_sends_nothing(
    fake: FakeDatadog, make_source: SourceFactory
) -> None:
    bad = query("error_rate", aggregator="p95")

    reading = make_source(with_series=False).snapshot([bad], now=NOW)["error_rate"]

    assert reading.value is None
    assert reading.problem is not None and "'p95'" in reading.problem
    assert fake.requests == []


# --- rate limit -------------------------------------------------------------


def test_429_waits_the_reset_once_then_retries(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.fail("error_rate", 429, times=1, headers={"x-ratelimit-reset": "1"}, endpoint="scalar")
    fake.set_value("error_rate", 0.42)
    source = make_source()

    start = time.monotonic()
    reading = read_one(source, "error_rate")
    elapsed = time.monotonic() - start
    first, retry = fake.requests_to("scalar")

    assert reading.value == 0.42
    assert 0.9 <= retry.time - first.time < 1.5
    assert 0.9 <= elapsed < 2.0


def test_429_with_reset_beyond_the_snapshot_bound_does_not_wait(
    fake: FakeDatadog, make_source: SourceFactory
) -> None:
    fake.fail("error_rate", 429, headers={"x-ratelimit-reset": "37"})
    source = make_source(snapshot_timeout=2.0)

    start = time.monotonic()
    reading = read_one(source, "error_rate")

    assert time.monotonic() - start < 0.5
    assert (reading.value, reading.problem) == (None, "Datadog rate limit: retry in 37 s")
    assert len(fake.requests_to("scalar")) == 1


def test_second_429_after_the_retry_is_no_data(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.fail("error_rate", 429, headers={"x-ratelimit-reset": "0.2"}, endpoint="scalar")

    reading = read_one(make_source(), "error_rate")

    assert reading.problem == "Datadog rate limit: retry in 0.2 s"
    assert len(fake.requests_to("scalar")) == 2


# --- time bounds and parallelism ---------------------------------------------


def test_query_slower_than_query_timeout_is_no_data(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("error_rate", 0.42, delay=1.0)
    source = make_source(query_timeout=0.3)

    start = time.monotonic()
    reading = read_one(source, "error_rate")

    assert time.monotonic() - start < 0.9
    assert (reading.value, reading.problem) == (None, "timed out after 0.3 s")


def test_snapshot_bound_cuts_off_slow_queries_and_keeps_fast_ones(
    fake: FakeDatadog, make_source: SourceFactory
) -> None:
    fake.set_value("slow", 1.0, delay=2.0)
    fake.set_value("fast", 2.0)
    source = make_source(query_timeout=5.0, snapshot_timeout=0.5)

    start = time.monotonic()
    readings = source.snapshot([query("slow"), query("fast")], now=NOW)

    assert time.monotonic() - start < 1.0
    assert (readings["slow"].value, readings["slow"].problem) == (None, "timed out after 0.5 s")
    assert readings["fast"].value == 2.0


def test_six_queries_of_200ms_run_in_parallel(fake: FakeDatadog, make_source: SourceFactory) -> None:
    names = [f"m{i}" for i in range(6)]
    for i, name in enumerate(names):
        fake.set_value(name, float(i), delay=0.2, series=[0.0, float(i)])
    source = make_source()

    start = time.monotonic()
    readings = source.snapshot([query(name) for name in names], now=NOW)
    elapsed = time.monotonic() - start

    assert elapsed < 0.6, f"6 x 200 ms took {elapsed:.3f} s: queries ran serially"
    assert {name: r.value for name, r in readings.items()} == {n: float(i) for i, n in enumerate(names)}
    assert all(r.series == (0.0, r.value) for r in readings.values())


def test_unreachable_datadog_is_no_data_without_retries(make_source: SourceFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    source = make_source(api_url=f"http://127.0.0.1:{closed_port}")

    start = time.monotonic()
    reading = read_one(source, "error_rate")

    assert time.monotonic() - start < 1.0
    assert reading.value is None
    assert reading.problem == f"could not reach Datadog at http://127.0.0.1:{closed_port}"


def test_connections_are_reused_between_snapshots(
    fake: FakeDatadog, make_source: SourceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"m{i}" for i in range(6)]
    for name in names:
        fake.set_value(name, 1.0, delay=0.05, series=[1.0])  # keeps all 12 calls in flight at once
    source = make_source()
    caplog.set_level(logging.WARNING, logger="urllib3")

    for _ in range(3):
        source.snapshot([query(n) for n in names], now=NOW)
    connections = {r.client_port for r in fake.requests}

    # 36 calls, at most 12 at a time: a kept pool needs at most 12 connections,
    # a pool that drops them (the stock size of 4) needs 28 or more.
    assert len(fake.requests) == 36
    assert len(connections) <= 12
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


# --- what is sent -----------------------------------------------------------


def test_requests_carry_window_in_ms_query_and_keys(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("error_rate", 0.42, series=[0.42])

    make_source().snapshot([query("error_rate", aggregator="max")], now=NOW)
    (scalar,) = fake.requests_to("scalar")
    (series,) = fake.requests_to("timeseries")

    assert scalar.body == {
        "data": {
            "type": "scalar_request",
            "attributes": {
                "from": NOW_MS - 3_600_000,
                "to": NOW_MS,
                "queries": [
                    {
                        "name": "a",
                        "data_source": "metrics",
                        "aggregator": "max",
                        "query": "avg:rollout.error_rate{service:checkout}",
                    }
                ],
                "formulas": [{"formula": "a"}],
            },
        }
    }
    attributes = series.body["data"]["attributes"]
    assert series.body["data"]["type"] == "timeseries_request"
    assert (attributes["from"], attributes["to"]) == (NOW_MS - 3_600_000, NOW_MS)
    assert attributes["queries"][0]["query"] == "avg:rollout.error_rate{service:checkout}"
    assert 12 <= 3_600_000 // attributes["interval"] <= 20
    for request in (scalar, series):
        assert request.headers["dd-api-key"] == "test-api-key"
        assert request.headers["dd-application-key"] == "test-app-key"


def test_api_url_overrides_site(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("error_rate", 0.42)
    source = make_source(api_url=fake.url + "/", site="datadoghq.eu")

    reading = read_one(source, "error_rate")

    assert source.base_url == fake.url
    assert reading.value == 0.42
    assert fake.requests_to("scalar")


def test_site_picks_the_datadog_host() -> None:
    with DatadogMetricsSource("k", "a", site="datadoghq.eu") as eu:
        assert eu.base_url == "https://api.datadoghq.eu"
    with DatadogMetricsSource("k", "a") as default:
        assert default.base_url == "https://api.datadoghq.com"
    with pytest.raises(ValueError):
        DatadogMetricsSource("k", "a", site="datadoghq.example")


def test_sparkline_failure_keeps_the_value(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("error_rate", 0.42, series=[0.1, 0.42])
    fake.fail("error_rate", 500, endpoint="timeseries")

    reading = read_one(make_source(), "error_rate")

    assert reading == MetricReading("error_rate", 0.42, series=())


def test_without_series_only_the_value_is_asked(fake: FakeDatadog, make_source: SourceFactory) -> None:
    fake.set_value("error_rate", 0.42, series=[0.1, 0.42])

    reading = read_one(make_source(with_series=False), "error_rate")

    assert (reading.value, reading.series) == (0.42, ())
    assert fake.requests_to("timeseries") == []


def test_caller_mistakes_raise(make_source: SourceFactory) -> None:
    source = make_source()
    with pytest.raises(ValueError, match="timezone-aware"):
        source.snapshot([query("a")], now=datetime(2024, 3, 25, 19, 28))
    with pytest.raises(ValueError, match="unique"):
        source.snapshot([query("a"), query("a")], now=NOW)


# --- StaticMetricsSource and MetricReading ---------------------------------


def test_static_source_returns_typed_values() -> None:
    source = StaticMetricsSource({"error_rate": 0.5, "p95_ms": 180}, units={"p95_ms": "ms"})

    readings = source.snapshot([query("error_rate"), query("p95_ms")], now=NOW)

    assert readings == {
        "error_rate": MetricReading("error_rate", 0.5),
        "p95_ms": MetricReading("p95_ms", 180.0, unit="ms"),
    }


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({}, "no value was entered for error_rate"),
        ({"error_rate": None}, "no value was entered for error_rate"),
        ({"error_rate": math.nan}, "the value entered for error_rate is not a number (nan)"),
    ],
)
def test_static_source_missing_value_is_no_data(values: dict[str, float | None], problem: str) -> None:
    reading = StaticMetricsSource(values).snapshot([query("error_rate")], now=NOW)["error_rate"]

    assert (reading.value, reading.problem) == (None, problem)


def test_reading_refuses_nan_and_unexplained_missing_values() -> None:
    with pytest.raises(ValueError):
        MetricReading("error_rate", math.nan)
    with pytest.raises(ValueError):
        MetricReading("error_rate", None)
