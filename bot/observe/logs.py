"""Logging: one JSON object per line (or the classic text line on a terminal), with the
context of the request or job it belongs to, and no secrets.

Context is bound once at each entry point (`scope`: a Slack request, a queued piece of work, a
due job, an outbox row) in contextvars, and whatever finds the rollout adds it (`bind`);
every line logged inside carries it, whichever logger wrote it. structlog renders the standard
library's records (ours and every library's), so the code keeps `logging.getLogger`.

Secrets: every rendered line is passed through `redact`, which masks Slack tokens by shape
(`xoxb-`, `xoxp-`, `xapp-`, ...) and the exact values of the secret variables found in the
environment at start (signing secret, Datadog keys, Unleash and LaunchDarkly tokens).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars
from structlog.typing import EventDict

SECRET_VARIABLES = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "DD_API_KEY",
    "DD_APP_KEY",
    "UNLEASH_API_TOKEN",
    "LD_API_TOKEN",
)
REDACTED = "[redacted]"
TOKEN_SHAPES = re.compile(r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]+")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The context a line may carry, in this order in the text format.
CONTEXT_KEYS = ("rollout_id", "feature", "team_id", "user_id", "interaction", "job", "work_id", "outbox_id")

_secrets: tuple[str, ...] = ()


def remember_secrets(values: Iterable[str | None]) -> None:
    """The exact values to mask (short ones too would mask ordinary words: 8 characters up)."""
    global _secrets
    found = {v.strip() for v in values if v and len(v.strip()) >= 8}
    _secrets = tuple(sorted(found | set(_secrets), key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return TOKEN_SHAPES.sub(REDACTED, text)


@contextmanager
def scope(**context: Any) -> Iterator[None]:
    """The context of one request or job, starting from nothing (a pool's threads are reused,
    and what a request bound must not reach the next); what was bound before comes back after."""
    before = get_contextvars()
    structlog.contextvars.clear_contextvars()
    bind(**context)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        if before:
            bind_contextvars(**before)


def bind(**context: Any) -> None:
    """Adds to the current scope (e.g. the rollout, once a request has found it)."""
    bind_contextvars(**{k: v for k, v in context.items() if v is not None})


def bind_rollout(rollout: Any) -> None:
    """The rollout a request or job concerns: its id and feature name."""
    bind(rollout_id=getattr(rollout, "id", None), feature=getattr(rollout, "feature", None))


def current() -> dict[str, Any]:
    return get_contextvars()


class _Redacting(logging.Formatter):
    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record))


class _TextWithContext(logging.Formatter):
    """Today's line, then the bound context as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = get_contextvars()
        if not context:
            return line
        pairs = " ".join(f"{k}={context[k]}" for k in CONTEXT_KEYS if k in context)
        head, _, rest = line.partition("\n")
        return f"{head} [{pairs}]" + (f"\n{rest}" if rest else "")


def _rename_event(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """time, level, logger, message first; then the context."""
    head = {key: event.pop(key, None) for key in ("time", "level", "logger")}
    head["message"] = event.pop("event", "")
    return {**head, **event}


def _json_formatter() -> logging.Formatter:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _rename_event,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
    )


def choose_format(env: dict[str, str] | os._Environ[str] | None = None, stream: Any = None) -> str:
    """LOG_FORMAT=json|text; by default JSON unless stderr is a terminal."""
    env = os.environ if env is None else env
    raw = env.get("LOG_FORMAT", "").strip().lower()
    if raw in ("json", "text"):
        return raw
    stream = sys.stderr if stream is None else stream
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


def setup_logging(level: str = "INFO", fmt: str | None = None) -> str:
    """Configures the root logger once for the process; returns the format chosen."""
    fmt = fmt or choose_format()
    remember_secrets(os.environ.get(name) for name in SECRET_VARIABLES)
    inner = _json_formatter() if fmt == "json" else _TextWithContext(TEXT_FORMAT)
    handler = logging.StreamHandler()
    handler.setFormatter(_Redacting(inner))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a library's warning is a log line too, in the same format
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # "skipped: maximum number of running instances" is how a kick meets a running outbox
    # job, which then drains again by itself (bot/delivery/scheduler.py): not worth a warning.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    return fmt
