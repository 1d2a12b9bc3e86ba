"""What only the Unleash provider does, against the real Unleash: its wire format, its
errors, its reachability."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.flags import FlagError
from bot.flags.unleash import UnleashProvider
from tests.flags.conftest import UnleashAdmin, UnleashServer


def test_the_strategy_is_written_in_unleash_terms(
    unleash: UnleashProvider, unleash_admin: UnleashAdmin
) -> None:
    flag = unleash_admin.create_flag()
    unleash.set_percent(flag, 25)
    [strategy] = unleash_admin.strategies(flag)
    assert strategy["name"] == "flexibleRollout"
    assert strategy["title"] == "Rollout Bot"
    # Parameter values are strings in Unleash.
    assert strategy["parameters"] == {"rollout": "25", "stickiness": "default", "groupId": flag}
    assert strategy["constraints"] == []


def test_an_update_keeps_stickiness_group_and_constraints(
    unleash: UnleashProvider, unleash_admin: UnleashAdmin
) -> None:
    # Changing groupId or stickiness would reshuffle who is in the rollout between phases.
    flag = unleash_admin.create_flag()
    first = unleash.set_percent(flag, 1)
    assert first.strategy_id is not None
    constraint = {"contextName": "appName", "operator": "IN", "values": ["web"], "inverted": False}
    unleash_admin.update_strategy(
        flag,
        first.strategy_id,
        {
            "name": "flexibleRollout",
            "title": "Rollout Bot",
            "parameters": {"rollout": "1", "stickiness": "userId", "groupId": "checkout-2024"},
            "constraints": [constraint],
        },
    )
    unleash.set_percent(flag, 50, strategy_id=first.strategy_id)
    [strategy] = unleash_admin.strategies(flag)
    assert strategy["parameters"] == {"rollout": "50", "stickiness": "userId", "groupId": "checkout-2024"}
    assert [(c["contextName"], c["values"]) for c in strategy["constraints"]] == [("appName", ["web"])]


def test_two_bot_strategies_are_refused_not_guessed(
    unleash: UnleashProvider, unleash_admin: UnleashAdmin
) -> None:
    flag = unleash_admin.create_flag()
    for rollout in ("1", "5"):
        unleash_admin.add_strategy(
            flag,
            {
                "name": "flexibleRollout",
                "title": "Rollout Bot",
                "parameters": {"rollout": rollout, "stickiness": "default", "groupId": flag},
            },
        )
    with pytest.raises(FlagError, match="2 strategies titled 'Rollout Bot'") as raised:
        unleash.set_percent(flag, 25)
    assert not raised.value.retryable
    assert sorted(s["parameters"]["rollout"] for s in unleash_admin.strategies(flag)) == ["1", "5"]
    # A rollback must still work: both go to 0.
    unleash.turn_off(flag)
    assert [s["parameters"]["rollout"] for s in unleash_admin.strategies(flag)] == ["0", "0"]


def test_a_missing_flag_names_flag_and_project(unleash: UnleashProvider) -> None:
    with pytest.raises(FlagError) as raised:
        unleash.set_percent("rb-test-no-such-flag", 1)
    assert raised.value.reason == "flag rb-test-no-such-flag does not exist in Unleash project default"
    assert raised.value.status == 404


def test_an_unknown_environment_is_a_clear_error(
    unleash_server: UnleashServer, unleash_admin: UnleashAdmin
) -> None:
    flag = unleash_admin.create_flag()
    provider = UnleashProvider(unleash_server.url, unleash_server.token, environment="staging")
    with pytest.raises(FlagError, match="no environment 'staging'") as raised:
        provider.read(flag)
    assert not raised.value.retryable
    with pytest.raises(FlagError, match="does not have environment 'staging'"):
        provider.check()


def test_a_wrong_token_is_not_retryable(unleash_server: UnleashServer, unleash_admin: UnleashAdmin) -> None:
    flag = unleash_admin.create_flag()
    provider = UnleashProvider(unleash_server.url, "*:*.not-the-token")
    for call in (lambda: provider.read(flag), lambda: provider.set_percent(flag, 1), provider.check):
        with pytest.raises(FlagError) as raised:
            call()
        assert not raised.value.retryable
        assert raised.value.status == 401
        assert "rejected the API token" in raised.value.reason and "UNLEASH_API_TOKEN" in raised.value.reason
    assert unleash_admin.strategies(flag) == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


def test_unleash_down_is_retryable_and_quick() -> None:
    provider = UnleashProvider(f"http://127.0.0.1:{_closed_port()}", "*:*.token")
    for call in (
        lambda: provider.read("rb-flag"),
        lambda: provider.set_percent("rb-flag", 1),
        provider.check,
    ):
        started = time.monotonic()
        with pytest.raises(FlagError) as raised:
            call()
        assert raised.value.retryable
        assert "connection refused" in raised.value.reason
        assert time.monotonic() - started < 2


class _SlowWrites(BaseHTTPRequestHandler):
    """Reads answer at once with an empty flag; writes answer after the client gave up."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"environments": [{"name": "production", "enabled": False, "strategies": []}]})
        self._send(body.encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(1.0)
        self._send(b"{}")

    def _send(self, body: bytes) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_write_that_times_out_is_retryable_and_may_have_applied() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowWrites)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        provider = UnleashProvider(f"http://127.0.0.1:{port}", "*:*.token", read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(FlagError) as raised:
            provider.set_percent("rb-flag", 1)
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert raised.value.retryable
    assert raised.value.reason.endswith(
        "did not answer within 0.3 s; the change may or may not have been applied"
    )
    assert elapsed < 0.9  # the write was not retried


def test_check_names_version_project_and_environment(unleash: UnleashProvider) -> None:
    line = unleash.check()
    assert line.startswith("Unleash 6.")
    assert "project default, environment production, token accepted" in line


def test_link_points_at_the_flag_page(unleash_server: UnleashServer) -> None:
    provider = UnleashProvider(unleash_server.url + "/", "t", project="web")
    assert provider.link("checkout.v2") == f"{unleash_server.url}/projects/web/features/checkout.v2"
