"""Unleash (unleash-server 6.x) through its admin API, for one project and one environment.

What the bot owns: one ``flexibleRollout`` strategy in the environment, titled
``Rollout Bot`` (found by the id the caller remembered, else by that title). Every other
strategy on the flag belongs to a team and is never changed.

set_percent(flag, N):
  1. read the flag (404: it does not exist in the project; the bot never creates flags);
  2. update the bot's strategy to N (PUT), or create it (POST) when there is none. The
     update keeps the strategy's stickiness and groupId, because changing either reshuffles
     which users are in the rollout, and re-enables it when someone disabled it;
  3. only then, if N > 0 and the environment is off, turn the environment on.
  The order matters: Unleash adds a default strategy at 100 % when an environment is turned
  on without an active (non-disabled) strategy. With the bot's strategy written and enabled
  first, turning on never exposes more than N %.

turn_off(flag) -- the rollback:
  1. set every strategy the bot owns to 0 % (kept, and kept enabled: a strategy that is
     deleted or disabled no longer counts as active, so whoever turns the environment on
     next would get Unleash's default 100 % strategy);
  2. turn the environment off only when no other active strategy is left on it. When a
     team keeps its own strategy there (say, internal users by userId), the environment
     stays on so their strategy keeps working: rolling back the bot's rollout must not
     switch off a team's internal testing. When the bot's strategy was the only one,
     turning the environment off makes the flag read "off" in Unleash's UI and lets
     SDKs skip evaluating it.
  A flag with no bot strategy has nothing to roll back: no writes.

Rollouts are whole percents: Unleash stores "2.5", but its SDKs are not all sure to read
fractions the same way, so the bot does not write them.

Errors: 401/403 (the token), 404 (flag, project or environment), 409, 429, 5xx,
timeouts and refused connections become FlagErrors with Unleash's own message where it
gave one; 5xx, 429, timeouts and connection failures are retryable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bot.flags._http import CONNECT_TIMEOUT, READ_TIMEOUT, Answer, JsonClient
from bot.flags.base import (
    BOT_STRATEGY_TITLE,
    FlagError,
    FlagState,
    format_percent,
    require_flag_key,
    require_percent,
)

STRATEGY_NAME = "flexibleRollout"


class UnleashProvider:
    """The FlagProvider for Unleash. Thread-safe; one connection pool per provider."""

    name = "Unleash"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        project: str = "default",
        environment: str = "production",
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.environment = environment
        self._http = JsonClient(
            "Unleash",
            self.url,
            {"Authorization": token},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    # --- FlagProvider ---------------------------------------------------------------

    def read(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        feature = self._feature(flag_key)
        if feature is None:
            return FlagState.missing(f"no flag {flag_key} in Unleash project {self.project}")
        return self._state(flag_key, self._environment_of(flag_key, feature), strategy_id)

    def set_percent(self, flag_key: str, percent: float, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        percent = require_percent(percent)
        if percent != int(percent):
            raise FlagError(f"Unleash rollouts are whole percents; {format_percent(percent)} % is not one")
        environment = self._existing_environment(flag_key)
        owned = _owned(environment, strategy_id)
        if len(owned) > 1:
            ids = ", ".join(str(s.get("id")) for s in owned)
            raise FlagError(
                f"{flag_key} has {len(owned)} strategies titled {BOT_STRATEGY_TITLE!r} in "
                f"{self.environment} ({ids}); delete all but one in Unleash, then try again"
            )
        rollout = str(int(percent))
        if owned:
            strategy = self._update_strategy(flag_key, owned[0], rollout)
        else:
            strategy = self._create_strategy(flag_key, rollout)
        strategies = [s for s in _strategies(environment) if s.get("id") != strategy.get("id")]
        strategies.append(strategy)
        enabled = bool(environment.get("enabled"))
        if percent > 0 and not enabled:
            # Safe only now: the bot's enabled strategy keeps Unleash from adding its own.
            self._switch(flag_key, "on")
            enabled = True
        return self._state(
            flag_key,
            {**environment, "enabled": enabled, "strategies": strategies},
            str(strategy.get("id")),
        )

    def turn_off(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        environment = self._existing_environment(flag_key)
        owned = _owned(environment, strategy_id)
        if not owned:
            state = self._state(flag_key, environment, strategy_id)
            note = f"{BOT_STRATEGY_TITLE} has no strategy on {flag_key} in {self.environment}: nothing to roll back"
            return _with_detail(state, note)
        written = {str(s.get("id")): self._update_strategy(flag_key, s, "0") for s in owned}
        strategies = [written.get(str(s.get("id")), s) for s in _strategies(environment)]
        others_active = [s for s in strategies if str(s.get("id")) not in written and not s.get("disabled")]
        enabled = bool(environment.get("enabled"))
        if enabled and not others_active:
            self._switch(flag_key, "off")
            enabled = False
        return self._state(
            flag_key,
            {**environment, "enabled": enabled, "strategies": strategies},
            str(owned[0].get("id")),
        )

    def check(self) -> str:
        answer = self._http.request("GET", f"/api/admin/projects/{_seg(self.project)}")
        if answer.status == 404:
            raise FlagError(f"Unleash at {self.url} has no project {self.project!r} (UNLEASH_PROJECT)")
        self._raise_for(answer, what=f"project {self.project}")
        environments = [
            e.get("environment") for e in _list(_dict(answer.body).get("environments")) if isinstance(e, dict)
        ]
        if self.environment not in environments:
            raise FlagError(
                f"Unleash project {self.project} does not have environment {self.environment!r} "
                f"(it has: {', '.join(map(str, environments)) or 'none'}; UNLEASH_ENVIRONMENT)"
            )
        version = ""
        config = self._http.request("GET", "/api/admin/ui-config")
        if config.status == 200:
            version = str(_dict(config.body).get("version") or "")
        shown = f"Unleash {version}".strip()
        return (
            f"{shown} at {self.url}: project {self.project}, environment {self.environment}, token accepted"
        )

    def link(self, flag_key: str) -> str | None:
        if not isinstance(flag_key, str) or not flag_key:
            return None
        return f"{self.url}/projects/{_seg(self.project)}/features/{_seg(flag_key)}"

    def close(self) -> None:
        self._http.close()

    # --- requests ---------------------------------------------------------------------

    def _feature_path(self, flag_key: str) -> str:
        return f"/api/admin/projects/{_seg(self.project)}/features/{_seg(flag_key)}"

    def _environment_path(self, flag_key: str) -> str:
        return f"{self._feature_path(flag_key)}/environments/{_seg(self.environment)}"

    def _feature(self, flag_key: str) -> dict[str, Any] | None:
        answer = self._http.request("GET", self._feature_path(flag_key))
        if answer.status == 404 and "feature" in answer.message().lower():
            return None
        self._raise_for(answer, what=flag_key)
        return _dict(answer.body)

    def _environment_of(self, flag_key: str, feature: Mapping[str, Any]) -> dict[str, Any]:
        for environment in _list(feature.get("environments")):
            if isinstance(environment, dict) and environment.get("name") == self.environment:
                return environment
        raise FlagError(
            f"{flag_key} has no environment {self.environment!r} in Unleash project {self.project}: "
            "enable the environment for the project, or set UNLEASH_ENVIRONMENT"
        )

    def _existing_environment(self, flag_key: str) -> dict[str, Any]:
        feature = self._feature(flag_key)
        if feature is None:
            raise FlagError(f"flag {flag_key} does not exist in Unleash project {self.project}", status=404)
        return self._environment_of(flag_key, feature)

    def _create_strategy(self, flag_key: str, rollout: str) -> dict[str, Any]:
        body = {
            "name": STRATEGY_NAME,
            "title": BOT_STRATEGY_TITLE,
            "disabled": False,
            "constraints": [],
            # Unleash strategy parameters are strings. groupId = the flag key is Unleash's
            # own default, so users land in the same buckets as with a UI-made rollout.
            "parameters": {"rollout": rollout, "stickiness": "default", "groupId": flag_key},
        }
        answer = self._http.request("POST", f"{self._environment_path(flag_key)}/strategies", body)
        self._raise_for(answer, what=flag_key)
        return _dict(answer.body)

    def _update_strategy(self, flag_key: str, strategy: Mapping[str, Any], rollout: str) -> dict[str, Any]:
        old = _dict(strategy.get("parameters"))
        body: dict[str, Any] = {
            "name": STRATEGY_NAME,
            "title": strategy.get("title") or BOT_STRATEGY_TITLE,
            "disabled": False,
            "constraints": _list(strategy.get("constraints")),
            "parameters": {
                **{k: str(v) for k, v in old.items()},
                "rollout": rollout,
                "stickiness": str(old.get("stickiness") or "default"),
                "groupId": str(old.get("groupId") or flag_key),
            },
        }
        if isinstance(strategy.get("variants"), list):
            body["variants"] = strategy["variants"]
        path = f"{self._environment_path(flag_key)}/strategies/{_seg(str(strategy.get('id')))}"
        answer = self._http.request("PUT", path, body)
        self._raise_for(answer, what=flag_key)
        return _dict(answer.body)

    def _switch(self, flag_key: str, on_or_off: str) -> None:
        answer = self._http.request("POST", f"{self._environment_path(flag_key)}/{on_or_off}")
        self._raise_for(answer, what=flag_key)

    def _raise_for(self, answer: Answer, *, what: str) -> None:
        if 200 <= answer.status < 300:
            return
        said = answer.message()
        said_part = f": {said}" if said else ""
        status = answer.status
        if status == 401:
            reason = f"Unleash rejected the API token (401{said_part}); check UNLEASH_API_TOKEN"
        elif status == 403:
            reason = f"the Unleash token may not change {what} in project {self.project} (403{said_part})"
        elif status == 404:
            reason = f"Unleash could not find {what} (404{said_part})"
        elif status == 409:
            reason = (
                f"Unleash refused a conflicting change to {what} (409{said_part}); read it again and retry"
            )
        elif status == 429:
            wait = answer.headers.get("retry-after")
            reason = "Unleash is rate limiting the bot (429)" + (f"; retry after {wait} s" if wait else "")
        elif status >= 500:
            reason = f"Unleash failed with {status}{said_part}; try again shortly"
        else:
            reason = f"Unleash refused the change to {what} ({status}{said_part})"
        raise FlagError(reason, retryable=status >= 500 or status in (409, 429), status=status)

    # --- state --------------------------------------------------------------------------

    def _state(self, flag_key: str, environment: Mapping[str, Any], strategy_id: str | None) -> FlagState:
        enabled = bool(environment.get("enabled"))
        owned = _owned(environment, strategy_id)
        others = [s for s in _strategies(environment) if s not in owned]
        words = [f"{flag_key} is {'on' if enabled else 'off'} in {self.environment}"]
        percent: float | None = None
        owned_id: str | None = None
        if owned:
            mine = owned[0]
            owned_id = str(mine.get("id"))
            configured = _rollout(mine)
            if mine.get("disabled"):
                percent = 0.0
                words.append(f"{BOT_STRATEGY_TITLE} strategy disabled in Unleash (set to {configured} %)")
            else:
                percent = _percent(configured)
                words.append(f"{BOT_STRATEGY_TITLE} at {configured} %")
            if len(owned) > 1:
                words.append(f"{len(owned)} strategies titled {BOT_STRATEGY_TITLE!r}")
        else:
            words.append(f"no {BOT_STRATEGY_TITLE} strategy")
        if others:
            active = sum(1 for s in others if not s.get("disabled"))
            words.append(f"{len(others)} other strateg{'y' if len(others) == 1 else 'ies'} ({active} active)")
        return FlagState(True, enabled, percent, owned_id, "; ".join(words))


def _seg(value: str) -> str:
    return quote(value, safe="")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strategies(environment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _list(environment.get("strategies")) if isinstance(s, dict)]


def _owned(environment: Mapping[str, Any], strategy_id: str | None) -> list[dict[str, Any]]:
    """The bot's strategies: the remembered id wins (a person may have renamed it); else the title."""
    strategies = _strategies(environment)
    if strategy_id:
        by_id = [s for s in strategies if s.get("id") == strategy_id]
        if by_id:
            return by_id
    return [s for s in strategies if s.get("title") == BOT_STRATEGY_TITLE]


def _rollout(strategy: Mapping[str, Any]) -> str:
    value = _dict(strategy.get("parameters")).get("rollout")
    return str(value) if value is not None else "?"


def _percent(rollout: str) -> float | None:
    try:
        value = float(rollout)
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def _with_detail(state: FlagState, note: str) -> FlagState:
    detail = f"{state.detail}; {note}" if state.detail else note
    return FlagState(state.exists, state.enabled, state.percent, state.strategy_id, detail)


__all__ = ["STRATEGY_NAME", "UnleashProvider"]
