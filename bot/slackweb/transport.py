"""Slack calls over kept-alive connections: slack_sdk's clients with urllib3's pool underneath.

slack_sdk's synchronous clients (`WebClient`, and `WebhookClient`, which Bolt's `respond`
and our replies use for a response_url) open each call with `urllib.request.urlopen`: a name
lookup, a new TCP (and TLS) connection and `Connection: close`, every time. Here the same
clients send their request through one `urllib3.PoolManager` for the whole process instead;
everything above the socket (the body, the headers, the retry handlers, the parsing of the
answer) stays slack_sdk's own.

Rules:
- The pool is thread-safe (urllib3's) and shared by every client of the process, so a
  response_url reply, made by a fresh client per request, reuses a connection too. At most
  `POOL_PER_HOST` idle connections are kept per host; a burst opens more and drops them after.
- A connection Slack closed while it sat idle is noticed before it is used and replaced; one
  that fails mid-request surfaces as urllib would have it (`URLError`, or `TimeoutError` for a
  read timeout), so slack_sdk's `ConnectionErrorRetryHandler` retries it as before. urllib3
  itself retries nothing.
- An answer outside 2xx raises `urllib.error.HTTPError` with the answer's status, headers and
  body, as `urlopen` does, so the rate-limit and server-error retry handlers see what they saw.
  Redirects are not followed (the Web API and response_urls do not redirect; urllib would).
- A client given a proxy or its own SSL context keeps urllib's path.
- A process forked from one that called Slack (gunicorn's workers) starts with an empty pool,
  never sharing a socket with its parent or siblings.
"""

from __future__ import annotations

import io
import os
from http.client import HTTPMessage
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request

import urllib3
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient, WebhookResponse

POOL_PER_HOST = 16  # idle connections kept per host: the work process's threads
_POOL = urllib3.PoolManager(num_pools=8, maxsize=POOL_PER_HOST, block=False, retries=False)
# A forked child (gunicorn's workers) must not share the parent's sockets: it starts empty.
os.register_at_fork(after_in_child=_POOL.clear)


def _message_of(headers: Any) -> HTTPMessage:
    message = HTTPMessage()
    for name, value in headers.items():
        message[name] = value
    return message


def send(request: Request, timeout: float) -> tuple[int, HTTPMessage, bytes]:
    """`urlopen(request)` over a pooled connection: the status, headers and body of a 2xx
    answer; anything else raises as `urlopen` raises."""
    url = request.full_url
    try:
        answer = _POOL.request(
            request.get_method(),
            url,
            body=request.data,  # type: ignore[arg-type]
            headers=dict(request.header_items()),
            timeout=timeout,
            redirect=False,
        )
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise TimeoutError(str(exc)) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise URLError(exc) from exc
    headers = _message_of(answer.headers)
    if not 200 <= answer.status < 300:
        raise HTTPError(url, answer.status, answer.reason or "", headers, io.BytesIO(answer.data))
    return answer.status, headers, answer.data


def _pooled(client: WebClient | WebhookClient) -> bool:
    return client.proxy is None and client.ssl is None


class PooledWebClient(WebClient):
    """slack_sdk's `WebClient`, its calls sent over the pool."""

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if not _pooled(self) or not url.lower().startswith("http"):
            return super()._perform_urllib_http_request_internal(url, req)
        status, headers, body = send(req, self.timeout)
        if headers.get_content_type() == "application/gzip":  # as slack_sdk does
            return {"status": status, "headers": headers, "body": body}
        charset = headers.get_content_charset() or "utf-8"
        return {"status": status, "headers": headers, "body": body.decode(charset)}


class PooledWebhookClient(WebhookClient):
    """slack_sdk's `WebhookClient` (a response_url), its posts sent over the pool."""

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        if not _pooled(self) or not url.lower().startswith("http"):
            return super()._perform_http_request_internal(url, req)  # type: ignore[no-any-return]
        status, headers, body = send(req, self.timeout)
        charset = headers.get_content_charset() or "utf-8"
        return WebhookResponse(url=url, status_code=status, body=body.decode(charset), headers=headers)  # type: ignore[arg-type]
