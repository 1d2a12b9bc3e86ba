"""What the local Slack remembers: the calls it received, the messages the bot left in each
channel, and the failures, delays and memberships a test set up; and the shape of an answer."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

Params = dict[str, Any]

# slack_sdk sends these as JSON strings inside form bodies; tests inspect them as objects.
JSON_FIELDS = ("blocks", "attachments", "view", "metadata", "files")
JSON_TYPE = "application/json; charset=utf-8"
_TS_START_US = 1_700_000_000_000_000


@dataclass(frozen=True)
class Call:
    """One request the local Slack received; ``headers`` names are lower-cased."""

    method: str
    params: Params
    headers: dict[str, str]
    at: float  # time.time() when the request arrived
    # Tells response_url / upload posts apart, e.g. "/response/<name>".
    path: str = ""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer; ``answer`` is the Web API's JSON object when the body is one."""

    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    answer: Params | None = None


def ok(**fields: Any) -> Reply:
    answer = {"ok": True, **fields}
    return Reply(body=json.dumps(answer).encode(), answer=answer)


def error(name: str) -> Reply:
    answer = {"ok": False, "error": name}
    return Reply(body=json.dumps(answer).encode(), answer=answer)


@dataclass(frozen=True)
class Failure:
    """An injected failure: HTTP 200 with ``error``, or HTTP ``status`` (429: rate limited)."""

    status: int
    error: str | None
    retry_after: int
    # Which calls it may hit (None: the next one): lets a test aim at one kind of post while
    # other work shares the stand-in.
    only: Callable[[Params], bool] | None = None

    def reply(self) -> Reply:
        if self.error is not None:
            return error(self.error)
        if self.status == 429:
            return Reply(
                429,
                json.dumps({"ok": False, "error": "ratelimited"}).encode(),
                headers=(("Retry-After", str(self.retry_after)),),
            )
        return Reply(self.status)


@dataclass
class State:
    calls: list[Call] = field(default_factory=list)
    # channel -> ts -> the message as it is now
    messages: dict[str, dict[str, Params]] = field(default_factory=dict)
    failures: dict[str, deque[Failure]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    # channel -> is it private (the bot cannot join it)
    outside: dict[str, bool] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    uploads: dict[str, Params] = field(default_factory=dict)
    # What apps.connections.open hands out: a Socket Mode server's ws:// URL (None: refused).
    socket_url: str | None = None
    # One sequence for every generated id keeps ts values unique and increasing.
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> int:
        return next(self.ids)

    def next_ts(self) -> str:
        micros = _TS_START_US + self.next_id() * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def parse_body(content_type: str, raw: bytes) -> Params:
    text = raw.decode("utf-8")
    if content_type.startswith("application/json"):
        params: Params = json.loads(text) if text else {}
    else:
        params = dict(parse_qsl(text, keep_blank_values=True))
    for name in JSON_FIELDS:
        if isinstance(params.get(name), str):
            # A malformed field stays as sent, so a test can see what was wrong with it.
            with contextlib.suppress(ValueError):
                params[name] = json.loads(params[name])
    return params


def with_block_ids(blocks: list[Params]) -> list[Params]:
    # Slack gives every rendered block a block_id; interaction payloads depend on it.
    return [{"block_id": f"blk{index}", **block} for index, block in enumerate(blocks)]
