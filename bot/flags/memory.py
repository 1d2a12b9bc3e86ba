"""An in-memory flag service for the terminal shell and tests, with Unleash's semantics.

- Flags exist only after ``create(flag_key)``: the bot never creates flags.
- The bot owns one strategy titled ``Rollout Bot`` (or the one with the remembered id);
  other strategies (``add_strategy``) are never changed by the provider.
- ``switch_on`` behaves like turning an environment on in Unleash's UI: with no active
  (non-disabled) strategy it adds a default strategy at 100 %. The provider itself writes
  its strategy before turning on, so it never hits that.
- ``turn_off`` sets the bot's strategies to 0 % and turns the environment off only when
  no other active strategy is left (see bot/flags/unleash.py for why).
- Rollouts are whole percents unless ``whole_percents=False``.
- Every write through the FlagProvider methods is recorded in ``writes``; ``fail_next``
  makes the next calls raise a given FlagError, to exercise callers' error paths.

Thread-safe: one lock guards all state.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field, replace

from bot.flags.base import (
    BOT_STRATEGY_TITLE,
    FlagError,
    FlagState,
    format_percent,
    require_flag_key,
    require_percent,
)


@dataclass(frozen=True)
class Strategy:
    id: str
    title: str | None
    rollout: float
    disabled: bool = False
    constraints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Write:
    """One change the provider made: op is "create-strategy", "update-strategy", "on" or "off"."""

    op: str
    flag_key: str
    strategy_id: str | None = None
    percent: float | None = None


@dataclass
class _Flag:
    enabled: bool = False
    strategies: list[Strategy] = field(default_factory=list)


class MemoryProvider:
    """The FlagProvider kept in memory."""

    name = "Memory"

    def __init__(self, *, environment: str = "production", whole_percents: bool = True) -> None:
        self.environment = environment
        self.whole_percents = whole_percents
        self._lock = threading.Lock()
        self._flags: dict[str, _Flag] = {}
        self._writes: list[Write] = []
        self._failures: list[FlagError] = []
        self._ids = itertools.count(1)

    # --- setting the scene (not part of FlagProvider) ------------------------------------

    def create(self, flag_key: str, *, enabled: bool = False) -> None:
        require_flag_key(flag_key)
        with self._lock:
            if flag_key in self._flags:
                raise ValueError(f"flag {flag_key} already exists")
            self._flags[flag_key] = _Flag(enabled=enabled)

    def add_strategy(
        self,
        flag_key: str,
        *,
        title: str | None = None,
        rollout: float = 100,
        disabled: bool = False,
        constraints: tuple[str, ...] = (),
    ) -> str:
        """A strategy someone else put on the flag; returns its id."""
        with self._lock:
            flag = self._flag(flag_key)
            strategy = Strategy(self._new_id(), title, float(rollout), disabled, constraints)
            flag.strategies.append(strategy)
            return strategy.id

    def switch_on(self, flag_key: str) -> None:
        """A person turns the environment on in the UI (Unleash adds 100 % if nothing is active)."""
        with self._lock:
            flag = self._flag(flag_key)
            if not any(not s.disabled for s in flag.strategies):
                flag.strategies.append(Strategy(self._new_id(), None, 100.0))
            flag.enabled = True

    def strategies(self, flag_key: str) -> list[Strategy]:
        with self._lock:
            return list(self._flag(flag_key).strategies)

    @property
    def writes(self) -> list[Write]:
        with self._lock:
            return list(self._writes)

    def fail_next(self, error: FlagError, *, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([error] * times)

    # --- FlagProvider ------------------------------------------------------------------------

    def read(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        with self._lock:
            self._maybe_fail()
            flag = self._flags.get(flag_key)
            if flag is None:
                return FlagState.missing(f"no flag {flag_key} in memory")
            return self._state(flag_key, flag, strategy_id)

    def set_percent(self, flag_key: str, percent: float, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        percent = require_percent(percent)
        if self.whole_percents and percent != int(percent):
            raise FlagError(f"Unleash rollouts are whole percents; {format_percent(percent)} % is not one")
        with self._lock:
            self._maybe_fail()
            flag = self._existing(flag_key)
            owned = _owned(flag, strategy_id)
            if len(owned) > 1:
                raise FlagError(
                    f"{flag_key} has {len(owned)} strategies titled {BOT_STRATEGY_TITLE!r}; "
                    "delete all but one, then try again"
                )
            if owned:
                mine = replace(owned[0], rollout=percent, disabled=False)
                flag.strategies = [mine if s.id == mine.id else s for s in flag.strategies]
                self._writes.append(Write("update-strategy", flag_key, mine.id, percent))
            else:
                mine = Strategy(self._new_id(), BOT_STRATEGY_TITLE, percent)
                flag.strategies.append(mine)
                self._writes.append(Write("create-strategy", flag_key, mine.id, percent))
            if percent > 0 and not flag.enabled:
                flag.enabled = True
                self._writes.append(Write("on", flag_key))
            return self._state(flag_key, flag, mine.id)

    def turn_off(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        with self._lock:
            self._maybe_fail()
            flag = self._existing(flag_key)
            owned_ids = {s.id for s in _owned(flag, strategy_id)}
            if not owned_ids:
                state = self._state(flag_key, flag, strategy_id)
                note = f"{BOT_STRATEGY_TITLE} has no strategy on {flag_key}: nothing to roll back"
                return replace(state, detail=f"{state.detail}; {note}")
            for index, strategy in enumerate(flag.strategies):
                if strategy.id in owned_ids:
                    flag.strategies[index] = replace(strategy, rollout=0.0, disabled=False)
                    self._writes.append(Write("update-strategy", flag_key, strategy.id, 0.0))
            others_active = any(s.id not in owned_ids and not s.disabled for s in flag.strategies)
            if flag.enabled and not others_active:
                flag.enabled = False
                self._writes.append(Write("off", flag_key))
            first = next(s.id for s in flag.strategies if s.id in owned_ids)
            return self._state(flag_key, flag, first)

    def check(self) -> str:
        with self._lock:
            self._maybe_fail()
            return f"in-memory flags ({len(self._flags)} flags), environment {self.environment}"

    def link(self, flag_key: str) -> str | None:
        return None

    # --- helpers (the lock is held) ---------------------------------------------------------

    def _new_id(self) -> str:
        return f"memory-strategy-{next(self._ids)}"

    def _flag(self, flag_key: str) -> _Flag:
        flag = self._flags.get(flag_key)
        if flag is None:
            raise KeyError(f"no flag {flag_key}: create() it first")
        return flag

    def _existing(self, flag_key: str) -> _Flag:
        flag = self._flags.get(flag_key)
        if flag is None:
            raise FlagError(f"flag {flag_key} does not exist in the in-memory flag store", status=404)
        return flag

    def _maybe_fail(self) -> None:
        if self._failures:
            raise self._failures.pop(0)

    def _state(self, flag_key: str, flag: _Flag, strategy_id: str | None) -> FlagState:
        owned = _owned(flag, strategy_id)
        words = [f"{flag_key} is {'on' if flag.enabled else 'off'} in {self.environment}"]
        percent: float | None = None
        owned_id: str | None = None
        if owned:
            owned_id = owned[0].id
            percent = 0.0 if owned[0].disabled else owned[0].rollout
            words.append(f"{BOT_STRATEGY_TITLE} at {format_percent(owned[0].rollout)} %")
        else:
            words.append(f"no {BOT_STRATEGY_TITLE} strategy")
        others = [s for s in flag.strategies if s not in owned]
        if others:
            words.append(f"{len(others)} other strateg{'y' if len(others) == 1 else 'ies'}")
        return FlagState(True, flag.enabled, percent, owned_id, "; ".join(words))


def _owned(flag: _Flag, strategy_id: str | None) -> list[Strategy]:
    if strategy_id:
        by_id = [s for s in flag.strategies if s.id == strategy_id]
        if by_id:
            return by_id
    return [s for s in flag.strategies if s.title == BOT_STRATEGY_TITLE]
