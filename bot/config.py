"""Settings from the environment, read and checked once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.observe import Limits
from storage.urls import DEFAULT_URL, normalize_url

DEFAULT_SLACK_API_URL = "https://slack.com/api/"


class ConfigError(ValueError):
    """What is missing or wrong, in one line a person can act on."""


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None
    slack_signing_secret: str | None
    slack_app_token: str | None
    slack_api_url: str
    database_url: str
    port: int
    dd_api_key: str | None
    dd_app_key: str | None
    dd_site: str | None
    dd_api_url: str | None
    default_timezone: str
    default_country: str
    templates_dir: Path | None
    web_concurrency: int
    web_threads: int
    watch_minutes: int
    work_threads: int
    work_processes: int
    embedded_worker: bool
    # Besides whoever imported a template and workspace admins, who may replace or remove it.
    template_editors: frozenset[str] = frozenset()
    # The feature-flag service (bot/flags): its variables as read, checked by provider_from_env.
    flag_env: tuple[tuple[str, str], ...] = ()
    due_seconds: int = 30

    @property
    def flag_provider(self) -> str:
        """ "unleash", "launchdarkly", or "" when the bot leaves the flag to people."""
        choice = dict(self.flag_env).get("FLAG_PROVIDER", "").strip().lower()
        return "" if choice == "none" else choice

    work_lease_seconds: int = 60
    work_attempts: int = 3
    # /readyz: how long without a work-process heartbeat, how old the oldest unclaimed work,
    # and how old the oldest pending announcement may be before the bot is not ready.
    ready_work_silent_seconds: int = 60
    ready_queue_old_seconds: int = 120
    ready_outbox_stuck_seconds: int = 300

    @property
    def ready_limits(self) -> Limits:
        return Limits(
            work_silent_s=self.ready_work_silent_seconds,
            queue_old_s=self.ready_queue_old_seconds,
            outbox_stuck_s=self.ready_outbox_stuck_seconds,
        )

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def datadog_configured(self) -> bool:
        return bool(self.dd_api_key and self.dd_app_key)

    def require_slack(self) -> None:
        """`serve` needs a bot token, and a signing secret in HTTP mode or an app token in
        Socket Mode. Names everything missing at once."""
        missing = ["SLACK_BOT_TOKEN"] if not self.slack_bot_token else []
        if not self.socket_mode and not self.slack_signing_secret:
            missing.append("SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)")
        if missing:
            raise ConfigError(f"rollout-bot serve needs {', '.join(missing)} in the environment")
        if self.slack_app_token and not self.slack_app_token.startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _timezone(env: Mapping[str, str]) -> str:
    name = env.get("ROLLOUT_TIMEZONE", "").strip() or "America/Los_Angeles"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"ROLLOUT_TIMEZONE {name!r} is not a time zone name") from None
    return name


def _api_url(raw: str | None) -> str:
    url = (raw or "").strip() or DEFAULT_SLACK_API_URL
    return url if url.endswith("/") else url + "/"


FLAG_VARIABLES = (
    "FLAG_PROVIDER",
    "UNLEASH_URL",
    "UNLEASH_API_TOKEN",
    "UNLEASH_PROJECT",
    "UNLEASH_ENVIRONMENT",
    "LD_API_TOKEN",
    "LD_PROJECT",
    "LD_ENVIRONMENT",
    "LD_API_URL",
)


def _flag_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The flag variables that are set, checked now so a bad deploy stops at start."""
    from bot.flags import provider_from_env

    found = tuple((name, env[name].strip()) for name in FLAG_VARIABLES if env.get(name, "").strip())
    try:
        provider = provider_from_env(dict(found))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    close = getattr(provider, "close", None)
    if close is not None:
        close()
    return found


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env

    def opt(name: str) -> str | None:
        return env.get(name, "").strip() or None

    templates_dir = opt("ROLLOUT_TEMPLATES_DIR")
    if templates_dir and not Path(templates_dir).is_dir():
        raise ConfigError(f"ROLLOUT_TEMPLATES_DIR {templates_dir!r} is not a folder")
    return Settings(
        slack_bot_token=opt("SLACK_BOT_TOKEN"),
        slack_signing_secret=opt("SLACK_SIGNING_SECRET"),
        slack_app_token=opt("SLACK_APP_TOKEN"),
        slack_api_url=_api_url(opt("SLACK_API_URL")),
        database_url=normalize_url(opt("DATABASE_URL") or DEFAULT_URL),
        port=_int(env, "PORT", 3000, 1, 65535),
        dd_api_key=opt("DD_API_KEY"),
        dd_app_key=opt("DD_APP_KEY"),
        dd_site=opt("DD_SITE"),
        dd_api_url=opt("DD_API_URL"),
        default_timezone=_timezone(env),
        default_country=(opt("ROLLOUT_HOLIDAY_COUNTRY") or "US").upper(),
        templates_dir=Path(templates_dir) if templates_dir else None,
        web_concurrency=_int(env, "WEB_CONCURRENCY", 1, 1, 32),
        web_threads=_int(env, "WEB_THREADS", 16, 1, 256),
        watch_minutes=_int(env, "ROLLOUT_WATCH_MINUTES", 10, 1, 1440),
        work_threads=_int(env, "WORK_THREADS", 8, 1, 128),
        work_processes=_int(env, "WORK_PROCESSES", 1, 1, 16),
        embedded_worker=(opt("ROLLOUT_EMBEDDED_WORKER") or "1") not in ("0", "false", "no", "off"),
        template_editors=frozenset(
            u for u in (opt("ROLLOUT_TEMPLATE_EDITORS") or "").replace(",", " ").split()
        ),
        flag_env=_flag_env(env),
        due_seconds=_int(env, "ROLLOUT_DUE_SECONDS", 30, 1, 3600),
        work_lease_seconds=_int(env, "WORK_LEASE_SECONDS", 60, 1, 3600),
        work_attempts=_int(env, "WORK_ATTEMPTS", 3, 1, 100),
        ready_work_silent_seconds=_int(env, "READY_WORK_SILENT_SECONDS", 60, 1, 86400),
        ready_queue_old_seconds=_int(env, "READY_QUEUE_OLD_SECONDS", 120, 1, 86400),
        ready_outbox_stuck_seconds=_int(env, "READY_OUTBOX_STUCK_SECONDS", 300, 1, 86400),
    )
