"""Settings are read once from the environment; `serve` names exactly what it is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.config import ConfigError, load_settings
from storage.db import normalize_url


def test_defaults_are_sqlite_in_the_working_directory_and_port_3000() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite:///rollout-bot.db"
    assert settings.port == 3000
    assert settings.slack_api_url == "https://slack.com/api/"
    assert not settings.socket_mode and not settings.datadog_configured


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls_people_paste_are_accepted(given: str, expected: str) -> None:
    assert normalize_url(given) == expected
    assert load_settings({"DATABASE_URL": given}).database_url == expected


def test_slack_api_url_gets_its_trailing_slash() -> None:
    assert (
        load_settings({"SLACK_API_URL": "http://127.0.0.1:9/api"}).slack_api_url == "http://127.0.0.1:9/api/"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "needs SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)"),
        ({"SLACK_SIGNING_SECRET": "s"}, "needs SLACK_BOT_TOKEN in the environment"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-wrong"}, "must be an app-level token"),
    ],
)
def test_serve_names_what_is_missing(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env).require_slack()


def test_socket_mode_needs_no_signing_secret() -> None:
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})
    settings.require_slack()
    assert settings.socket_mode


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be a whole number"),
        ({"PORT": "70000"}, "PORT must be between 1 and 65535"),
        ({"ROLLOUT_TIMEZONE": "Mars/Olympus"}, "is not a time zone name"),
        ({"ROLLOUT_TEMPLATES_DIR": "/no/such/folder"}, "is not a folder"),
    ],
)
def test_bad_values_are_refused_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_serve_refuses_to_start_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "rollout-bot: rollout-bot serve needs SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode) in the environment"
    ]
