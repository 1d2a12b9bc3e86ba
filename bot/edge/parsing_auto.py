"""Slash-command text of auto-advance, allowed hours, freezes and checkpoints -> typed commands
(`bot.edge.parsing` hands these subcommands here):

- `/rollout auto on|off [feature]`
- `/rollout hours [feature|team] mon-fri 09:00-17:00`, `… any` (no limit), or no hours: show
- `/rollout freeze add 2026-12-21 2027-01-04 "holiday freeze" [--for feature]`, `freeze list`,
  `freeze remove <id>`
- `/rollout checkpoints team phases|steps`
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain import windows
from bot.domain.names import BadName, clean_feature
from bot.errors import UsageError

# (form, example, summary) for each subcommand, added to `bot.edge.parsing.USAGES`.
USAGES: dict[str, tuple[str, str, str]] = {
    "auto": (
        "/rollout auto on|off [feature]",
        "/rollout auto on checkout-v2",
        "Advance by itself when the soak is met and the gate is fully green (off by default)",
    ),
    "hours": (
        "/rollout hours [feature|team] [<days> <HH:MM-HH:MM>|any]",
        "/rollout hours team mon-fri 09:00-17:00",
        "When any advance may happen, in the rollout's time zone (holidays closed)",
    ),
    "freeze": (
        '/rollout freeze add <first day> <last day> "name" [--for feature] | list | remove <id>',
        '/rollout freeze add 2026-12-21 2027-01-04 "holiday freeze"',
        "Days without any advance: the whole workspace's (admins), or one rollout's (--for)",
    ),
    "checkpoints": (
        "/rollout checkpoints team phases|steps",
        "/rollout checkpoints team phases",
        "phases: auto-advance stops for a person at every phase boundary",
    ),
}
SUBCOMMANDS = frozenset(USAGES)


@dataclass(frozen=True)
class Auto:
    on: bool
    feature: str | None = None


@dataclass(frozen=True)
class AdvanceHours:
    team: bool  # the workspace's hours, not one rollout's
    feature: str | None = None
    hours: windows.Hours | None = None
    change: bool = False  # False: show them


@dataclass(frozen=True)
class Freezes:
    action: str  # add | list | remove
    freeze: windows.Freeze | None = None
    freeze_id: int | None = None
    feature: str | None = None  # add: one rollout's freeze, not the workspace's


@dataclass(frozen=True)
class Checkpoints:
    phases: bool


AutoCommand = Auto | AdvanceHours | Freezes | Checkpoints


def _feature(words: list[str], subcommand: str) -> str | None:
    if len(words) > 1:
        raise UsageError("give one feature name; quote a name that has spaces", subcommand)
    if not words:
        return None
    try:
        return clean_feature(words[0])
    except BadName as problem:
        raise UsageError(str(problem), subcommand) from None


def parse(subcommand: str, words: list[str]) -> AutoCommand:
    try:
        return _parse(subcommand, words)
    except windows.BadWindow as problem:
        raise UsageError(str(problem), subcommand) from None


def _parse(subcommand: str, words: list[str]) -> AutoCommand:
    lowered = [w.lower() for w in words]
    if subcommand == "auto":
        switch = [i for i, w in enumerate(lowered) if w in ("on", "off")]
        if len(switch) != 1:
            raise UsageError("say `on` or `off`", "auto")
        at = switch[0]
        return Auto(lowered[at] == "on", _feature(words[:at] + words[at + 1 :], "auto"))
    if subcommand == "hours":
        team = bool(lowered) and lowered[0] == "team"
        rest = words[1:] if team else words
        if rest and rest[-1].lower() == "any":
            feature = None if team else _feature(rest[:-1], "hours")
            return AdvanceHours(team, feature, None, change=True)
        if len(rest) >= 2 and "-" in rest[-1] and ":" in rest[-1]:
            hours = windows.parse_hours(rest[-2], rest[-1])
            return AdvanceHours(team, None if team else _feature(rest[:-2], "hours"), hours, change=True)
        return AdvanceHours(team, None if team else _feature(rest, "hours"))
    if subcommand == "freeze":
        if lowered == ["list"] or not lowered:
            return Freezes("list")
        if lowered[0] == "add" and "--for" in lowered:
            at = lowered.index("--for")
            if at + 2 != len(words):
                raise UsageError("`--for` takes one feature name, at the end", "freeze")
            added = _parse("freeze", words[:at])
            assert isinstance(added, Freezes)
            return Freezes("add", freeze=added.freeze, feature=_feature(words[at + 1 :], "freeze"))
        if lowered[0] == "add" and len(words) >= 4:
            return Freezes("add", freeze=windows.parse_freeze(words[1], words[2], " ".join(words[3:])))
        if lowered[0] == "remove" and len(words) == 2 and words[1].isdigit() and len(words[1]) < 10:
            return Freezes("remove", freeze_id=int(words[1]))
        raise UsageError('say `add <first day> <last day> "name"`, `list` or `remove <id>`', "freeze")
    if lowered in (["team", "phases"], ["team", "steps"]):
        return Checkpoints(lowered[1] == "phases")
    raise UsageError("say `team phases` or `team steps`", "checkpoints")
