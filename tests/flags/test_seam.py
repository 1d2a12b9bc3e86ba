"""The seam itself: key and percent checks, provider_from_env, import hygiene, memory's extras."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from bot.flags import (
    FlagError,
    FlagProvider,
    LaunchDarklyProvider,
    MemoryProvider,
    UnleashProvider,
    provider_from_env,
    valid_flag_key,
    valid_percent,
)
from bot.flags.memory import Write


@pytest.mark.parametrize("key", ["a", "checkout.v2", "new_UI-2024", "x" * 100, "0"])
def test_valid_flag_keys(key: str) -> None:
    assert valid_flag_key(key)


@pytest.mark.parametrize("key", ["", "x" * 101, "a b", "a/b", "a?b", "a%2Fb", "ünïcode", "a\n", None, 5])
def test_invalid_flag_keys(key: object) -> None:
    assert not valid_flag_key(key)


@pytest.mark.parametrize("percent", [0, 1, 25, 50.5, 100, 0.001])
def test_valid_percents(percent: float) -> None:
    assert valid_percent(percent)


@pytest.mark.parametrize(
    "percent", [-0.1, 100.01, float("nan"), float("inf"), -float("inf"), True, "25", None]
)
def test_invalid_percents(percent: object) -> None:
    assert not valid_percent(percent)


def test_no_provider_unless_one_is_named() -> None:
    assert provider_from_env({}) is None
    assert provider_from_env({"FLAG_PROVIDER": ""}) is None
    assert provider_from_env({"FLAG_PROVIDER": "none"}) is None


def test_unleash_from_env_with_defaults() -> None:
    provider = provider_from_env(
        {"FLAG_PROVIDER": "Unleash", "UNLEASH_URL": "https://u.example/", "UNLEASH_API_TOKEN": "*:*.x"}
    )
    assert isinstance(provider, UnleashProvider) and isinstance(provider, FlagProvider)
    assert (provider.url, provider.project, provider.environment) == (
        "https://u.example",
        "default",
        "production",
    )


def test_launchdarkly_from_env() -> None:
    provider = provider_from_env(
        {
            "FLAG_PROVIDER": "launchdarkly",
            "LD_API_TOKEN": "api-x",
            "LD_PROJECT": "web",
            "LD_ENVIRONMENT": "prod",
        }
    )
    assert isinstance(provider, LaunchDarklyProvider)
    assert (provider.api_url, provider.project, provider.environment) == (
        "https://app.launchdarkly.com",
        "web",
        "prod",
    )


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"FLAG_PROVIDER": "unleash"}, "UNLEASH_URL, UNLEASH_API_TOKEN"),
        ({"FLAG_PROVIDER": "unleash", "UNLEASH_URL": "http://u"}, "UNLEASH_API_TOKEN"),
        ({"FLAG_PROVIDER": "launchdarkly"}, "LD_API_TOKEN, LD_PROJECT, LD_ENVIRONMENT"),
        (
            {"FLAG_PROVIDER": "launchdarkly", "LD_PROJECT": "p", "LD_API_TOKEN": " "},
            "LD_API_TOKEN, LD_ENVIRONMENT",
        ),
    ],
)
def test_every_missing_variable_is_named(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ValueError, match=f"needs {missing} \\(not set\\)"):
        provider_from_env(env)


def test_an_unknown_provider_is_an_error() -> None:
    with pytest.raises(ValueError, match="'flagsmith' is not one of: unleash, launchdarkly, none"):
        provider_from_env({"FLAG_PROVIDER": "flagsmith"})


def test_the_package_imports_nothing_else_of_the_bot() -> None:
    code = (
        "import sys, bot.flags\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('slack_bolt', 'slack_sdk', 'sqlalchemy')"
        " or (m.startswith('bot.') and not m.startswith('bot.flags')))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_memory_records_every_write_and_can_fail_on_demand() -> None:
    memory = MemoryProvider()
    memory.create("f")
    on = memory.set_percent("f", 1)
    memory.set_percent("f", 25, strategy_id=on.strategy_id)
    memory.turn_off("f")
    sid = on.strategy_id
    assert memory.writes == [
        Write("create-strategy", "f", sid, 1.0),
        Write("on", "f"),
        Write("update-strategy", "f", sid, 25.0),
        Write("update-strategy", "f", sid, 0.0),
        Write("off", "f"),
    ]
    memory.fail_next(FlagError("Unleash failed with 503; try again shortly", retryable=True))
    with pytest.raises(FlagError, match="503"):
        memory.set_percent("f", 50)
    assert memory.set_percent("f", 50).percent == 50
    with pytest.raises(ValueError):
        memory.create("f")


def test_memory_is_thread_safe() -> None:
    memory = MemoryProvider()
    for i in range(8):
        memory.create(f"f{i}")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for percent in range(0, 101, 5):
                memory.set_percent(f"f{i % 8}", percent)
        except (FlagError, KeyError, ValueError) as error:  # collected for the test thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # However the calls interleaved, each flag ends with exactly one bot strategy.
    for i in range(8):
        assert [s.title for s in memory.strategies(f"f{i}")] == ["Rollout Bot"]
        assert memory.read(f"f{i}").percent == 100
