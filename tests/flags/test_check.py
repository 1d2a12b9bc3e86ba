"""`rollout-bot check` reaches the flag service and says what it found; the flag settings
are checked when the settings are read."""

from __future__ import annotations

import pytest

from bot.cli import cmd_check
from bot.config import ConfigError, load_settings
from tests.flags.conftest import UnleashServer

SLACK = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "secret"}


def test_check_reaches_unleash_and_says_what_it_found(
    unleash_server: UnleashServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(
        {
            **SLACK,
            "FLAG_PROVIDER": "unleash",
            "UNLEASH_URL": unleash_server.url,
            "UNLEASH_API_TOKEN": unleash_server.token,
        }
    )
    assert cmd_check(settings) == 0
    out = capsys.readouterr().out
    assert (
        f"flags: Unleash 6.10.1 at {unleash_server.url}: project default, environment production, token accepted"
        in out
    )


def test_check_says_why_unleash_refused(
    unleash_server: UnleashServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(
        {
            **SLACK,
            "FLAG_PROVIDER": "unleash",
            "UNLEASH_URL": unleash_server.url,
            "UNLEASH_API_TOKEN": "*:*.wrong",
        }
    )
    assert cmd_check(settings) == 1
    assert (
        "flags: Unleash could not be reached: Unleash rejected the API token (401" in capsys.readouterr().err
    )


def test_check_without_a_flag_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_check(load_settings(SLACK)) == 0
    assert "flags: no FLAG_PROVIDER; people set the feature flag" in capsys.readouterr().out


def test_incomplete_flag_settings_stop_at_start() -> None:
    with pytest.raises(ConfigError, match="FLAG_PROVIDER=unleash needs UNLEASH_URL, UNLEASH_API_TOKEN"):
        load_settings({**SLACK, "FLAG_PROVIDER": "unleash"})
    with pytest.raises(ConfigError, match="is not one of: unleash, launchdarkly, none"):
        load_settings({**SLACK, "FLAG_PROVIDER": "flipper"})
    assert (
        load_settings(
            {
                **SLACK,
                "FLAG_PROVIDER": "launchdarkly",
                "LD_API_TOKEN": "t",
                "LD_PROJECT": "p",
                "LD_ENVIRONMENT": "e",
            }
        ).flag_provider
        == "launchdarkly"
    )
