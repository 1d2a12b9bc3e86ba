"""A local HTTP stand-in for Datadog's v2 metrics query API (scalar + timeseries).

Answers are built from the recorded Datadog responses in tests/fixtures (see
PROVENANCE.md there): the same bodies, content types and x-ratelimit-* headers,
with values filled in. Tests point ``DatadogMetricsSource(api_url=fake.url)`` at it.

One shape is not recorded: a timeseries answer without data. The fake answers it
with empty ``series``/``times``/``values`` lists, mirroring the recorded scalar
no-data answer (``"values": []``).

Formulas. A request whose formulas are not just its one query's name (``100 * errors / hits``,
or a second formula naming a query to read its total) is answered by computing each formula
from the values set for its queries (each query looked up by its own text), exactly (in
fractions) and rounded once: one number column per formula in the request's order, as
Datadog documents ("one column per formula"); a column is the recorded no-data ``[]`` when a
query it uses has no value, ``[null]`` when it divides by zero. Datadog's names for formula
columns are not recorded; the fake names them by the formula text, and the client reads
columns by position. In a timeseries, a query given only a value holds it at every point of
the other queries' series.
"""

from __future__ import annotations

import ast
import copy
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

Endpoint = Literal["scalar", "timeseries"]
_PATHS: dict[str, Endpoint] = {
    "/api/v2/query/scalar": "scalar",
    "/api/v2/query/timeseries": "timeseries",
}
_V2_TYPE = "application/vnd.api+json"  # recorded on v2 query answers
_ERROR_TYPE = "application/json"  # recorded on 400/403/429/500 answers


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


_SCALAR_OK = _fixture("v2_query_scalar_ok.body.json")
_SCALAR_NO_DATA = _fixture("v2_query_scalar_ok_empty_values.body.json")
_TIMESERIES_OK = _fixture("v2_query_timeseries_ok.body.json")
_BAD_REQUEST = _fixture("v2_query_scalar_400.body.json")
_FORBIDDEN = _fixture("v1_validate_403.body.json")  # {"errors": ["API key required"]}
_RECORDED_UNIT = _SCALAR_OK["data"]["attributes"]["columns"][0]["meta"]["unit"][0]


def _recorded_rate_limit_headers() -> dict[str, str]:
    first_429 = _fixture("retry_429_logs.exchange.json")[0]["response"]
    return {
        name.lower(): values[0]
        for name, values in first_429["headers"].items()
        if name.lower().startswith("x-ratelimit-")
    }


_RATE_LIMIT_HEADERS = _recorded_rate_limit_headers()


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops simultaneous connects beyond it; the kernel
    # then retries them after ~1 s, which would look like a slow Datadog.
    request_queue_size = 128


@dataclass(frozen=True)
class Request:
    """One request the fake received. Header names are lower-cased."""

    method: str
    path: str
    body: Any  # parsed JSON; None if empty or not JSON
    headers: dict[str, str]
    time: float  # time.monotonic() on arrival
    client_port: int  # tells connections apart, to check they are reused

    @property
    def endpoint(self) -> Endpoint | None:
        return _PATHS.get(self.path)

    @property
    def query(self) -> str:
        """The metrics query text(s) of the request, "" if there are none."""
        return " ".join(str(q.get("query", "")) for q in _queries(self.body))


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = _ERROR_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


@dataclass(frozen=True)
class _Value:
    value: float | None
    delay: float
    series: tuple[float, ...] | None
    unit: str | None


@dataclass
class _Failure:
    match: str
    endpoint: Endpoint | None
    remaining: int | None  # None = every time
    reply: _Reply


@dataclass
class _State:
    values: dict[str, _Value] = field(default_factory=dict)
    failures: list[_Failure] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)


class FakeDatadog:
    """Datadog's query API on 127.0.0.1, for tests. Use as a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        # A short poll keeps stop() quick (shutdown waits for the current poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-datadog",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._state.requests)

    def requests_to(self, endpoint: Endpoint) -> list[Request]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_value(
        self,
        match: str,
        value: float | None,
        *,
        delay: float = 0.0,
        series: list[float] | None = None,
        unit: str | None = None,
    ) -> None:
        """Queries containing ``match`` answer ``value`` (None: the recorded no-data
        shape) after ``delay`` seconds, on both endpoints; the timeseries endpoint
        answers ``series`` (no points if None)."""
        points = tuple(series) if series is not None else None
        with self._lock:
            self._state.values[match] = _Value(value, delay, points, unit)

    def fail(
        self,
        match: str,
        status: int,
        *,
        times: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Mapping[str, Any] | list[Any] | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        """The next ``times`` requests (all if None) whose query contains ``match``
        answer ``status`` with the recorded body and headers for it, overridden by
        ``headers``/``body``. ``endpoint`` limits this to "scalar" or "timeseries"."""
        reply = _failure_reply(status, headers or {}, body)
        with self._lock:
            self._state.failures.append(_Failure(match, endpoint, times, reply))

    def _answer(self, request: Request) -> _Reply:
        with self._lock:
            self._state.requests.append(request)
            if not (request.headers.get("dd-api-key") and request.headers.get("dd-application-key")):
                return _json_reply(403, _FORBIDDEN, _ERROR_TYPE)
            endpoint = request.endpoint
            if request.method != "POST" or endpoint is None:
                return _json_reply(404, {"errors": ["Not found"]}, _ERROR_TYPE)
            invalid = _invalid_request(request.body, endpoint)
            if invalid:
                return _json_reply(400, {"errors": [invalid]}, _ERROR_TYPE)
            failure = self._take_failure(request.query, endpoint)
            if failure is not None:
                return failure
            value = next(
                (v for match, v in self._state.values.items() if match in request.query),
                None,
            )
            by_name = {
                str(q.get("name")): self._value_for(str(q.get("query", ""))) for q in _queries(request.body)
            }
        formulas = _formulas(request.body)
        if formulas != list(by_name)[:1] or len(by_name) != 1:
            return _formula_reply(endpoint, formulas, by_name, request.body)
        if endpoint == "scalar":
            return _json_reply(200, _scalar_body(value), _V2_TYPE, value)
        return _json_reply(200, _timeseries_body(value, request.body), _V2_TYPE, value)

    def _value_for(self, query: str) -> _Value | None:
        return next((v for match, v in self._state.values.items() if match in query), None)

    def _take_failure(self, query: str, endpoint: Endpoint) -> _Reply | None:
        for failure in self._state.failures:
            if failure.remaining == 0 or failure.match not in query:
                continue
            if failure.endpoint not in (None, endpoint):
                continue
            if failure.remaining is not None:
                failure.remaining -= 1
            return failure.reply
        return None


def _handler_for(fake: FakeDatadog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Without this every answer waits ~40 ms on Nagle + delayed ACK over loopback.
        disable_nagle_algorithm = True

        # HTTP/1.1 keeps connections alive, as Datadog does, so pooling is observable.
        protocol_version = "HTTP/1.1"
        timeout = 30  # don't keep a thread per idle client connection forever

        def do_POST(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = Request(
                method=self.command,
                path=self.path.split("?", 1)[0],
                body=_parse_json(raw),
                headers={name.lower(): value for name, value in self.headers.items()},
                time=time.monotonic(),
                client_port=int(self.client_address[1]),
            )
            reply = fake._answer(request)
            time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): exactly what the test provoked

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean; tests read fake.requests instead

    return Handler


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _queries(body: Any) -> list[dict[str, Any]]:
    try:
        queries = body["data"]["attributes"]["queries"]
    except (KeyError, TypeError):
        return []
    return [q for q in queries if isinstance(q, dict)] if isinstance(queries, list) else []


def _invalid_request(body: Any, endpoint: Endpoint) -> str | None:
    """Datadog answers 400 to bodies like these; the fake does too, to catch client bugs."""
    try:
        data = body["data"]
        attributes = data["attributes"]
    except (KeyError, TypeError):
        return "missing data.attributes"
    if data.get("type") != f"{endpoint}_request":
        return f"data.type must be {endpoint}_request"
    if not all(isinstance(attributes.get(key), int) for key in ("from", "to")):
        return "from and to must be epoch milliseconds"
    if not _queries(body):
        return "queries must not be empty"
    return None


def _json_reply(status: int, body: Any, content_type: str, value: _Value | None = None) -> _Reply:
    delay = value.delay if value is not None else 0.0
    return _Reply(status, json.dumps(body).encode(), content_type, delay=delay)


def _failure_reply(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any] | list[Any] | None,
) -> _Reply:
    recorded_body: bytes = b""  # 429 and 500 were recorded with an empty body
    recorded_headers: dict[str, str] = {}
    if status == 403:
        recorded_body = json.dumps(_FORBIDDEN).encode()
    elif status == 400:
        recorded_body = json.dumps(_BAD_REQUEST).encode()
    elif status == 429:
        recorded_headers = dict(_RATE_LIMIT_HEADERS)
    # Lower-case names, like Datadog sends them (callers must match case-insensitively).
    merged = {
        **recorded_headers,
        **{name.lower(): value for name, value in headers.items()},
    }
    content_type = _V2_TYPE if 200 <= status < 300 else _ERROR_TYPE
    return _Reply(status, _encode(body, recorded_body), content_type, tuple(merged.items()))


def _encode(body: bytes | str | Mapping[str, Any] | list[Any] | None, default: bytes) -> bytes:
    if body is None:
        return default
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _scalar_body(value: _Value | None) -> Any:
    if value is None or value.value is None:
        return _SCALAR_NO_DATA
    body = copy.deepcopy(_SCALAR_OK)
    column = body["data"]["attributes"]["columns"][0]
    column["values"] = [value.value]
    # Recorded shapes: a [primary, per] unit pair, or null when the metric has no unit.
    column["meta"]["unit"] = [{**_RECORDED_UNIT, "short_name": value.unit}, None] if value.unit else None
    return body


def _timeseries_body(value: _Value | None, request_body: Any) -> Any:
    body = copy.deepcopy(_TIMESERIES_OK)
    attributes = body["data"]["attributes"]
    points = list(value.series or ()) if value is not None else []
    if not points:
        attributes.update(series=[], times=[], values=[])
        return body
    request_attributes = request_body["data"]["attributes"]
    step = int(request_attributes.get("interval") or 60_000)
    end = int(request_attributes["to"])
    attributes["times"] = [end - step * (len(points) - 1 - i) for i in range(len(points))]
    attributes["values"] = [points]
    return body


# --- formulas --------------------------------------------------------------------------------


def _formulas(body: Any) -> list[str]:
    try:
        formulas = body["data"]["attributes"].get("formulas") or []
    except (KeyError, TypeError, AttributeError):
        return []
    return [str(f.get("formula", "")) for f in formulas if isinstance(f, dict)]


def _evaluate(formula: str, values: Mapping[str, Fraction]) -> Fraction | None:
    """The formula's exact value; None when it divides by zero. KeyError for an unknown name,
    ValueError for anything but names, numbers, + - * / and parentheses."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = walk(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
        raise ValueError(f"not a formula: {formula}")

    try:
        return walk(ast.parse(formula, mode="eval"))
    except ZeroDivisionError:
        return None


def _names(formula: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(formula, mode="eval")) if isinstance(node, ast.Name)}


def _formula_reply(
    endpoint: Endpoint, formulas: list[str], by_name: Mapping[str, _Value | None], body: Any
) -> _Reply:
    try:
        for formula in formulas:
            if not _names(formula) <= by_name.keys():
                raise ValueError(f"unknown query in formula {formula}")
    except (SyntaxError, ValueError) as exc:
        return _json_reply(400, {"errors": [str(exc)]}, _ERROR_TYPE)
    delay = max((v.delay for v in by_name.values() if v is not None), default=0.0)
    if endpoint == "scalar":
        columns = [_formula_column(formula, by_name) for formula in formulas]
        answer = copy.deepcopy(_SCALAR_OK)
        answer["data"]["attributes"]["columns"] = columns
    else:
        answer = _formula_timeseries(formulas[0], by_name, body)
    return _Reply(200, json.dumps(answer).encode(), _V2_TYPE, delay=delay)


def _formula_column(formula: str, by_name: Mapping[str, _Value | None]) -> dict[str, Any]:
    used = _names(formula)
    given = {name: by_name[name] for name in used}
    column: dict[str, Any] = {"name": formula, "values": [], "type": "number", "meta": {"unit": None}}
    if any(v is None or v.value is None for v in given.values()):
        return column
    exact = _evaluate(
        formula, {name: Fraction(v.value) for name, v in given.items() if v and v.value is not None}
    )
    column["values"] = [None if exact is None else float(exact)]
    only = by_name.get(formula)
    if only is not None and only.unit:
        column["meta"]["unit"] = [{**_RECORDED_UNIT, "short_name": only.unit}, None]
    return column


def _formula_timeseries(formula: str, by_name: Mapping[str, _Value | None], body: Any) -> Any:
    used = _names(formula)
    lengths = [len(v.series) for name in used if (v := by_name[name]) is not None and v.series]
    points: list[float | None] = []
    if lengths and all(by_name[name] is not None for name in used):
        for i in range(min(lengths)):
            at: dict[str, Fraction] = {}
            for name in used:
                v = by_name[name]
                assert v is not None
                point = v.series[i] if v.series else v.value
                if point is None:
                    break
                at[name] = Fraction(point)
            else:
                exact = _evaluate(formula, at)
                points.append(None if exact is None else float(exact))
                continue
            points.append(None)
    return (
        _timeseries_body(_Value(None, 0.0, tuple(points), None), body)
        if points
        else _timeseries_body(None, body)
    )
