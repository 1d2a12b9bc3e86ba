"""Slash-command text -> a typed command, or a UsageError that shows the right form.

`/rollout <subcommand> [feature] [options]`. Slack sends user and channel mentions escaped
(`<@U123|ana>`, `<#C123|launches>`) because the manifest sets `should_escape`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

MAX_FEATURE_LEN = 80
MAX_REASON_LEN = 500

USER_RE = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
CHANNEL_RE = re.compile(r"^<#(C[A-Z0-9]+|G[A-Z0-9]+)(?:\|[^>]*)?>$")
FLAG_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,119}$")


@dataclass(frozen=True)
class Usage:
    form: str
    example: str
    summary: str


USAGES: dict[str, Usage] = {
    "start": Usage(
        "/rollout start <feature> [template] [--owner @user] [--stakeholders #channel ...] "
        "[--flag key] [--service name] [--tz Area/City]",
        "/rollout start checkout-v2 backend --owner @ana --stakeholders #launches --flag checkout_v2",
        "Start a rollout from a plan template (no arguments opens a form)",
    ),
    "status": Usage("/rollout status [feature]", "/rollout status checkout-v2", "Where a rollout stands"),
    "list": Usage("/rollout list", "/rollout list", "Every open rollout in this workspace"),
    "help": Usage("/rollout help", "/rollout help", "This list"),
}


class UsageError(ValueError):
    """A command that cannot be understood: what was wrong, and the right form."""

    def __init__(self, problem: str, subcommand: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.subcommand = subcommand

    @property
    def usage(self) -> Usage | None:
        return USAGES.get(self.subcommand or "")


@dataclass(frozen=True)
class Start:
    feature: str | None = None  # None: open the form
    template: str | None = None
    owner_id: str | None = None
    stakeholders: tuple[str, ...] = ()
    flag: str | None = None
    service: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class Status:
    feature: str | None = None


@dataclass(frozen=True)
class ListRollouts:
    pass


@dataclass(frozen=True)
class Help:
    pass


Command = Start | Status | ListRollouts | Help


@dataclass
class _Tokens:
    words: list[str]
    options: dict[str, list[str]] = field(default_factory=dict)


def _split(text: str, subcommand: str | None) -> list[str]:
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace(
        "\u2019", "'"
    )
    try:
        return shlex.split(text)
    except ValueError:
        raise UsageError("a quote is not closed", subcommand) from None


def _group(words: list[str], allowed: dict[str, bool], subcommand: str) -> _Tokens:
    """Splits positional words from `--option value...`; allowed maps option -> takes many."""
    tokens = _Tokens(words=[])
    current: str | None = None
    for word in words:
        if word.startswith("--"):
            name = word[2:].lower()
            if name not in allowed:
                raise UsageError(f"`{word}` is not an option of `{subcommand}`", subcommand)
            if name in tokens.options:
                raise UsageError(f"`{word}` is given twice", subcommand)
            tokens.options[name] = []
            current = name
        elif current is not None:
            tokens.options[current].append(word)
            if not allowed[current]:
                current = None
        else:
            tokens.words.append(word)
    for name, values in tokens.options.items():
        if not values:
            raise UsageError(f"`--{name}` needs a value", subcommand)
    return tokens


def check_feature(name: str, subcommand: str) -> str:
    name = name.strip()
    if not name:
        raise UsageError("the feature name is empty", subcommand)
    if len(name) > MAX_FEATURE_LEN:
        raise UsageError(
            f"the feature name is {len(name)} characters; the limit is {MAX_FEATURE_LEN}",
            subcommand,
        )
    if any(ch in name for ch in "\n\r\t"):
        raise UsageError("the feature name must be on one line", subcommand)
    return name


def parse_user(raw: str, subcommand: str) -> str:
    match = USER_RE.match(raw)
    if not match:
        raise UsageError(
            f"`{raw}` is not a Slack user: pick the person from the @ suggestions", subcommand
        )
    return match.group(1)


def parse_channel(raw: str, subcommand: str) -> str:
    match = CHANNEL_RE.match(raw)
    if not match:
        raise UsageError(
            f"`{raw}` is not a Slack channel: pick it from the # suggestions", subcommand
        )
    return match.group(1)


def _one(tokens: _Tokens, name: str) -> str | None:
    values = tokens.options.get(name)
    return values[0] if values else None


def _parse_start(words: list[str]) -> Start:
    tokens = _group(
        words,
        {"owner": False, "stakeholders": True, "flag": False, "service": False, "tz": False},
        "start",
    )
    if not tokens.words and not tokens.options:
        return Start()
    if not tokens.words:
        raise UsageError("the feature name is missing", "start")
    if len(tokens.words) > 2:
        extra = " ".join(tokens.words[2:])
        raise UsageError(
            f"unexpected `{extra}`: quote a feature name that has spaces", "start"
        )
    feature = check_feature(tokens.words[0], "start")
    template = tokens.words[1].lower() if len(tokens.words) == 2 else None
    owner = _one(tokens, "owner")
    flag = _one(tokens, "flag")
    if flag is not None and not FLAG_KEY_RE.match(flag):
        raise UsageError(f"`{flag}` is not a flag key (letters, digits, _ . : -)", "start")
    return Start(
        feature=feature,
        template=template,
        owner_id=parse_user(owner, "start") if owner else None,
        stakeholders=tuple(
            dict.fromkeys(parse_channel(c, "start") for c in tokens.options.get("stakeholders", []))
        ),
        flag=flag,
        service=_one(tokens, "service"),
        timezone=_one(tokens, "tz"),
    )


def _optional_feature(words: list[str], subcommand: str) -> str | None:
    tokens = _group(words, {}, subcommand)
    if len(tokens.words) > 1:
        raise UsageError("give one feature name; quote a name that has spaces", subcommand)
    return check_feature(tokens.words[0], subcommand) if tokens.words else None


def parse_command(text: str) -> Command:
    words = _split(text or "", None)
    if not words:
        return Help()
    subcommand, rest = words[0].lower(), words[1:]
    if subcommand == "start":
        return _parse_start(rest)
    if subcommand == "status":
        return Status(_optional_feature(rest, "status"))
    if subcommand == "list":
        return ListRollouts()
    if subcommand == "help":
        return Help()
    raise UsageError(f"`{words[0]}` is not a /rollout subcommand")
