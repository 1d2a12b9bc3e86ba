"""What flows need from the outside world, built once at start and handed to listeners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from slack_sdk import WebClient

from bot.config import Settings
from bot.flags import FlagProvider
from bot.metrics import MetricsSource
from storage.db import Database


@dataclass(frozen=True)
class Actor:
    """Who acts, in which workspace and channel."""

    team_id: str
    user_id: str
    channel_id: str


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Database
    client: WebClient
    clock: Callable[[], datetime] = utc_now
    metrics: MetricsSource | None = None  # None: Datadog not configured, every metric is "no data"
    # The outbox retries on its own schedule (and checks Slack before reposting), so its
    # client must not also retry and sleep inside a lease; None: use `client`.
    outbox_client: WebClient | None = None
    # The feature-flag service; None: people set the flag, the bot only coordinates.
    flags: FlagProvider | None = None

    @property
    def delivery_client(self) -> WebClient:
        return self.outbox_client or self.client
