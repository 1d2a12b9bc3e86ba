"""The one Slack Web API client: base URL from SLACK_API_URL, retries that honour Retry-After,
connections kept alive and shared by the process's threads (bot/slackweb/transport.py)."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.errors import NotInChannel
from bot.slackweb.transport import PooledWebClient

log = logging.getLogger(__name__)

# Errors that no retry will fix: the channel is gone, archived, or closed to the bot.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "msg_too_long",
        "invalid_blocks",
        "no_text",
        "restricted_action",
    }
)


def make_client(token: str | None, base_url: str, *, max_retries: int = 2, timeout: int = 10) -> WebClient:
    # Calls go over the process's kept-alive connections (bot/slackweb/transport.py).
    client = PooledWebClient(token=token, base_url=base_url, timeout=timeout)
    client.retry_handlers.extend(
        [
            RateLimitErrorRetryHandler(max_retry_count=max_retries),
            ServerErrorRetryHandler(max_retry_count=max_retries),
        ]
    )
    # ConnectionErrorRetryHandler is there by default; keep its count in line with the others.
    for handler in client.retry_handlers:
        if isinstance(handler, ConnectionErrorRetryHandler):
            handler.max_retry_count = max_retries
    return client


def error_code(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    if isinstance(data, dict):
        return str(data.get("error", "unknown_error"))
    return f"http_{exc.response.status_code}" if exc.response is not None else "unknown_error"


def post_joining(client: WebClient, *, channel: str, **kwargs: Any) -> str:
    """Posts a message; if the bot is not in a public channel it joins and tries once more.

    Returns the message ts. Raises NotInChannel when it cannot join (a private channel needs
    `/invite @Rollout Bot`)."""
    try:
        return str(client.chat_postMessage(channel=channel, **kwargs)["ts"])
    except SlackApiError as exc:
        if error_code(exc) != "not_in_channel":
            raise
    try:
        client.conversations_join(channel=channel)
    except SlackApiError as join_error:
        log.info("cannot join %s: %s", channel, error_code(join_error))
        raise NotInChannel(channel) from join_error
    return str(client.chat_postMessage(channel=channel, **kwargs)["ts"])


def is_workspace_admin(client: WebClient, user_id: str) -> bool:
    """Admins and owners of the workspace may steer any rollout. If Slack cannot say, the
    answer is no: a refusal is safer than a wrong yes."""
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError as exc:
        log.warning("users.info for %s failed: %s", user_id, error_code(exc))
        return False
    return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
