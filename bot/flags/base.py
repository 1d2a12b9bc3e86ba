"""The seam between the bot and a feature-flag service (Unleash, LaunchDarkly, in memory).

Rules every provider keeps:

- A provider changes only what the bot owns on a flag: in Unleash the strategy titled
  ``Rollout Bot`` (or the one whose id the caller remembered), in LaunchDarkly the default
  rule (fallthrough). Whatever else a team keeps on the flag stays as it is.
- ``set_percent`` never exposes more than the asked percentage, not even for a moment:
  the rollout is written before the flag is turned on.
- Every failure is a ``FlagError`` whose ``reason`` is a sentence a Slack user can act on,
  and whose ``retryable`` says whether trying the same call again later may succeed
  (timeouts, refused connections, 5xx, rate limits) or not (bad token, missing flag,
  approval required, invalid input).
- Flag keys and percentages are checked here before any request: a key goes into URL
  paths, so only the characters Unleash and LaunchDarkly both allow are accepted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

BOT_STRATEGY_TITLE = "Rollout Bot"
MAX_FLAG_KEY_LENGTH = 100

_FLAG_KEY = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class FlagState:
    """What a flag says in the provider's configured environment.

    ``enabled`` is the environment's on/off switch. ``percent`` is the bot's own rollout
    (its strategy or default rule), None when the bot has none there. ``strategy_id`` is
    what the caller should remember to find the bot's rollout again."""

    exists: bool
    enabled: bool
    percent: float | None
    strategy_id: str | None
    detail: str = ""

    @classmethod
    def missing(cls, detail: str = "") -> FlagState:
        return cls(exists=False, enabled=False, percent=None, strategy_id=None, detail=detail)


class FlagError(Exception):
    """A flag operation failed. ``reason`` is written for the person who asked for it."""

    def __init__(self, reason: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status  # the HTTP status, when there was one

    @property
    def approval_required(self) -> bool:
        return False


class ApprovalRequired(FlagError):
    """The environment only accepts this change through an approval request (LaunchDarkly 405)."""

    def __init__(self, reason: str, *, status: int | None = 405) -> None:
        super().__init__(reason, retryable=False, status=status)

    @property
    def approval_required(self) -> bool:
        return True


@runtime_checkable
class FlagProvider(Protocol):
    """A feature-flag service, bound to one project and one environment."""

    @property
    def name(self) -> str:
        """The service's name for messages, e.g. "Unleash"."""
        ...

    def read(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        """The flag's state; ``FlagState(exists=False, ...)`` when there is no such flag."""
        ...

    def set_percent(self, flag_key: str, percent: float, *, strategy_id: str | None = None) -> FlagState:
        """Roll the flag out to ``percent`` (0..100) and turn it on when needed."""
        ...

    def turn_off(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        """Roll the bot's rollout back; what else that does is the provider's documented rule."""
        ...

    def check(self) -> str:
        """Reach the service and say in one line what was found (raises FlagError)."""
        ...

    def link(self, flag_key: str) -> str | None:
        """The flag's page in the service's UI, if it has one."""
        ...


def valid_flag_key(key: object) -> bool:
    """Letters, digits, ``.``, ``_`` and ``-``; 1 to 100 characters."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_FLAG_KEY_LENGTH
        and key.isascii()
        and _FLAG_KEY.fullmatch(key) is not None
    )


def valid_percent(percent: object) -> bool:
    """A finite number from 0 to 100 (bools are not numbers here)."""
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        return False
    return math.isfinite(percent) and 0 <= percent <= 100


def require_flag_key(key: str) -> str:
    if not valid_flag_key(key):
        shown = key if isinstance(key, str) and len(key) <= MAX_FLAG_KEY_LENGTH else f"{str(key)[:40]}…"
        raise FlagError(
            f"{shown!r} is not a valid flag key: use letters, digits, '.', '_' or '-', "
            f"at most {MAX_FLAG_KEY_LENGTH} characters"
        )
    return key


def require_percent(percent: float) -> float:
    if not valid_percent(percent):
        raise FlagError(f"{percent!r} is not a rollout percentage: use a number from 0 to 100")
    return float(percent)


def format_percent(percent: float) -> str:
    """25.0 -> "25", 2.5 -> "2.5": the way people write percentages."""
    return f"{percent:g}"
