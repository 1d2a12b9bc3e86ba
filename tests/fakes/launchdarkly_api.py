"""A local HTTP stand-in for LaunchDarkly's REST API v2 (the flag endpoints the bot uses).

Shapes follow LaunchDarkly's documented representations:

- ``GET /api/v2/flags/{project}/{flag}[?env=a,b]``: the flag with ``variations`` (each with
  ``_id`` and ``value``), ``defaults`` and an ``environments`` map; each environment has
  ``on``, ``fallthrough`` (``{"variation": i}`` or ``{"rollout": {"variations": [{"variation":
  i, "weight": w}], ...}}``, weights in thousandths of a percent), ``offVariation``,
  ``targets``, ``contextTargets``, ``rules``, ``_site``, ``version``. ``env`` filters the map.
- ``PATCH /api/v2/flags/{project}/{flag}`` with ``Content-Type: application/json;
  domain-model=launchdarkly.semanticpatch`` and ``{"environmentKey", "instructions"}``:
  ``updateFallthroughVariationOrRollout`` (``rolloutWeights`` keyed by variation ``_id``,
  integers summing to 100000, or ``variationId``), ``turnFlagOn``, ``turnFlagOff``.
  All instructions apply, or none does (400). Answers the updated flag.
- ``GET /api/v2/projects/{project}/environments/{env}``: the environment, with
  ``approvalSettings.required``.
- Errors are ``{"code": ..., "message": ...}``: 401 for a wrong ``Authorization`` header,
  404 for an unknown project/flag/environment, 400 for an invalid patch, and 405 for a
  patch to an environment whose approvals are required (``require_approval``).

Not modelled: JSON Patch, approval requests, targets/rules editing, ``expand``.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

SEMANTIC_PATCH = "domain-model=launchdarkly.semanticpatch"


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # see tests/fakes/datadog_api.py


@dataclass(frozen=True)
class Request:
    """One request the fake received. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]
    time: float


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class _Failure:
    status: int
    method: str | None
    remaining: int | None
    body: Any
    headers: tuple[tuple[str, str], ...]


@dataclass
class _State:
    flags: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals: set[str] = field(default_factory=set)
    failures: list[_Failure] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)


class FakeLaunchDarkly:
    """LaunchDarkly's flag API on 127.0.0.1, for tests. Use as a context manager."""

    def __init__(
        self,
        *,
        token: str = "api-00000000-test-token",
        project: str = "default",
        environments: tuple[str, ...] = ("production", "test"),
    ) -> None:
        self.token = token
        self.project = project
        self.environments = environments
        self._lock = threading.Lock()
        self._state = _State()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-launchdarkly",
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

    def patches(self) -> list[Request]:
        return [r for r in self.requests if r.method == "PATCH"]

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

    # --- the scene --------------------------------------------------------------------

    def add_flag(
        self,
        key: str,
        *,
        on: bool = False,
        fallthrough: dict[str, Any] | None = None,
        rules: list[dict[str, Any]] | None = None,
        targets: list[dict[str, Any]] | None = None,
        values: tuple[Any, ...] = (True, False),
    ) -> dict[str, Any]:
        """A flag (boolean unless ``values`` says otherwise) in every environment of the fake.
        The fallthrough defaults to serving the last variation (``false``), as LaunchDarkly's
        new boolean flags do. Returns a copy of the stored flag."""
        variations = [{"_id": str(uuid.uuid4()), "value": v, "name": json.dumps(v)} for v in values]
        environments = {
            env: {
                "on": on,
                "archived": False,
                "salt": uuid.uuid4().hex,
                "sel": uuid.uuid4().hex,
                "lastModified": _now_ms(),
                "version": 1,
                "targets": copy.deepcopy(targets or []),
                "contextTargets": [],
                "rules": copy.deepcopy(rules or []),
                "fallthrough": copy.deepcopy(fallthrough or {"variation": len(values) - 1}),
                "offVariation": len(values) - 1,
                "prerequisites": [],
                "_site": {"href": f"/{self.project}/{env}/features/{key}", "type": "text/html"},
                "_environmentName": env.title(),
                "trackEvents": False,
                "trackEventsFallthrough": False,
            }
            for env in self.environments
        }
        flag = {
            "name": key,
            "kind": "boolean" if set(values) == {True, False} and len(values) == 2 else "multivariate",
            "key": key,
            "_version": 1,
            "creationDate": _now_ms(),
            "variations": variations,
            "defaults": {"onVariation": 0, "offVariation": len(values) - 1},
            "temporary": True,
            "tags": [],
            "_links": {
                "parent": {"href": f"/api/v2/flags/{self.project}", "type": "application/json"},
                "self": {"href": f"/api/v2/flags/{self.project}/{key}", "type": "application/json"},
            },
            "environments": environments,
        }
        with self._lock:
            self._state.flags[key] = flag
            return copy.deepcopy(flag)

    def flag(self, key: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._state.flags[key])

    def require_approval(self, environment: str, required: bool = True) -> None:
        """Changes to ``environment`` answer 405, as with LaunchDarkly's required approvals."""
        with self._lock:
            if required:
                self._state.approvals.add(environment)
            else:
                self._state.approvals.discard(environment)

    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        times: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` requests (all if None; only ``method`` ones if given) answer ``status``."""
        payload = body if body is not None else {"code": f"http_{status}", "message": f"status {status}"}
        with self._lock:
            self._state.failures.append(
                _Failure(status, method, times, payload, tuple((headers or {}).items()))
            )

    # --- answering ----------------------------------------------------------------------

    def _answer(self, request: Request) -> _Reply:
        with self._lock:
            self._state.requests.append(request)
            if request.headers.get("authorization") != self.token:
                return _error(401, "unauthorized", "Invalid access token")
            failure = self._take_failure(request.method)
            if failure is not None:
                return _Reply(failure.status, failure.body, failure.headers)
            parts = [unquote(p) for p in request.path.strip("/").split("/")]
            if parts[:3] == ["api", "v2", "flags"] and len(parts) == 5:
                if parts[3] != self.project:
                    return _error(404, "not_found", "Unknown project")
                if request.method == "GET":
                    return self._get_flag(parts[4], request.query)
                if request.method == "PATCH":
                    return self._patch_flag(parts[4], request)
                return _error(405, "method_not_allowed", "Method not allowed")
            if parts[:3] == ["api", "v2", "projects"] and len(parts) == 6 and parts[4] == "environments":
                if parts[3] != self.project or parts[5] not in self.environments:
                    return _error(404, "not_found", "Unknown resource")
                return _Reply(200, self._environment(parts[5]))
            return _error(404, "not_found", "Unknown resource")

    def _take_failure(self, method: str) -> _Failure | None:
        for failure in self._state.failures:
            if failure.remaining == 0 or failure.method not in (None, method):
                continue
            if failure.remaining is not None:
                failure.remaining -= 1
            return failure
        return None

    def _environment(self, env: str) -> dict[str, Any]:
        return {
            "_id": uuid.uuid5(uuid.NAMESPACE_URL, env).hex,
            "key": env,
            "name": env.title(),
            "color": "417505",
            "approvalSettings": {
                "required": env in self._state.approvals,
                "minNumApprovals": 1,
                "canReviewOwnRequest": False,
            },
        }

    def _get_flag(self, key: str, query: dict[str, list[str]]) -> _Reply:
        flag = self._state.flags.get(key)
        if flag is None:
            return _error(404, "not_found", "Unknown resource")
        wanted = [e for value in query.get("env", []) for e in value.split(",") if e]
        answer = copy.deepcopy(flag)
        if wanted:
            answer["environments"] = {k: v for k, v in answer["environments"].items() if k in wanted}
        return _Reply(200, answer)

    def _patch_flag(self, key: str, request: Request) -> _Reply:
        if SEMANTIC_PATCH not in request.headers.get("content-type", ""):
            # Without the domain model LaunchDarkly reads the body as a JSON Patch array.
            return _error(400, "invalid_request", "Expected a JSON Patch array")
        flag = self._state.flags.get(key)
        if flag is None:
            return _error(404, "not_found", "Unknown resource")
        body = request.body if isinstance(request.body, dict) else {}
        env_key = body.get("environmentKey")
        instructions = body.get("instructions")
        if not isinstance(instructions, list) or not instructions:
            return _error(400, "invalid_request", "instructions must be a non-empty array")
        if env_key not in flag["environments"]:
            return _error(400, "invalid_request", "environmentKey is required and must name an environment")
        if env_key in self._state.approvals:
            return _error(405, "method_not_allowed", "This environment requires approval for changes")
        environment = copy.deepcopy(flag["environments"][env_key])
        for instruction in instructions:
            problem = _apply(flag, environment, instruction)
            if problem:
                return _error(400, "invalid_request", problem)
        environment["version"] += 1
        environment["lastModified"] = _now_ms()
        flag["environments"][env_key] = environment
        flag["_version"] += 1
        return _Reply(200, copy.deepcopy(flag))


def _apply(flag: dict[str, Any], environment: dict[str, Any], instruction: Any) -> str | None:
    """Apply one semantic-patch instruction to ``environment``; the problem, if any."""
    if not isinstance(instruction, dict):
        return "each instruction must be an object"
    kind = instruction.get("kind")
    ids = [v["_id"] for v in flag["variations"]]
    if kind == "turnFlagOn":
        environment["on"] = True
    elif kind == "turnFlagOff":
        environment["on"] = False
    elif kind == "updateFallthroughVariationOrRollout":
        if "variationId" in instruction:
            if instruction["variationId"] not in ids:
                return "unknown variationId"
            environment["fallthrough"] = {"variation": ids.index(instruction["variationId"])}
            return None
        weights = instruction.get("rolloutWeights")
        if not isinstance(weights, dict) or not weights:
            return "rolloutWeights or variationId is required"
        if any(k not in ids for k in weights):
            return "rolloutWeights names an unknown variation id"
        if any(not isinstance(w, int) or isinstance(w, bool) or w < 0 for w in weights.values()):
            return "rollout weights must be non-negative integers"
        if sum(weights.values()) != 100_000:
            return "rollout weights must sum to 100000"
        environment["fallthrough"] = {
            "rollout": {
                "variations": [{"variation": ids.index(k), "weight": w} for k, w in weights.items()],
                "bucketBy": instruction.get("rolloutBucketBy") or "key",
                "contextKind": instruction.get("rolloutContextKind") or "user",
            }
        }
    else:
        return f"unsupported instruction kind {kind!r}"
    return None


def _error(status: int, code: str, message: str) -> _Reply:
    return _Reply(status, {"code": code, "message": message})


def _now_ms() -> int:
    return int(time.time() * 1000)


def _handler_for(fake: FakeLaunchDarkly) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"
        timeout = 30

        def do_GET(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            split = urlsplit(self.path)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query),
                body=body,
                headers={name.lower(): value for name, value in self.headers.items()},
                time=time.monotonic(),
            )
            reply = fake._answer(request)
            data = json.dumps(reply.body).encode() if reply.body is not None else b""
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
