"""The JSON-over-HTTP client the Unleash and LaunchDarkly providers share (urllib3).

- Timeouts: 2 s to connect, 5 s to answer. A flag change is a person waiting in Slack.
- Reads (GET) are retried once when the connection fails or drops; writes are never
  retried here: a write that timed out may have been applied, so the caller decides.
- Transport failures become retryable FlagErrors naming the service and its URL; HTTP
  answers are handed back as they are, because each service words its errors its own way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from bot.flags.base import FlagError

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0

# Connection errors happen before a request is sent, so one more try is always safe for
# a read; status codes are never retried here (the providers map them to FlagErrors).
_READ_RETRY = urllib3.Retry(total=1, connect=1, read=1, status=0, other=0, redirect=0, raise_on_status=False)
_NO_RETRY = urllib3.Retry(total=0, connect=0, read=0, status=0, other=0, redirect=0, raise_on_status=False)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or the text when it is not JSON, or None when empty
    headers: dict[str, str]

    def message(self) -> str:
        """The service's own error sentence, when its body has one."""
        if isinstance(self.body, dict):
            for key in ("message", "error", "details"):
                value = self.body.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip()
        if isinstance(self.body, str):
            return self.body.strip()[:200]
        return ""


class JsonClient:
    """One connection pool to one service. Thread-safe (urllib3's PoolManager is)."""

    def __init__(
        self,
        service: str,
        base_url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": "rollout-bot", **headers}
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=4, timeout=self._timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
    ) -> Answer:
        headers = dict(self._headers)
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        retries = _READ_RETRY if method == "GET" else _NO_RETRY
        try:
            response = self._pool.request(
                method,
                self.base_url + path,
                body=data,
                headers=headers,
                retries=retries,
                redirect=False,
            )
        except HTTPError as error:
            raise self._transport_error(method, error) from error
        raw = response.data
        return Answer(response.status, _parse(raw), {k.lower(): v for k, v in response.headers.items()})

    def _transport_error(self, method: str, error: HTTPError) -> FlagError:
        cause: BaseException = error
        if isinstance(error, MaxRetryError) and error.reason is not None:
            cause = error.reason
        where = f"{self.service} at {self.base_url}"
        maybe_applied = "" if method == "GET" else "; the change may or may not have been applied"
        # NewConnectionError subclasses ConnectTimeoutError in urllib3 2, so it goes first.
        if isinstance(cause, NewConnectionError):
            refused = isinstance(cause.__cause__, ConnectionRefusedError) or "refused" in str(cause).lower()
            underlying = cause.__cause__
            said = (
                underlying.strerror
                if isinstance(underlying, OSError) and underlying.strerror
                else "no connection"
            )
            reason = f"could not reach {where}: " + ("connection refused" if refused else said)
        elif isinstance(cause, ConnectTimeoutError):
            reason = f"could not reach {where}: no connection within {self._timeout.connect_timeout:g} s"
        elif isinstance(cause, ReadTimeoutError):
            reason = f"{where} did not answer within {self._timeout.read_timeout:g} s{maybe_applied}"
        elif isinstance(cause, ProtocolError):
            reason = f"{where} dropped the connection{maybe_applied}"
        else:
            reason = f"could not talk to {where}: {cause.__class__.__name__}"
        return FlagError(reason, retryable=True)

    def close(self) -> None:
        self._pool.clear()


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
