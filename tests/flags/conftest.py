"""Fixtures for the flag providers: a real Unleash, the LaunchDarkly stand-in, memory.

Unleash: TEST_UNLEASH_URL / TEST_UNLEASH_TOKEN name a running server (CI exports them after
``.ci/unleash.sh start``); without them the session runs ``.ci/unleash.sh start`` itself
when node and npm exist, and stops it at the end. Without Node, or when the install or
start fails, the Unleash tests are skipped with the reason (pytest -ra lists it). A server
named by TEST_UNLEASH_URL that does not answer fails the tests instead: it was promised.

The ``UnleashAdmin`` helper talks to Unleash's admin API with the standard library, not
through the provider under test, so what the tests read back is Unleash's own word.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.flags.memory import MemoryProvider
from bot.flags.unleash import UnleashProvider
from tests.fakes.launchdarkly_api import FakeLaunchDarkly

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "unleash.sh"
PROJECT = "default"
ENVIRONMENT = "production"


@dataclass(frozen=True)
class UnleashServer:
    url: str
    token: str


class UnleashAdmin:
    """Just enough of Unleash's admin API to set scenes and read results back."""

    def __init__(self, server: UnleashServer) -> None:
        self.server = server

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server.url + path,
            data=data,
            method=method,
            headers={"Authorization": self.server.token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def _ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path} -> {status}: {answer}"
        return answer

    def _environment_path(self, flag: str) -> str:
        return f"/api/admin/projects/{PROJECT}/features/{flag}/environments/{ENVIRONMENT}"

    def create_flag(self, prefix: str = "rb-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self._ok("POST", f"/api/admin/projects/{PROJECT}/features", {"name": name, "type": "release"})
        return name

    def environment(self, flag: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._ok("GET", self._environment_path(flag))
        return answer

    def strategies(self, flag: str) -> list[dict[str, Any]]:
        return list(self.environment(flag)["strategies"])

    def enabled(self, flag: str) -> bool:
        return bool(self.environment(flag)["enabled"])

    def add_strategy(self, flag: str, body: dict[str, Any]) -> str:
        answer = self._ok("POST", f"{self._environment_path(flag)}/strategies", body)
        return str(answer["id"])

    def update_strategy(self, flag: str, strategy_id: str, body: dict[str, Any]) -> None:
        self._ok("PUT", f"{self._environment_path(flag)}/strategies/{strategy_id}", body)

    def switch(self, flag: str, on_or_off: str) -> None:
        self._ok("POST", f"{self._environment_path(flag)}/{on_or_off}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=3) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def unleash_server() -> Iterator[UnleashServer]:
    url = os.environ.get("TEST_UNLEASH_URL", "").strip()
    token = os.environ.get("TEST_UNLEASH_TOKEN", "").strip()
    if url:
        if not token:
            pytest.fail("TEST_UNLEASH_URL is set but TEST_UNLEASH_TOKEN is not")
        if not _answers(url):
            pytest.fail(f"TEST_UNLEASH_URL={url} does not answer /health")
        yield UnleashServer(url.rstrip("/"), token)
        return
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"real Unleash tests need {' and '.join(missing)} (or TEST_UNLEASH_URL): not found")
    default_url = f"http://127.0.0.1:{os.environ.get('UNLEASH_TEST_PORT', '4242')}"
    already_running = _answers(default_url)  # someone's `.ci/unleash.sh start`: leave it running
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    if started.returncode != 0:
        tail = "\n".join((started.stdout + started.stderr).strip().splitlines()[-8:])
        pytest.skip(f".ci/unleash.sh start failed ({started.returncode}); Unleash tests not run:\n{tail}")
    env = subprocess.run(
        ["bash", str(SCRIPT), "env"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    values = dict(
        line.removeprefix("export ").split("=", 1) for line in env.splitlines() if line.startswith("export ")
    )
    # `env` prints shell-quoted values; the token's asterisks come back escaped.
    server = UnleashServer(values["TEST_UNLEASH_URL"], values["TEST_UNLEASH_TOKEN"].replace("\\", ""))
    try:
        yield server
    finally:
        if not already_running:
            subprocess.run(["bash", str(SCRIPT), "stop"], cwd=ROOT, capture_output=True, check=False)


@pytest.fixture(scope="session")
def unleash_admin(unleash_server: UnleashServer) -> UnleashAdmin:
    return UnleashAdmin(unleash_server)


@pytest.fixture
def unleash(unleash_server: UnleashServer) -> Iterator[UnleashProvider]:
    provider = UnleashProvider(
        unleash_server.url, unleash_server.token, project=PROJECT, environment=ENVIRONMENT
    )
    yield provider
    provider.close()


@pytest.fixture
def memory() -> MemoryProvider:
    return MemoryProvider(environment=ENVIRONMENT)


@pytest.fixture
def fake_ld() -> Iterator[FakeLaunchDarkly]:
    with FakeLaunchDarkly() as fake:
        yield fake
