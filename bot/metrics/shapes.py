"""Datadog's shapes: the v2 scalar and timeseries requests the bot sends, and how numbers, units,
errors and rate-limit headers are read back out of the responses (their JSON, checked here, or
the raw JSON of an error). No I/O here; `bot.metrics.datadog` does the calls.

A response body is read by `scalar_json` and `timeseries_json`, not by the client's models: every
part the readers below take is checked for the type the API documents (what the models' type
checks refused is refused here too, as UNREADABLE), without turning the whole body into model
objects first, which cost more CPU than the request itself."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, cast

from datadog_api_client.model_utils import ModelSimple
from datadog_api_client.v2.model.metrics_aggregator import MetricsAggregator
from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
from datadog_api_client.v2.model.scalar_formula_request_type import (
    ScalarFormulaRequestType,
)
from datadog_api_client.v2.model.timeseries_formula_request_type import (
    TimeseriesFormulaRequestType,
)

from bot.metrics.base import MetricQuery, describe_window

UNREADABLE = "Datadog sent a response we could not read"


def window_ms(query: MetricQuery, now: datetime) -> tuple[int, int]:
    to_ms = int(now.timestamp() * 1000)
    return to_ms - query.window_seconds * 1000, to_ms


# The request bodies are the JSON the client's request models would serialize to (the same keys
# in the same order, tests/metrics/test_request_bodies.py), built as plain dicts: building the
# models, each field type-checked, and the client turning them back into dicts cost about
# 0.2 ms of CPU per read, 0.43 ms of a start's 7.9 ms (its two baseline reads, measured in the
# Datadog client's threads by bench/work_costs.py), for values of types these functions fix.
# The client sends a dict body as given (`Configuration(check_input_type=False)` in
# bot/metrics/datadog.py: no conversion into models first).
_METRICS = MetricsDataSource.METRICS.value
_SCALAR = ScalarFormulaRequestType.SCALAR_REQUEST.value
_TIMESERIES = TimeseriesFormulaRequestType.TIMESERIES_REQUEST.value


def scalar_request(query: MetricQuery, now: datetime) -> dict[str, Any]:
    """One v2 scalar request (`ScalarFormulaQueryRequest` as JSON): every named query of the
    metric, the value's formula first and the counted query's total (if any) second, so their
    columns come back in that order."""
    # The client does not check enum values, so an unknown aggregator would only
    # come back as a 400; say what is accepted instead of spending a request.
    if query.aggregator not in MetricsAggregator.allowed_values:
        allowed = ", ".join(sorted(str(name) for name in MetricsAggregator.allowed_values))
        raise Unavailable(f"Datadog does not accept the aggregator {query.aggregator!r} (use {allowed})")
    _check_formulas(query)
    from_ms, to_ms = window_ms(query, now)
    queries = [
        {"name": name, "aggregator": query.aggregator, "data_source": _METRICS, "query": text}
        for name, text in query.parts
    ]
    attributes = {
        "formulas": [{"formula": formula} for formula in query.formulas],
        "from": from_ms,
        "queries": queries,
        "to": to_ms,
    }
    return {"data": {"attributes": attributes, "type": _SCALAR}}


def timeseries_request(query: MetricQuery, now: datetime) -> dict[str, Any]:
    """The value's formula over the window in `series_points` intervals (the count is not
    drawn): a v2 `TimeseriesFormulaQueryRequest` as JSON."""
    _check_formulas(query)
    from_ms, to_ms = window_ms(query, now)
    attributes = {
        "formulas": [{"formula": query.formulas[0]}],
        "interval": max(1000, (to_ms - from_ms) // max(1, query.series_points)),
        "from": from_ms,
        "queries": [{"name": name, "data_source": _METRICS, "query": text} for name, text in query.parts],
        "to": to_ms,
    }
    return {"data": {"attributes": attributes, "type": _TIMESERIES}}


# The last guard before Datadog: plans and forms check formulas fully (bot/domain/formulas.py);
# whatever reaches here anyway with other characters is refused, not sent.
_FORMULA = re.compile(r"^[A-Za-z0-9_.+\-*/() ]+$")
_QUERY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _check_formulas(query: MetricQuery) -> None:
    for name, _ in query.parts:
        if not _QUERY_NAME.fullmatch(name):
            raise Unavailable(f"the query name {name!r} is not one Datadog accepts")
    for formula in query.formulas:
        if not _FORMULA.fullmatch(formula):
            raise Unavailable(f"the formula {formula!r} holds characters a formula may not")


def value_and_unit(
    response: dict[str, Any], window_seconds: int, formulas: int = 1
) -> tuple[float, str | None]:
    """The value's number and unit: the first of `formulas` number columns."""
    column = number_columns(response, formulas)[0]
    return _single_value(column, window_seconds), unit(column)


def count_value(response: dict[str, Any]) -> float | None:
    """The counted query's total: the second number column. No value (no data) counts as 0,
    as a window without requests has none; an unreadable one is None."""
    try:
        values = number_columns(response, 2)[1].get("values")
    except Unavailable:
        return None
    if values is None or len(values) > 1:
        return None
    if len(values) == 0:
        return 0.0
    return float(values[0]) if is_finite_number(values[0]) else 0.0


def _single_value(column: Any, window_seconds: int) -> float:
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
    return float(value)


def number_columns(response: dict[str, Any], expected: int) -> list[Any]:
    """The "number" columns, one per formula in the order the request gave them (their names
    are not relied on: Datadog names a formula's column by its own rules)."""
    data = response.get("data")
    attributes = data.get("attributes") if data is not None else None
    columns = attributes.get("columns") if attributes is not None else None
    if columns is None:
        errors = response.get("errors")
        raise Unavailable(f"Datadog reported: {errors}" if errors else UNREADABLE, repr(response))
    # Grouped queries add "group" columns; the values live in the "number" columns.
    numbers = [column for column in columns if str(column.get("type")) == "number"]
    if len(numbers) != expected:
        raise Unavailable(UNREADABLE, f"expected {expected} number column(s): {columns!r}")
    return numbers


def unit(column: Any) -> str | None:
    meta = column.get("meta")
    units = meta.get("unit") if isinstance(meta, dict) else None
    primary = units[0] if isinstance(units, list) and units else None
    short_name = primary.get("short_name") if isinstance(primary, dict) else None
    return short_name if isinstance(short_name, str) and short_name else None


def points(response: dict[str, Any]) -> tuple[float, ...]:
    data = response.get("data")
    attributes = data.get("attributes") if data is not None else None
    rows = unwrap(attributes.get("values")) if attributes is not None else None
    if rows is None:
        raise Unavailable(UNREADABLE, repr(response))
    if len(rows) != 1:
        return ()  # no data, or one row per group: nothing meaningful to draw
    return tuple(float(v) for v in unwrap(rows[0]) if is_finite_number(v))


def _body(raw: bytes, content_type: str | None) -> Any:
    """The JSON of a response body, in the charset its Content-Type names (UTF-8 by default)."""
    match = re.search(r"charset=([a-zA-Z\-\d]+)", content_type or "")
    try:
        return json.loads(raw.decode(match.group(1) if match else "utf-8"))
    except (ValueError, LookupError) as exc:  # not JSON, not that charset, an unknown charset
        raise Unavailable(UNREADABLE, f"{exc}: {raw[:200]!r}") from exc


def _is(value: Any, kind: type | tuple[type, ...], optional: bool = True) -> bool:
    return (optional and value is None) or isinstance(value, kind)


def _numbers(values: Any) -> bool:
    """A list of numbers (None for a gap), as `values` of a column or a row is documented."""
    return isinstance(values, list) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
    )


def _attributes(body: Any) -> Any:
    """`data.attributes` of a body shaped {"data": {"attributes": {...}}, "errors": "..."}; None
    where the body has none (an answer with only `errors`); UNREADABLE where a part has the wrong
    type."""
    if not isinstance(body, dict) or not _is(body.get("errors"), str):
        raise Unavailable(UNREADABLE, repr(body)[:500])
    data = body.get("data")
    if not _is(data, dict) or not _is((data or {}).get("attributes"), dict):
        raise Unavailable(UNREADABLE, repr(body)[:500])
    return (data or {}).get("attributes")


def scalar_json(raw: bytes, content_type: str | None = None) -> dict[str, Any]:
    """A scalar response's body, its columns checked: each an object with a string `type`, a
    number column's `values` a list of numbers or gaps. (Its unit only labels the number:
    `unit` takes what is there, and anything of another shape as no unit.)"""
    body = _body(raw, content_type)
    attributes = _attributes(body)
    columns = attributes.get("columns") if attributes is not None else None
    if columns is None:
        return cast("dict[str, Any]", body)
    if not isinstance(columns, list):
        raise Unavailable(UNREADABLE, f"columns: {columns!r}"[:500])
    for column in columns:
        if not isinstance(column, dict) or not isinstance(column.get("type"), str):
            raise Unavailable(UNREADABLE, f"column: {column!r}"[:500])
        if column["type"] == "number" and not _numbers(column.get("values", [])):
            raise Unavailable(UNREADABLE, f"number column: {column!r}"[:500])
    return cast("dict[str, Any]", body)


def timeseries_json(raw: bytes, content_type: str | None = None) -> dict[str, Any]:
    """A timeseries response's body, its `values` checked: a list of rows, each numbers or gaps."""
    body = _body(raw, content_type)
    attributes = _attributes(body)
    rows = attributes.get("values") if attributes is not None else None
    if rows is not None and not (isinstance(rows, list) and all(_numbers(row) for row in rows)):
        raise Unavailable(UNREADABLE, f"values: {rows!r}"[:500])
    return cast("dict[str, Any]", body)


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
