"""LaunchDarkly through its REST API v2, for one project and one environment.

What the bot owns: the flag's default rule (``fallthrough``) in the environment, as a
percentage rollout between the flag's ``true`` and ``false`` variations. Individual
targets and targeting rules belong to the team and are never changed. Only boolean flags
(one ``true`` and one ``false`` variation) can be rolled out.

- read: ``GET /api/v2/flags/{project}/{flag}?env={env}``; the percent is the ``true``
  variation's weight in the fallthrough rollout (weights are thousandths of a percent),
  100 or 0 when the fallthrough serves ``true`` or ``false`` outright.
- set_percent(N): one semantic PATCH (``Content-Type: application/json;
  domain-model=launchdarkly.semanticpatch``) holding ``updateFallthroughVariationOrRollout``
  with ``rolloutWeights`` {trueId: N*1000, falseId: 100000 - N*1000} (variation ids from
  the GET), followed by ``turnFlagOn`` when the flag is off. LaunchDarkly applies a
  patch's instructions together, so nobody ever sees the flag on at another percent.
- turn_off (rollback): the fallthrough goes to 0 % ``true``; the flag is turned off in the
  same patch only when it has no targets and no rules, for the reason given in
  bot/flags/unleash.py: rolling back the bot's rollout must not end a team's targeting.
- 405 from the PATCH: the environment requires approvals. The bot does not create
  approval requests; it says so (``ApprovalRequired``).

The strategy id the bot reports is ``"fallthrough"``: the default rule has no id of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bot.flags._http import CONNECT_TIMEOUT, READ_TIMEOUT, Answer, JsonClient
from bot.flags.base import (
    ApprovalRequired,
    FlagError,
    FlagState,
    format_percent,
    require_flag_key,
    require_percent,
)

DEFAULT_API_URL = "https://app.launchdarkly.com"
SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"
FALLTHROUGH = "fallthrough"
WEIGHT_TOTAL = 100_000  # LaunchDarkly weights are thousandths of a percent


class LaunchDarklyProvider:
    """The FlagProvider for LaunchDarkly. Thread-safe; one connection pool per provider."""

    name = "LaunchDarkly"

    def __init__(
        self,
        token: str,
        *,
        project: str,
        environment: str,
        api_url: str = DEFAULT_API_URL,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.project = project
        self.environment = environment
        self._http = JsonClient(
            "LaunchDarkly",
            self.api_url,
            {"Authorization": token},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    # --- FlagProvider ---------------------------------------------------------------

    def read(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        flag = self._flag(flag_key)
        if flag is None:
            return FlagState.missing(f"no flag {flag_key} in LaunchDarkly project {self.project}")
        return self._state(flag_key, flag)

    def set_percent(self, flag_key: str, percent: float, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        percent = require_percent(percent)
        flag = self._existing(flag_key)
        environment = self._environment_of(flag_key, flag)
        instructions: list[dict[str, Any]] = [self._rollout_instruction(flag_key, flag, percent)]
        if percent > 0 and not environment.get("on"):
            instructions.append({"kind": "turnFlagOn"})
        return self._patch(flag_key, instructions)

    def turn_off(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        require_flag_key(flag_key)
        flag = self._existing(flag_key)
        environment = self._environment_of(flag_key, flag)
        instructions: list[dict[str, Any]] = [self._rollout_instruction(flag_key, flag, 0.0)]
        team_targeting = any(_list(environment.get(k)) for k in ("targets", "contextTargets", "rules"))
        if environment.get("on") and not team_targeting:
            instructions.append({"kind": "turnFlagOff"})
        return self._patch(flag_key, instructions)

    def check(self) -> str:
        path = f"/api/v2/projects/{_seg(self.project)}/environments/{_seg(self.environment)}"
        answer = self._http.request("GET", path)
        if answer.status == 404:
            raise FlagError(
                f"LaunchDarkly has no environment {self.environment!r} in project {self.project!r} "
                "(LD_PROJECT, LD_ENVIRONMENT)",
                status=404,
            )
        self._raise_for(answer, what=f"project {self.project}")
        body = _dict(answer.body)
        approvals = _dict(body.get("approvalSettings")).get("required")
        note = "; changes there require approval" if approvals else ""
        return (
            f"LaunchDarkly at {self.api_url}: project {self.project}, environment "
            f"{body.get('name') or self.environment}, token accepted{note}"
        )

    def link(self, flag_key: str) -> str | None:
        if not isinstance(flag_key, str) or not flag_key:
            return None
        return f"{self.api_url}/{_seg(self.project)}/{_seg(self.environment)}/features/{_seg(flag_key)}"

    def close(self) -> None:
        self._http.close()

    # --- requests ---------------------------------------------------------------------

    def _flag_path(self, flag_key: str) -> str:
        return f"/api/v2/flags/{_seg(self.project)}/{_seg(flag_key)}"

    def _flag(self, flag_key: str) -> dict[str, Any] | None:
        answer = self._http.request("GET", f"{self._flag_path(flag_key)}?env={_seg(self.environment)}")
        if answer.status == 404:
            return None
        self._raise_for(answer, what=flag_key)
        return _dict(answer.body)

    def _existing(self, flag_key: str) -> dict[str, Any]:
        flag = self._flag(flag_key)
        if flag is None:
            raise FlagError(
                f"flag {flag_key} does not exist in LaunchDarkly project {self.project}", status=404
            )
        return flag

    def _environment_of(self, flag_key: str, flag: Mapping[str, Any]) -> dict[str, Any]:
        environment = _dict(flag.get("environments")).get(self.environment)
        if not isinstance(environment, dict):
            raise FlagError(
                f"{flag_key} has no environment {self.environment!r} in LaunchDarkly project "
                f"{self.project} (LD_ENVIRONMENT)"
            )
        return environment

    def _rollout_instruction(self, flag_key: str, flag: Mapping[str, Any], percent: float) -> dict[str, Any]:
        on_id, off_id = _boolean_variation_ids(flag_key, flag)
        weight = round(percent * 1000)  # LaunchDarkly's finest step: 0.001 %
        return {
            "kind": "updateFallthroughVariationOrRollout",
            "rolloutWeights": {on_id: weight, off_id: WEIGHT_TOTAL - weight},
        }

    def _patch(self, flag_key: str, instructions: list[dict[str, Any]]) -> FlagState:
        body = {"environmentKey": self.environment, "instructions": instructions}
        answer = self._http.request("PATCH", self._flag_path(flag_key), body, content_type=SEMANTIC_PATCH)
        if answer.status == 405:
            raise ApprovalRequired(
                f"LaunchDarkly requires an approval to change {flag_key} in {self.environment}; "
                "request it in LaunchDarkly"
            )
        if answer.status == 404:
            raise FlagError(
                f"flag {flag_key} does not exist in LaunchDarkly project {self.project}", status=404
            )
        self._raise_for(answer, what=flag_key)
        return self._state(flag_key, _dict(answer.body))

    def _raise_for(self, answer: Answer, *, what: str) -> None:
        if 200 <= answer.status < 300:
            return
        said = answer.message()
        said_part = f": {said}" if said else ""
        status = answer.status
        if status == 400:
            reason = f"LaunchDarkly rejected the change to {what} (400{said_part})"
        elif status == 401:
            reason = f"LaunchDarkly rejected the API token (401{said_part}); check LD_API_TOKEN"
        elif status == 403:
            reason = (
                f"the LaunchDarkly token may not change {what} in {self.project}/{self.environment} "
                f"(403{said_part}); it needs a role with writer access there"
            )
        elif status == 404:
            reason = f"LaunchDarkly could not find {what} in project {self.project} (404{said_part})"
        elif status == 409:
            reason = f"LaunchDarkly refused a conflicting change to {what} (409{said_part}); try again"
        elif status == 429:
            wait = answer.headers.get("retry-after")
            reason = "LaunchDarkly is rate limiting the bot (429)" + (
                f"; retry after {wait} s" if wait else ""
            )
        elif status >= 500:
            reason = f"LaunchDarkly failed with {status}{said_part}; try again shortly"
        else:
            reason = f"LaunchDarkly refused the change to {what} ({status}{said_part})"
        raise FlagError(reason, retryable=status >= 500 or status in (409, 429), status=status)

    # --- state --------------------------------------------------------------------------

    def _state(self, flag_key: str, flag: Mapping[str, Any]) -> FlagState:
        environment = self._environment_of(flag_key, flag)
        enabled = bool(environment.get("on"))
        words = [f"{flag_key} is {'on' if enabled else 'off'} in {self.environment}"]
        percent = _fallthrough_percent(flag, environment)
        if percent is None:
            words.append("default rule is not a true/false rollout")
        else:
            words.append(f"default rule serves true to {format_percent(percent)} %")
        rules = len(_list(environment.get("rules")))
        if rules:
            words.append(f"{rules} targeting rule{'s' if rules != 1 else ''}")
        return FlagState(True, enabled, percent, FALLTHROUGH, "; ".join(words))


def _seg(value: str) -> str:
    return quote(value, safe="")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _variations(flag: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [v for v in _list(flag.get("variations")) if isinstance(v, dict)]


def _boolean_indexes(flag: Mapping[str, Any]) -> tuple[int, int] | None:
    variations = _variations(flag)
    values = [v.get("value") for v in variations]
    if len(values) != 2 or True not in values or False not in values:
        return None
    # `is`, because 1 == True in Python and a number variation must not pass for a boolean.
    true_index = next(i for i, v in enumerate(values) if v is True)
    false_index = next(i for i, v in enumerate(values) if v is False)
    return true_index, false_index


def _boolean_variation_ids(flag_key: str, flag: Mapping[str, Any]) -> tuple[str, str]:
    indexes = _boolean_indexes(flag)
    variations = _variations(flag)
    if indexes is None:
        raise FlagError(
            f"{flag_key} is not a true/false flag in LaunchDarkly; the bot rolls out boolean flags only"
        )
    on_id, off_id = (variations[i].get("_id") for i in indexes)
    if not (isinstance(on_id, str) and on_id and isinstance(off_id, str) and off_id):
        raise FlagError(
            f"LaunchDarkly did not say the variation ids of {flag_key}; try again", retryable=True
        )
    return on_id, off_id


def _fallthrough_percent(flag: Mapping[str, Any], environment: Mapping[str, Any]) -> float | None:
    indexes = _boolean_indexes(flag)
    if indexes is None:
        return None
    true_index, false_index = indexes
    fallthrough = _dict(environment.get("fallthrough"))
    variation = fallthrough.get("variation")
    if isinstance(variation, int) and not isinstance(variation, bool):
        if variation == true_index:
            return 100.0
        if variation == false_index:
            return 0.0
        return None
    weights = _list(_dict(fallthrough.get("rollout")).get("variations"))
    if not weights:
        return None
    true_weight = sum(
        int(w.get("weight") or 0) for w in weights if isinstance(w, dict) and w.get("variation") == true_index
    )
    return true_weight / 1000
