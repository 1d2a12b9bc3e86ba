"""Feature-flag providers: the bot's seam to Unleash, LaunchDarkly, or an in-memory store.

``provider_from_env`` builds the configured one from the environment:

    FLAG_PROVIDER        unleash | launchdarkly | none (unset or empty: none)
    UNLEASH_URL          e.g. https://unleash.example.com (required for unleash)
    UNLEASH_API_TOKEN    an admin token (required for unleash)
    UNLEASH_PROJECT      default "default"
    UNLEASH_ENVIRONMENT  default "production"
    LD_API_TOKEN         (required for launchdarkly)
    LD_PROJECT           (required for launchdarkly)
    LD_ENVIRONMENT       (required for launchdarkly)
    LD_API_URL           default https://app.launchdarkly.com

A missing variable is a ValueError naming every missing one, so a deploy is fixed in one go.
This package imports nothing from the rest of the bot (no Slack, no database).
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.flags.base import (
    BOT_STRATEGY_TITLE,
    ApprovalRequired,
    FlagError,
    FlagProvider,
    FlagState,
    valid_flag_key,
    valid_percent,
)
from bot.flags.launchdarkly import DEFAULT_API_URL, LaunchDarklyProvider
from bot.flags.memory import MemoryProvider
from bot.flags.unleash import UnleashProvider

PROVIDERS = ("unleash", "launchdarkly")


def provider_from_env(env: Mapping[str, str]) -> FlagProvider | None:
    """The provider FLAG_PROVIDER names, or None when it names none."""

    def get(name: str) -> str:
        return (env.get(name) or "").strip()

    choice = get("FLAG_PROVIDER").lower()
    if choice in ("", "none"):
        return None
    if choice == "unleash":
        _require(env, "FLAG_PROVIDER=unleash", ["UNLEASH_URL", "UNLEASH_API_TOKEN"])
        return UnleashProvider(
            get("UNLEASH_URL"),
            get("UNLEASH_API_TOKEN"),
            project=get("UNLEASH_PROJECT") or "default",
            environment=get("UNLEASH_ENVIRONMENT") or "production",
        )
    if choice == "launchdarkly":
        _require(env, "FLAG_PROVIDER=launchdarkly", ["LD_API_TOKEN", "LD_PROJECT", "LD_ENVIRONMENT"])
        return LaunchDarklyProvider(
            get("LD_API_TOKEN"),
            project=get("LD_PROJECT"),
            environment=get("LD_ENVIRONMENT"),
            api_url=get("LD_API_URL") or DEFAULT_API_URL,
        )
    raise ValueError(
        f"FLAG_PROVIDER={env.get('FLAG_PROVIDER')!r} is not one of: {', '.join(PROVIDERS)}, none"
    )


def _require(env: Mapping[str, str], why: str, names: list[str]) -> None:
    missing = [name for name in names if not (env.get(name) or "").strip()]
    if missing:
        raise ValueError(f"{why} needs {', '.join(missing)} (not set)")


__all__ = [
    "BOT_STRATEGY_TITLE",
    "ApprovalRequired",
    "FlagError",
    "FlagProvider",
    "FlagState",
    "LaunchDarklyProvider",
    "MemoryProvider",
    "UnleashProvider",
    "provider_from_env",
    "valid_flag_key",
    "valid_percent",
]
