"""Log lines: JSON or text, the context bound at an entry point on every line inside it, and
no secret in any line, whoever logged it."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
import structlog

from bot.observe import logs


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[io.StringIO, str]]:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "8f14e45fceea167a5a36dedd4bea2543")
    monkeypatch.setenv("DD_API_KEY", "ddapikey0123456789abcdef")
    monkeypatch.setenv("DD_APP_KEY", "ddappkey0123456789abcdef01234567")
    monkeypatch.setenv("UNLEASH_API_TOKEN", "*:production.unleash-secret-token-value")
    monkeypatch.setenv("LD_API_TOKEN", "api-1234abcd-ld-secret-token")
    # Tests that ran use cases in this thread outside any scope may have bound a rollout.
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    yield stream, ""
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def _setup(stream: io.StringIO, fmt: str) -> None:
    logs.setup_logging("INFO", fmt)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


SECRET_LINES = [
    "posting with token xoxb-1234-5678-abcdEFGH",
    "user token xoxp-1-2-3-abc and app token xapp-1-A111-999-ffff",
    "signature over 8f14e45fceea167a5a36dedd4bea2543",
    "DD-API-KEY: ddapikey0123456789abcdef DD-APPLICATION-KEY: ddappkey0123456789abcdef01234567",
    "Authorization: *:production.unleash-secret-token-value",
    "Authorization: api-1234abcd-ld-secret-token",
]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_are_redacted_in_messages_arguments_and_tracebacks(
    captured: tuple[io.StringIO, str], fmt: str
) -> None:
    stream, _ = captured
    _setup(stream, fmt)
    log = logging.getLogger("anything.at.all")
    for line in SECRET_LINES:
        log.warning("%s", line)
    try:
        raise RuntimeError("failed with xoxb-9999-secret")
    except RuntimeError:
        log.exception("a call failed")
    out = stream.getvalue()
    for secret in (
        "xoxb-",
        "xoxp-",
        "xapp-",
        "8f14e45f",
        "ddapikey",
        "ddappkey",
        "unleash-secret",
        "ld-secret",
    ):
        assert secret not in out, out
    assert out.count(logs.REDACTED) >= 9
    if fmt == "json":
        assert all(json.loads(line) for line in out.splitlines())


def test_json_lines_carry_the_scope_and_what_was_bound_inside_it(captured: tuple[io.StringIO, str]) -> None:
    stream, _ = captured
    _setup(stream, "json")
    log = logging.getLogger("bot.test")
    with logs.scope(job="toggle", team_id="T1", user_id="U1", interaction="action:T1:U1:1.2"):
        log.info("looking")

        class Found:
            id, feature = 42, "checkout-v2"

        logs.bind_rollout(Found())
        log.info("found it")
    log.info("outside")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert first["job"] == "toggle" and first["team_id"] == "T1" and "rollout_id" not in first
    assert (second["rollout_id"], second["feature"], second["user_id"]) == (42, "checkout-v2", "U1")
    assert third["message"] == "outside" and "job" not in third and "rollout_id" not in third


def test_a_reused_thread_does_not_carry_the_last_request_into_the_next(
    captured: tuple[io.StringIO, str],
) -> None:
    stream, _ = captured
    _setup(stream, "json")
    log = logging.getLogger("bot.test")

    def work() -> None:
        with logs.scope(job="first"):
            logs.bind(rollout_id=1)
        with logs.scope(job="second"):
            log.info("second")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    (line,) = (json.loads(x) for x in stream.getvalue().splitlines())
    assert line["job"] == "second" and "rollout_id" not in line


def test_text_keeps_the_classic_line_and_adds_the_context(captured: tuple[io.StringIO, str]) -> None:
    stream, _ = captured
    _setup(stream, "text")
    with logs.scope(rollout_id=7, job="digest"):
        logging.getLogger("bot.delivery.jobs").warning("late")
    line = stream.getvalue().strip()
    assert " WARNING bot.delivery.jobs: late [rollout_id=7 job=digest]" in line


def test_json_unless_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.choose_format({}, io.StringIO()) == "json"
    assert logs.choose_format({}, Tty()) == "text"
    assert logs.choose_format({"LOG_FORMAT": "json"}, Tty()) == "json"
    assert logs.choose_format({"LOG_FORMAT": "TEXT"}, io.StringIO()) == "text"
