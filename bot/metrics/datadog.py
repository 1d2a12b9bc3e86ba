"""Metric snapshots from Datadog's v2 query API, for the rollout gate.

Whatever goes wrong with one query (HTTP error, timeout, rate limit, no data,
an odd body) becomes a reading with value=None and a problem in plain words:
snapshot() never raises for a per-query failure and never guesses a number.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import urllib3
from datadog_api_client import ApiClient, Configuration, rest
from datadog_api_client.exceptions import ApiException, OpenApiException
from datadog_api_client.model_utils import ModelSimple
from datadog_api_client.v2.api.metrics_api import MetricsApi
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
from urllib3.util import Retry

from bot.metrics.base import MetricQuery, MetricReading, MetricsSource, describe_window

log = logging.getLogger(__name__)

T = TypeVar("T")

_SPARKLINE_POINTS = 15
# Each query makes two calls at once (value + sparkline), so 16 workers keep a
# gate of up to 8 metrics fully parallel. The connection pool is sized to match.
_WORKERS = 16
_UNREADABLE = "Datadog sent a response we could not read"


class _Unavailable(Exception):
    """One query gave no usable number. `problem` is for people, `detail` for the log."""

    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.detail = detail


class _RateLimited(_Unavailable):
    def __init__(self, reset_seconds: float | None, detail: str = "") -> None:
        when = f"retry in {_seconds(reset_seconds)} s" if reset_seconds is not None else "no reset time given"
        super().__init__(f"Datadog rate limit: {when}", detail)
        self.reset_seconds = reset_seconds


class _PooledApiClient(ApiClient):
    """An ApiClient whose connection pool keeps one connection per worker thread.

    The stock client keeps 4 connections; with more parallel calls urllib3 opens
    extra ones and discards them ("Connection pool is full"), so every snapshot
    would pay fresh TLS handshakes. The library's ThreadedApiClient overrides
    the same hook for the same reason.
    """

    def __init__(self, configuration: Configuration, maxsize: int) -> None:
        self._maxsize = maxsize
        super().__init__(configuration)

    def _build_rest_client(self) -> rest.RESTClientObject:
        return rest.RESTClientObject(self.configuration, maxsize=self._maxsize)


class DatadogMetricsSource(MetricsSource):
    """Reads each metric as one number (v2 scalar query) plus a sparkline (v2 timeseries).

    One ApiClient and one worker pool live as long as the source, so connections
    are reused across snapshots; the client is safe to share between threads.
    Call close() (or use it as a context manager) when done.
    """

    def __init__(
        self,
        api_key: str,
        app_key: str,
        site: str | None = None,
        api_url: str | None = None,
        query_timeout: float = 5.0,
        snapshot_timeout: float = 8.0,
        with_series: bool = True,
    ) -> None:
        # The client refuses to send a request with an empty key; say which one up front.
        self._missing_keys = _missing_keys(api_key, app_key)
        configuration = _configuration(api_key, app_key, site, api_url, query_timeout)
        # Resolving the host now turns an unknown site into an error at start-up
        # instead of a ValueError inside every query.
        self._base_url: str = configuration.host
        self._query_timeout = query_timeout
        self._snapshot_timeout = snapshot_timeout
        self._with_series = with_series
        self._client = _PooledApiClient(configuration, maxsize=_WORKERS)
        self._api = MetricsApi(self._client)
        self._executor = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="datadog-metrics")

    @property
    def base_url(self) -> str:
        return self._base_url

    def close(self) -> None:
        # Calls still running after a timed-out snapshot end on their own within
        # query_timeout; don't make the caller wait for them.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def snapshot(self, queries: Sequence[MetricQuery], *, now: datetime) -> dict[str, MetricReading]:
        _check_snapshot_arguments(queries, now)
        if self._missing_keys:
            log.warning("metrics %s: %s", [q.name for q in queries], self._missing_keys)
            return {q.name: MetricReading(q.name, None, problem=self._missing_keys) for q in queries}
        deadline = time.monotonic() + self._snapshot_timeout
        # Values are submitted before sparklines so they get workers first.
        values = {q.name: self._executor.submit(self._read_value, q, now, deadline) for q in queries}
        sparklines = (
            {q.name: self._executor.submit(self._read_sparkline, q, now) for q in queries}
            if self._with_series
            else {}
        )
        pending: list[Future[Any]] = [*values.values(), *sparklines.values()]
        wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        return {q.name: self._assemble(q.name, values[q.name], sparklines.get(q.name)) for q in queries}

    def _assemble(
        self,
        name: str,
        value: Future[MetricReading],
        sparkline: Future[tuple[float, ...]] | None,
    ) -> MetricReading:
        if not value.done():
            value.cancel()  # if it never started, don't spend a request nobody will read
            problem = f"timed out after {_seconds(self._snapshot_timeout)} s"
            log.warning("metric %s: %s (whole snapshot bound)", name, problem)
            return MetricReading(name, None, problem=problem)
        error = value.exception()
        if error is not None:
            # A bug, not a Datadog answer: keep the traceback, still give the gate "no data".
            log.error(
                "metric %s: unexpected error while reading Datadog",
                name,
                exc_info=error,
            )
            return MetricReading(
                name,
                None,
                problem=f"internal error while reading Datadog ({type(error).__name__})",
            )
        reading = value.result()
        points = self._sparkline_points(name, sparkline)
        # The sparkline only decorates a number; without a number there is nothing to decorate.
        return replace(reading, series=points) if reading.value is not None and points else reading

    def _sparkline_points(self, name: str, sparkline: Future[tuple[float, ...]] | None) -> tuple[float, ...]:
        if sparkline is None:
            return ()
        if not sparkline.done():
            sparkline.cancel()
            log.info(
                "metric %s: sparkline not ready within the snapshot bound; showing none",
                name,
            )
            return ()
        error = sparkline.exception()
        if error is not None:
            log.error(
                "metric %s: unexpected error while reading the sparkline",
                name,
                exc_info=error,
            )
            return ()
        return sparkline.result()

    def _read_value(self, query: MetricQuery, now: datetime, deadline: float) -> MetricReading:
        try:
            body = _scalar_request(query, now)
            response = self._call(
                query.name,
                lambda: self._api.query_scalar_data(body=body),
                deadline=deadline,
            )
            value, unit = _value_and_unit(response, query.window_seconds)
        except _Unavailable as exc:
            log.warning("metric %s: %s [%s]", query.name, exc.problem, exc.detail)
            return MetricReading(query.name, None, problem=exc.problem)
        return MetricReading(query.name, value, unit=unit)

    def _read_sparkline(self, query: MetricQuery, now: datetime) -> tuple[float, ...]:
        # No 429 retry here: the sparkline is decoration and should not spend rate limit.
        try:
            body = _timeseries_request(query, now)
            return _points(self._send(lambda: self._api.query_timeseries_data(body=body)))
        except _Unavailable as exc:
            log.info("metric %s: no sparkline: %s [%s]", query.name, exc.problem, exc.detail)
            return ()

    def _call(self, name: str, call: Callable[[], T], *, deadline: float) -> T:
        """One request, plus one retry after a 429 if its reset still fits in the snapshot."""
        try:
            return self._send(call)
        except _RateLimited as limited:
            reset = limited.reset_seconds
            if reset is None or time.monotonic() + reset >= deadline:
                raise
        log.info(
            "metric %s: Datadog rate limit, waiting %s s before the one retry",
            name,
            _seconds(reset),
        )
        time.sleep(reset)
        return self._send(call)

    def _send(self, call: Callable[[], T]) -> T:
        """Runs one client call, turning every failure into _Unavailable."""
        try:
            return call()
        except ApiException as exc:
            raise self._from_api_exception(exc) from exc
        # NewConnectionError subclasses ConnectTimeoutError: it must come first, or a
        # refused connection / unknown host would be reported as a timeout.
        except urllib3.exceptions.NewConnectionError as exc:
            raise _Unavailable(f"could not reach Datadog at {self._base_url}", str(exc)) from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise _Unavailable(f"timed out after {_seconds(self._query_timeout)} s", str(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise _Unavailable(f"the connection to Datadog failed ({type(exc).__name__})", str(exc)) from exc
        except (OpenApiException, UnicodeDecodeError) as exc:
            # The body was not JSON or did not match the documented response schema.
            raise _Unavailable(_UNREADABLE, str(exc)) from exc

    def _from_api_exception(self, exc: ApiException) -> _Unavailable:
        status = int(exc.status or 0)
        answered = " ".join(part for part in (str(status), exc.reason or "") if part)
        detail = f"HTTP {answered}: {exc.body!r}"
        if status == 429:
            return _RateLimited(_reset_seconds(exc.headers), detail)
        if status in (401, 403):
            return _Unavailable(f"Datadog answered {answered}: check DD_API_KEY/DD_APP_KEY", detail)
        if 400 <= status < 500:
            errors = _error_messages(exc.body)
            return _Unavailable(
                f"Datadog rejected the query ({answered})" + (f": {errors}" if errors else ""),
                detail,
            )
        if status >= 500:
            return _Unavailable(f"Datadog error {status}", detail)
        # status 0: the client wraps TLS failures this way.
        return _Unavailable(f"could not reach Datadog at {self._base_url}", str(exc.reason))


def _configuration(
    api_key: str,
    app_key: str,
    site: str | None,
    api_url: str | None,
    query_timeout: float,
) -> Configuration:
    configuration = Configuration(
        host=api_url.rstrip("/") if api_url else None,
        api_key={"apiKeyAuth": api_key, "appKeyAuth": app_key},
        # The generated MetricsApi methods take no _request_timeout argument
        # (datadog-api-client 2.62), so the per-query timeout is set here.
        request_timeout=query_timeout,
        # We do our own single 429 retry inside the snapshot bound. enable_retry=False
        # alone still leaves urllib3's default of 3 retries on connection errors (a
        # connect timeout would then cost 4x query_timeout); Retry(total=False) turns
        # those off and makes urllib3 raise the original error.
        enable_retry=False,
        retry_policy=Retry(total=False),
    )
    if api_url is None and site:
        configuration.server_variables["site"] = site
    return configuration


def _missing_keys(api_key: str, app_key: str) -> str | None:
    missing = [name for name, key in (("DD_API_KEY", api_key), ("DD_APP_KEY", app_key)) if not key]
    if not missing:
        return None
    return f"{' and '.join(missing)} not set, so Datadog cannot be asked"


def _check_snapshot_arguments(queries: Sequence[MetricQuery], now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(
            "now must be timezone-aware: a naive datetime shifts the window by the host's UTC offset"
        )
    names = [q.name for q in queries]
    if len(set(names)) != len(names):
        raise ValueError(f"metric names must be unique within one snapshot: {names}")


def _window_ms(query: MetricQuery, now: datetime) -> tuple[int, int]:
    to_ms = int(now.timestamp() * 1000)
    return to_ms - query.window_seconds * 1000, to_ms


def _scalar_request(query: MetricQuery, now: datetime) -> ScalarFormulaQueryRequest:
    # The client does not check enum values, so an unknown aggregator would only
    # come back as a 400; say what is accepted instead of spending a request.
    if query.aggregator not in MetricsAggregator.allowed_values:
        allowed = ", ".join(sorted(str(name) for name in MetricsAggregator.allowed_values))
        raise _Unavailable(f"Datadog does not accept the aggregator {query.aggregator!r} (use {allowed})")
    from_ms, to_ms = _window_ms(query, now)
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


def _timeseries_request(query: MetricQuery, now: datetime) -> TimeseriesFormulaQueryRequest:
    from_ms, to_ms = _window_ms(query, now)
    return TimeseriesFormulaQueryRequest(
        data=TimeseriesFormulaRequest(
            type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST,
            attributes=TimeseriesFormulaRequestAttributes(
                _from=from_ms,
                to=to_ms,
                interval=max(1000, (to_ms - from_ms) // _SPARKLINE_POINTS),
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


def _value_and_unit(response: ScalarFormulaQueryResponse, window_seconds: int) -> tuple[float, str | None]:
    column = _number_column(response)
    values = column.get("values")
    if values is None:
        raise _Unavailable(_UNREADABLE, f"number column without values: {column!r}")
    if len(values) == 0:
        raise _Unavailable(f"no data points in the last {describe_window(window_seconds)}")
    if len(values) > 1:
        # Grouped queries come back sorted by value; picking one would gate on an arbitrary group.
        raise _Unavailable(
            f"the query returned {len(values)} values (one per group); the gate needs a single number,"
            " so remove the 'by {...}' grouping"
        )
    value = values[0]
    if not _is_finite_number(value):
        raise _Unavailable(
            f"Datadog returned no usable number for the last {describe_window(window_seconds)} ({value!r})"
        )
    return float(value), _unit(column)


def _number_column(response: ScalarFormulaQueryResponse) -> Any:
    data = response.get("data")
    attributes = data.get("attributes") if data is not None else None
    columns = attributes.get("columns") if attributes is not None else None
    if columns is None:
        errors = response.get("errors")
        raise _Unavailable(f"Datadog reported: {errors}" if errors else _UNREADABLE, repr(response))
    # Grouped queries add "group" columns; the value lives in the single "number" column.
    numbers = [column for column in columns if str(column.get("type")) == "number"]
    if len(numbers) != 1:
        raise _Unavailable(_UNREADABLE, f"expected one number column: {columns!r}")
    return numbers[0]


def _unit(column: Any) -> str | None:
    meta = column.get("meta")
    units = meta.get("unit") if meta is not None else None
    primary = units[0] if units else None
    short_name = primary.get("short_name") if primary is not None else None
    return str(short_name) if short_name else None


def _points(response: TimeseriesFormulaQueryResponse) -> tuple[float, ...]:
    data = response.get("data")
    attributes = data.get("attributes") if data is not None else None
    rows = _unwrap(attributes.get("values")) if attributes is not None else None
    if rows is None:
        raise _Unavailable(_UNREADABLE, repr(response))
    if len(rows) != 1:
        return ()  # no data, or one row per group: nothing meaningful to draw
    return tuple(float(v) for v in _unwrap(rows[0]) if _is_finite_number(v))


def _unwrap(model: Any) -> Any:
    """The list inside the client's list wrappers (e.g. TimeseriesResponseValuesList)."""
    return model.value if isinstance(model, ModelSimple) else model


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _reset_seconds(headers: dict[str, str] | None) -> float | None:
    """X-RateLimit-Reset in seconds; header names vary in case, so match them loosely."""
    for key, value in (headers or {}).items():
        if key.lower() == "x-ratelimit-reset":
            try:
                seconds = float(value)
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def _error_messages(body: object) -> str:
    """The "errors" of a Datadog error body: ["text"] or [{"title"/"detail": ...}]."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    texts = (_error_text(error) for error in errors)
    return "; ".join(text for text in texts if text)


def _error_text(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("detail") or error.get("title") or "")
    return str(error) if error else ""


def _seconds(value: float) -> str:
    return f"{value:g}"
