"""The behaviour every Unleash-like provider must show, against the real Unleash and the
in-memory provider alike. Each scene is set and read back through the service itself
(Unleash's admin API, or the memory store's own view), never through the provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from bot.flags import BOT_STRATEGY_TITLE, FlagError, FlagProvider
from bot.flags.memory import MemoryProvider
from tests.flags.conftest import UnleashAdmin


@dataclass(frozen=True)
class Seen:
    """One strategy as the service reports it."""

    id: str
    title: str | None
    rollout: float
    disabled: bool
    constraints: Any


class World(Protocol):
    provider: FlagProvider

    def create_flag(self) -> str: ...
    def add_team_strategy(self, flag: str) -> str: ...
    def disable_strategy(self, flag: str, strategy: Seen) -> None: ...
    def person_turns_on(self, flag: str) -> None: ...
    def strategies(self, flag: str) -> list[Seen]: ...
    def enabled(self, flag: str) -> bool: ...


TEAM_USERS = ["alice@example.com", "bob@example.com"]


class UnleashWorld:
    def __init__(self, provider: FlagProvider, admin: UnleashAdmin) -> None:
        self.provider = provider
        self.admin = admin

    def create_flag(self) -> str:
        return self.admin.create_flag()

    def add_team_strategy(self, flag: str) -> str:
        # A team's "internal users" strategy: 100 % for two userIds.
        return self.admin.add_strategy(
            flag,
            {
                "name": "flexibleRollout",
                "title": "Internal users",
                "parameters": {"rollout": "100", "stickiness": "default", "groupId": flag},
                "constraints": [
                    {"contextName": "userId", "operator": "IN", "values": TEAM_USERS, "inverted": False}
                ],
            },
        )

    def disable_strategy(self, flag: str, strategy: Seen) -> None:
        raw = next(s for s in self.admin.strategies(flag) if s["id"] == strategy.id)
        self.admin.update_strategy(
            flag,
            strategy.id,
            {"name": raw["name"], "title": raw["title"], "parameters": raw["parameters"], "disabled": True},
        )

    def person_turns_on(self, flag: str) -> None:
        self.admin.switch(flag, "on")

    def strategies(self, flag: str) -> list[Seen]:
        return [
            Seen(
                s["id"],
                s.get("title"),
                float(s["parameters"]["rollout"]),
                bool(s.get("disabled")),
                [(c["contextName"], c["operator"], sorted(c["values"])) for c in s.get("constraints") or []],
            )
            for s in self.admin.strategies(flag)
        ]

    def enabled(self, flag: str) -> bool:
        return self.admin.enabled(flag)


class MemoryWorld:
    def __init__(self, provider: MemoryProvider) -> None:
        self.provider: FlagProvider = provider
        self.memory = provider
        self.count = 0

    def create_flag(self) -> str:
        self.count += 1
        name = f"rb-test-memory-{self.count}"
        self.memory.create(name)
        return name

    def add_team_strategy(self, flag: str) -> str:
        return self.memory.add_strategy(
            flag, title="Internal users", rollout=100, constraints=tuple(f"userId IN {u}" for u in TEAM_USERS)
        )

    def disable_strategy(self, flag: str, strategy: Seen) -> None:
        # The memory store has no UI; reach in the way a person's edit would land.
        with self.memory._lock:
            stored = self.memory._flags[flag]
            stored.strategies = [
                type(s)(s.id, s.title, s.rollout, True, s.constraints) if s.id == strategy.id else s
                for s in stored.strategies
            ]

    def person_turns_on(self, flag: str) -> None:
        self.memory.switch_on(flag)

    def strategies(self, flag: str) -> list[Seen]:
        return [
            Seen(s.id, s.title, s.rollout, s.disabled, list(s.constraints))
            for s in self.memory.strategies(flag)
        ]

    def enabled(self, flag: str) -> bool:
        state = self.memory.read(flag)
        return state.enabled


@pytest.fixture(params=["unleash", "memory"])
def world(request: pytest.FixtureRequest) -> World:
    if request.param == "unleash":
        provider = request.getfixturevalue("unleash")
        admin = request.getfixturevalue("unleash_admin")
        return UnleashWorld(provider, admin)
    return MemoryWorld(request.getfixturevalue("memory"))


def _bot(world: World, flag: str) -> list[Seen]:
    return [s for s in world.strategies(flag) if s.title == BOT_STRATEGY_TITLE]


def test_a_new_flag_exists_with_no_bot_strategy(world: World) -> None:
    flag = world.create_flag()
    state = world.provider.read(flag)
    assert state.exists
    assert not state.enabled
    assert state.percent is None
    assert state.strategy_id is None


def test_one_percent_creates_the_bot_strategy_then_turns_on(world: World) -> None:
    flag = world.create_flag()
    state = world.provider.set_percent(flag, 1)
    [mine] = world.strategies(flag)
    assert mine.title == BOT_STRATEGY_TITLE
    assert mine.rollout == 1
    assert not mine.disabled
    assert world.enabled(flag)
    assert state.enabled and state.percent == 1 and state.strategy_id == mine.id
    assert world.provider.read(flag) == state


@pytest.mark.parametrize("remember", [True, False], ids=["remembered-id", "found-by-title"])
def test_twenty_five_percent_updates_the_same_strategy(world: World, remember: bool) -> None:
    flag = world.create_flag()
    first = world.provider.set_percent(flag, 1)
    second = world.provider.set_percent(flag, 25, strategy_id=first.strategy_id if remember else None)
    [mine] = world.strategies(flag)
    assert mine.id == first.strategy_id == second.strategy_id
    assert mine.rollout == 25
    assert second.percent == 25 and world.enabled(flag)


def test_the_remembered_id_wins_over_the_title(world: World) -> None:
    flag = world.create_flag()
    first = world.provider.set_percent(flag, 1)
    assert first.strategy_id is not None
    # Someone renames the bot's strategy; the id still finds it, and nothing new is made.
    renamed = _rename(world, flag, first.strategy_id, "Canary (managed by the bot)")
    state = world.provider.set_percent(flag, 50, strategy_id=first.strategy_id)
    assert [s.id for s in world.strategies(flag)] == [first.strategy_id]
    assert world.strategies(flag)[0].rollout == 50
    assert state.strategy_id == first.strategy_id and renamed


def _rename(world: World, flag: str, strategy_id: str, title: str) -> bool:
    if isinstance(world, UnleashWorld):
        raw = next(s for s in world.admin.strategies(flag) if s["id"] == strategy_id)
        world.admin.update_strategy(
            flag, strategy_id, {"name": raw["name"], "title": title, "parameters": raw["parameters"]}
        )
    else:
        assert isinstance(world, MemoryWorld)
        with world.memory._lock:
            stored = world.memory._flags[flag]
            stored.strategies = [
                type(s)(s.id, title, s.rollout, s.disabled, s.constraints) if s.id == strategy_id else s
                for s in stored.strategies
            ]
    return [s.title for s in world.strategies(flag)] == [title]


def test_a_team_strategy_is_left_untouched_through_set_and_off(world: World) -> None:
    flag = world.create_flag()
    team_id = world.add_team_strategy(flag)
    before = next(s for s in world.strategies(flag) if s.id == team_id)

    world.provider.set_percent(flag, 1)
    world.provider.set_percent(flag, 25)
    assert next(s for s in world.strategies(flag) if s.id == team_id) == before

    state = world.provider.turn_off(flag)
    assert next(s for s in world.strategies(flag) if s.id == team_id) == before
    [mine] = _bot(world, flag)
    assert mine.rollout == 0 and not mine.disabled
    # The team's internal users keep the flag: the environment stays on.
    assert world.enabled(flag) and state.enabled and state.percent == 0
    assert len(world.strategies(flag)) == 2


def test_turning_on_never_yields_a_hundred_percent(world: World) -> None:
    # The trap is real: a person turning on an empty environment gets 100 %.
    trap = world.create_flag()
    world.person_turns_on(trap)
    assert [s.rollout for s in world.strategies(trap)] == [100]

    flag = world.create_flag()
    world.provider.set_percent(flag, 5)
    assert world.enabled(flag)
    assert [(s.title, s.rollout) for s in world.strategies(flag)] == [(BOT_STRATEGY_TITLE, 5)]


def test_a_disabled_bot_strategy_is_re_enabled_before_turning_on(world: World) -> None:
    # A disabled strategy does not count as active: turning on would add 100 %.
    flag = world.create_flag()
    world.provider.set_percent(flag, 0)
    [mine] = world.strategies(flag)
    world.disable_strategy(flag, mine)
    assert world.provider.read(flag).percent == 0

    state = world.provider.set_percent(flag, 1)
    assert [(s.id, s.rollout, s.disabled) for s in world.strategies(flag)] == [(mine.id, 1, False)]
    assert world.enabled(flag) and state.percent == 1


def test_off_alone_sets_zero_and_turns_the_environment_off(world: World) -> None:
    flag = world.create_flag()
    on = world.provider.set_percent(flag, 25)
    state = world.provider.turn_off(flag, strategy_id=on.strategy_id)
    [mine] = world.strategies(flag)
    assert (mine.id, mine.rollout, mine.disabled) == (on.strategy_id, 0, False)
    assert not world.enabled(flag)
    assert (state.enabled, state.percent, state.strategy_id) == (False, 0, on.strategy_id)
    # The kept 0 % strategy is still active, so a person turning the flag back on gets 0 %, not 100 %.
    world.person_turns_on(flag)
    assert [s.rollout for s in world.strategies(flag)] == [0]


def test_off_with_no_bot_strategy_changes_nothing(world: World) -> None:
    flag = world.create_flag()
    world.add_team_strategy(flag)
    world.person_turns_on(flag)
    before = (world.strategies(flag), world.enabled(flag))
    state = world.provider.turn_off(flag)
    assert (world.strategies(flag), world.enabled(flag)) == before
    assert state.percent is None and state.enabled
    assert "nothing to roll back" in state.detail


def test_zero_percent_on_an_off_flag_does_not_turn_it_on(world: World) -> None:
    flag = world.create_flag()
    state = world.provider.set_percent(flag, 0)
    assert not world.enabled(flag) and not state.enabled
    assert [s.rollout for s in world.strategies(flag)] == [0]


def test_a_missing_flag_reads_as_missing_and_cannot_be_set(world: World) -> None:
    flag = "rb-test-never-created"
    state = world.provider.read(flag)
    assert not state.exists and state.percent is None
    changes: list[Callable[[], object]] = [
        lambda: world.provider.set_percent(flag, 1),
        lambda: world.provider.turn_off(flag),
    ]
    for change in changes:
        with pytest.raises(FlagError) as raised:
            change()
        assert not raised.value.retryable
        assert f"flag {flag} does not exist" in raised.value.reason


@pytest.mark.parametrize("percent", [2.5, -1, 101, float("nan"), float("inf")])
def test_percent_outside_whole_zero_to_hundred_is_refused_before_any_write(
    world: World, percent: float
) -> None:
    flag = world.create_flag()
    with pytest.raises(FlagError) as raised:
        world.provider.set_percent(flag, percent)
    assert not raised.value.retryable
    assert world.strategies(flag) == [] and not world.enabled(flag)


@pytest.mark.parametrize("key", ["", "has space", "slash/evil", "../admin", "x" * 101, "naïve"])
def test_invalid_flag_keys_are_refused(world: World, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: world.provider.read(key),
        lambda: world.provider.set_percent(key, 1),
        lambda: world.provider.turn_off(key),
    ]
    for call in calls:
        with pytest.raises(FlagError, match="not a valid flag key"):
            call()


def test_check_reaches_the_service(world: World) -> None:
    line = world.provider.check()
    assert "production" in line and "\n" not in line
