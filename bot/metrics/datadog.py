"""Metric snapshots from Datadog's v2 query API, for the rollout gate.

Whatever goes wrong with one query (HTTP error, timeout, rate limit, no data,
an odd body) becomes a reading with value=None and a problem in plain words:
snapshot() never raises for a per-query failure and never guesses a number.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextvars import copy_context
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import urllib3
from datadog_api_client import ApiClient, Configuration, rest
from datadog_api_client.exceptions import ApiException, OpenApiException
from datadog_api_client.v2.api.metrics_api import MetricsApi
from urllib3.util import Retry

from bot.metrics.base import MetricQuery, MetricReading, MetricsSource
from bot.metrics.shapes import (
    UNREADABLE,
    RateLimited,
    Unavailable,
    count_value,
    error_messages,
    points,
    reset_seconds,
    scalar_json,
    scalar_request,
    seconds,
    timeseries_json,
    timeseries_request,
    value_and_unit,
)
from bot.observe import telemetry

log = logging.getLogger(__name__)

T = TypeVar("T")

# Each query makes two calls at once (value + sparkline), so 16 workers keep a
# gate of up to 8 metrics fully parallel. The connection pool is sized to match.
_WORKERS = 16


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
    """Reads each metric as one number (v2 scalar query) plus a sparkline (v2 timeseries),
    unless the query asks for no series (`series_points` 0).

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
        # Each read runs in a copy of the caller's context, so its log lines keep the rollout.
        values = {
            q.name: self._executor.submit(copy_context().run, self._read_value, q, now, deadline)
            for q in queries
        }
        sparklines = (
            {
                q.name: self._executor.submit(copy_context().run, self._read_sparkline, q, now)
                for q in queries
                if q.series_points > 0  # 0: the caller wants the value alone
            }
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
            problem = f"timed out after {seconds(self._snapshot_timeout)} s"
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
        count: float | None = None
        with telemetry.timed(telemetry.DATADOG_SECONDS, outcome="ok") as labels:
            try:
                body: Any = scalar_request(query, now)  # the model's JSON (see _configuration)
                try:
                    response = self._call(
                        query.name,
                        lambda: _read(self._api.query_scalar_data(body=body), scalar_json),
                        deadline=deadline,
                    )
                except Unavailable as exc:
                    labels["outcome"] = _failure_outcome(exc)
                    raise
                # The count is read first: a window without traffic has no value either, and
                # "not enough traffic" is the better answer then.
                count = count_value(response) if query.count_of else None
                value, unit = value_and_unit(response, query.window_seconds, len(query.formulas))
            except Unavailable as exc:
                if labels["outcome"] == "ok":
                    labels["outcome"] = "no_data"  # Datadog answered, without a number
                log.warning("metric %s: %s [%s]", query.name, exc.problem, exc.detail)
                return MetricReading(query.name, None, problem=exc.problem, count=count)
        return MetricReading(query.name, value, unit=unit, count=count)

    def _read_sparkline(self, query: MetricQuery, now: datetime) -> tuple[float, ...]:
        # No 429 retry here: the sparkline is decoration and should not spend rate limit.
        try:
            body: Any = timeseries_request(query, now)  # the model's JSON (see _configuration)
            return points(
                self._send(lambda: _read(self._api.query_timeseries_data(body=body), timeseries_json))
            )
        except Unavailable as exc:
            log.info("metric %s: no sparkline: %s [%s]", query.name, exc.problem, exc.detail)
            return ()

    def _call(self, name: str, call: Callable[[], T], *, deadline: float) -> T:
        """One request, plus one retry after a 429 if its reset still fits in the snapshot."""
        try:
            return self._send(call)
        except RateLimited as limited:
            reset = limited.reset_seconds
            if reset is None or time.monotonic() + reset >= deadline:
                raise
        log.info(
            "metric %s: Datadog rate limit, waiting %s s before the one retry",
            name,
            seconds(reset),
        )
        time.sleep(reset)
        return self._send(call)

    def _send(self, call: Callable[[], T]) -> T:
        """Runs one client call, turning every failure into Unavailable."""
        try:
            return call()
        except ApiException as exc:
            raise self._from_api_exception(exc) from exc
        # NewConnectionError subclasses ConnectTimeoutError: it must come first, or a
        # refused connection / unknown host would be reported as a timeout.
        except urllib3.exceptions.NewConnectionError as exc:
            raise Unavailable(f"could not reach Datadog at {self._base_url}", str(exc)) from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise Unavailable(f"timed out after {seconds(self._query_timeout)} s", str(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(f"the connection to Datadog failed ({type(exc).__name__})", str(exc)) from exc
        except (OpenApiException, UnicodeDecodeError) as exc:
            # The body was not JSON or did not match the documented response schema.
            raise Unavailable(UNREADABLE, str(exc)) from exc

    def _from_api_exception(self, exc: ApiException) -> Unavailable:
        status = int(exc.status or 0)
        answered = " ".join(part for part in (str(status), exc.reason or "") if part)
        detail = f"HTTP {answered}: {exc.body!r}"
        if status == 429:
            return RateLimited(reset_seconds(exc.headers), detail)
        if status in (401, 403):
            return Unavailable(f"Datadog answered {answered}: check DD_API_KEY/DD_APP_KEY", detail)
        if 400 <= status < 500:
            errors = error_messages(exc.body)
            return Unavailable(
                f"Datadog rejected the query ({answered})" + (f": {errors}" if errors else ""),
                detail,
            )
        if status >= 500:
            return Unavailable(f"Datadog error {status}", detail)
        # status 0: the client wraps TLS failures this way.
        return Unavailable(f"could not reach Datadog at {self._base_url}", str(exc.reason))


def _read(response: Any, parse: Callable[[bytes, str | None], dict[str, Any]]) -> dict[str, Any]:
    """A 2xx response's body (the client raised for any other status), read in full, which
    gives its connection back to the pool, and parsed by `parse`."""
    try:
        raw = response.data
    finally:
        response.release_conn()
    return parse(raw, response.headers.get("Content-Type"))


def _failure_outcome(exc: Unavailable) -> str:
    """timeout or error, for rollout_bot_datadog_query_seconds."""
    cause = exc.__cause__
    if isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
        cause, urllib3.exceptions.NewConnectionError
    ):
        return "timeout"
    return "error"


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
        # The body comes back as it came (urllib3's response, unread): `_read` checks and keeps
        # the JSON the readers take (bot/metrics/shapes.py), where the client would first turn
        # all of it into model objects, type-checked field by field (2-3 times the CPU of the
        # request).
        preload_content=False,
        # The request body goes out as given: bot/metrics/shapes.py builds it as the JSON of
        # the request model (plain dicts of the types it fixes), which the client would
        # otherwise convert into model objects, type-checked, before turning them back into
        # dicts to send.
        check_input_type=False,
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
