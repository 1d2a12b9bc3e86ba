"""Datadog's shapes: the v2 scalar and timeseries requests the bot sends, and how numbers, units,
errors and rate-limit headers are read back out of the responses (`datadog-api-client` models or
the raw JSON of an error). No I/O here; `bot.metrics.datadog` does the calls."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from datadog_api_client.model_utils import ModelSimple
from datadog_api_client.v2.model.metrics_aggregator import MetricsAggregator
from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
from datadog_api_client.v2.model.metrics_scalar_query import MetricsScalarQuery
from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
from datadog_api_client.v2.model.query_formula import QueryFormula
from datadog_api_client.v2.model.scalar_formula_query_request import (
    ScalarFormulaQueryRequest,
)
from datadog_api_client.v2.model.scalar_formula_query_response import (
    ScalarFormulaQueryResponse,
)
from datadog_api_client.v2.model.scalar_formula_request import ScalarFormulaRequest
from datadog_api_client.v2.model.scalar_formula_request_attributes import (
    ScalarFormulaRequestAttributes,
)
from datadog_api_client.v2.model.scalar_formula_request_queries import (
    ScalarFormulaRequestQueries,
)
from datadog_api_client.v2.model.scalar_formula_request_type import (
    ScalarFormulaRequestType,
)
from datadog_api_client.v2.model.timeseries_formula_query_request import (
    TimeseriesFormulaQueryRequest,
)
from datadog_api_client.v2.model.timeseries_formula_query_response import (
    TimeseriesFormulaQueryResponse,
)
from datadog_api_client.v2.model.timeseries_formula_request import (
    TimeseriesFormulaRequest,
)
from datadog_api_client.v2.model.timeseries_formula_request_attributes import (
    TimeseriesFormulaRequestAttributes,
)
from datadog_api_client.v2.model.timeseries_formula_request_queries import (
    TimeseriesFormulaRequestQueries,
)
from datadog_api_client.v2.model.timeseries_formula_request_type import (
    TimeseriesFormulaRequestType,
)

from bot.metrics.base import MetricQuery, describe_window

UNREADABLE = "Datadog sent a response we could not read"


def window_ms(query: MetricQuery, now: datetime) -> tuple[int, int]:
    to_ms = int(now.timestamp() * 1000)
    return to_ms - query.window_seconds * 1000, to_ms


def scalar_request(query: MetricQuery, now: datetime) -> ScalarFormulaQueryRequest:
    # The client does not check enum values, so an unknown aggregator would only
    # come back as a 400; say what is accepted instead of spending a request.
    if query.aggregator not in MetricsAggregator.allowed_values:
        allowed = ", ".join(sorted(str(name) for name in MetricsAggregator.allowed_values))
        raise Unavailable(f"Datadog does not accept the aggregator {query.aggregator!r} (use {allowed})")
    from_ms, to_ms = window_ms(query, now)
    return ScalarFormulaQueryRequest(
        data=ScalarFormulaRequest(
            type=ScalarFormulaRequestType.SCALAR_REQUEST,
            attributes=ScalarFormulaRequestAttributes(
                _from=from_ms,
                to=to_ms,
                queries=ScalarFormulaRequestQueries(
                    [
                        MetricsScalarQuery(
                            name="a",
                            data_source=MetricsDataSource.METRICS,
                            aggregator=MetricsAggregator(query.aggregator),
                            query=query.query,
                        )
                    ]
                ),
                formulas=[QueryFormula(formula="a")],
            ),
        )
    )


def timeseries_request(query: MetricQuery, now: datetime) -> TimeseriesFormulaQueryRequest:
    from_ms, to_ms = window_ms(query, now)
    return TimeseriesFormulaQueryRequest(
        data=TimeseriesFormulaRequest(
            type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST,
            attributes=TimeseriesFormulaRequestAttributes(
                _from=from_ms,
                to=to_ms,
                interval=max(1000, (to_ms - from_ms) // SPARKLINE_POINTS),
                queries=TimeseriesFormulaRequestQueries(
                    [
                        MetricsTimeseriesQuery(
                            name="a",
                            data_source=MetricsDataSource.METRICS,
                            query=query.query,
                        )
                    ]
                ),
                formulas=[QueryFormula(formula="a")],
            ),
        )
    )


def value_and_unit(response: ScalarFormulaQueryResponse, window_seconds: int) -> tuple[float, str | None]:
    column = number_column(response)
    values = column.get("values")
    if values is None:
        raise Unavailable(UNREADABLE, f"number column without values: {column!r}")
    if len(values) == 0:
        raise Unavailable(f"no data points in the last {describe_window(window_seconds)}")
    if len(values) > 1:
        # Grouped queries come back sorted by value; picking one would gate on an arbitrary group.
        raise Unavailable(
            f"the query returned {len(values)} values (one per group); the gate needs a single number,"
            " so remove the 'by {...}' grouping"
        )
    value = values[0]
    if not is_finite_number(value):
        raise Unavailable(
            f"Datadog returned no usable number for the last {describe_window(window_seconds)} ({value!r})"
        )
    return float(value), unit(column)


def number_column(response: ScalarFormulaQueryResponse) -> Any:
    data = response.get("data")
    attributes = data.get("attributes") if data is not None else None
    columns = attributes.get("columns") if attributes is not None else None
    if columns is None:
        errors = response.get("errors")
        raise Unavailable(f"Datadog reported: {errors}" if errors else UNREADABLE, repr(response))
    # Grouped queries add "group" columns; the value lives in the single "number" column.
    numbers = [column for column in columns if str(column.get("type")) == "number"]
    if len(numbers) != 1:
        raise Unavailable(UNREADABLE, f"expected one number column: {columns!r}")
    return numbers[0]


def unit(column: Any) -> str | None:
    meta = column.get("meta")
    units = meta.get("unit") if meta is not None else None
    primary = units[0] if units else None
    short_name = primary.get("short_name") if primary is not None else None
    return str(short_name) if short_name else None


def points(response: TimeseriesFormulaQueryResponse) -> tuple[float, ...]:
    data = response.get("data")
    attributes = data.get("attributes") if data is not None else None
    rows = unwrap(attributes.get("values")) if attributes is not None else None
    if rows is None:
        raise Unavailable(UNREADABLE, repr(response))
    if len(rows) != 1:
        return ()  # no data, or one row per group: nothing meaningful to draw
    return tuple(float(v) for v in unwrap(rows[0]) if is_finite_number(v))


def unwrap(model: Any) -> Any:
    """The list inside the client's list wrappers (e.g. TimeseriesResponseValuesList)."""
    return model.value if isinstance(model, ModelSimple) else model


def is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def reset_seconds(headers: dict[str, str] | None) -> float | None:
    """X-RateLimit-Reset in seconds; header names vary in case, so match them loosely."""
    for key, value in (headers or {}).items():
        if key.lower() == "x-ratelimit-reset":
            try:
                seconds = float(value)
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def error_messages(body: object) -> str:
    """The "errors" of a Datadog error body: ["text"] or [{"title"/"detail": ...}]."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    texts = (error_text(error) for error in errors)
    return "; ".join(text for text in texts if text)


def error_text(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("detail") or error.get("title") or "")
    return str(error) if error else ""


def seconds(value: float) -> str:
    return f"{value:g}"


SPARKLINE_POINTS = 15


class Unavailable(Exception):
    """One query gave no usable number. `problem` is for people, `detail` for the log."""

    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.detail = detail


class RateLimited(Unavailable):
    def __init__(self, reset_seconds: float | None, detail: str = "") -> None:
        when = f"retry in {seconds(reset_seconds)} s" if reset_seconds is not None else "no reset time given"
        super().__init__(f"Datadog rate limit: {when}", detail)
        self.reset_seconds = reset_seconds
