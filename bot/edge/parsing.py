"""Slash-command text -> a typed command, or a UsageError that shows the right form.

`/rollout <subcommand> [feature] [options]`. Slack sends user and channel mentions escaped
(`<@U123|ana>`, `<#C123|launches>`) because the manifest sets `should_escape`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace

from bot.domain.names import BadName, check_service, check_stakeholders, clean_feature
from bot.domain.schedule import DIGEST_TIME_RE
from bot.edge import parsing_auto
from bot.errors import UsageError
from bot.ids import Block
from bot.usecases.start import Start

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
    "advance": Usage(
        "/rollout advance [feature]",
        "/rollout advance checkout-v2",
        "Check the metric gate in Datadog and move to the next step if it passes",
    ),
    "snapshot": Usage(
        "/rollout snapshot [feature]",
        "/rollout snapshot checkout-v2",
        "The gate's metrics now, without advancing",
    ),
    "pause": Usage(
        "/rollout pause [feature] [reason]",
        "/rollout pause checkout-v2 support queue spiking",
        "Hold the rollout where it is",
    ),
    "resume": Usage("/rollout resume [feature]", "/rollout resume checkout-v2", "Carry on after a pause"),
    "rollback": Usage(
        "/rollout rollback [feature] [reason]",
        "/rollout rollback checkout-v2 error rate doubled",
        "Stop and roll the feature back",
    ),
    "complete": Usage(
        "/rollout complete [feature]", "/rollout complete checkout-v2", "Close a rollout that reached 100%"
    ),
    "approvers": Usage(
        "/rollout approvers [feature] [add|remove @user]",
        "/rollout approvers checkout-v2 add @sam",
        "Who besides the owner may advance, resume and roll back (anyone may pause)",
    ),
    "metrics": Usage(
        "/rollout metrics [feature]",
        "/rollout metrics checkout-v2",
        "Edit the success metrics and rollback triggers",
    ),
    "update": Usage(
        "/rollout update [feature] <text>",
        "/rollout update checkout-v2 25% looks healthy, next step Tuesday",
        "Send stakeholders an update with the current state",
    ),
    "digest": Usage(
        "/rollout digest [feature] off|daily|weekly [HH:MM]",
        "/rollout digest checkout-v2 daily 09:30",
        "When the stakeholder digest goes out (default every business day 09:00)",
    ),
    "export": Usage(
        "/rollout export [feature]",
        "/rollout export checkout-v2",
        "The plan document with every result filled in, and its charts, as files in the rollout's thread",
    ),
    "timeline": Usage(
        "/rollout timeline [feature]",
        "/rollout timeline checkout-v2",
        "Who did what when, newest first: gate verdicts, overrides, flag changes",
    ),
    "import": Usage("/rollout import", "/rollout import", "Turn a plan document (Markdown) into a template"),
    "access": Usage(
        "/rollout access [feature] [exit-criteria|updates anyone|steerers]",
        "/rollout access checkout-v2 exit-criteria anyone",
        "Who may tick exit criteria and send updates (steerers: owner, approvers, admins)",
    ),
    "templates": Usage(
        "/rollout templates [remove <name>]",
        "/rollout templates remove backend-2",
        "The plan templates, who imported each, and removing one you imported",
    ),
    "baseline": Usage(
        "/rollout baseline [feature]", "/rollout baseline checkout-v2", "Measure the metrics' baseline again"
    ),
    "list": Usage("/rollout list", "/rollout list", "Every open rollout in this workspace"),
    "help": Usage("/rollout help [subcommand]", "/rollout help pause", "Every subcommand, or one in full"),
}


USAGES.update({name: Usage(*texts) for name, texts in parsing_auto.USAGES.items()})


def usage_of(error: UsageError) -> Usage | None:
    """The right form of the subcommand a usage error is about, to show beside the problem."""
    return USAGES.get(error.subcommand or "")


@dataclass(frozen=True)
class Status:
    feature: str | None = None


@dataclass(frozen=True)
class ListRollouts:
    pass


@dataclass(frozen=True)
class Help:
    """`/rollout help [subcommand]`: every subcommand by section, or one in full."""

    topic: str | None = None


@dataclass(frozen=True)
class OnRollout:
    """A subcommand about one rollout: `feature` names it, or None means the channel's one."""

    subcommand: str
    feature: str | None = None


@dataclass(frozen=True)
class WithReason:
    """`pause`/`rollback [feature] [reason]`: whether the first word is a feature or the start
    of the reason is only known against the open rollouts (bot.flows.resolve_words)."""

    subcommand: str
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Approvers:
    feature: str | None = None
    change: str | None = None  # "add" | "remove" | None to list
    user_id: str | None = None


ROLLOUT_SUBCOMMANDS = (
    "advance", "snapshot", "resume", "complete", "metrics", "baseline", "export", "timeline",
)  # fmt: skip
REASON_SUBCOMMANDS = ("pause", "rollback", "update")


@dataclass(frozen=True)
class Digest:
    feature: str | None
    cadence: str  # off | daily | weekly
    at: str | None = None  # "HH:MM" local to the rollout


@dataclass(frozen=True)
class Import:
    pass


@dataclass(frozen=True)
class Access:
    feature: str | None
    act: str | None = None  # "exit-criteria" | "updates"; None shows who may do what
    who: str | None = None  # "anyone" | "steerers"


@dataclass(frozen=True)
class Templates:
    remove: str | None = None  # the template to remove; None lists them


Command = (
    Start
    | Status
    | ListRollouts
    | Help
    | OnRollout
    | WithReason
    | Approvers
    | Digest
    | Import
    | Templates
    | Access
    | parsing_auto.AutoCommand
)


@dataclass
class _Tokens:
    words: list[str]
    options: dict[str, list[str]] = field(default_factory=dict)


def _split(text: str, subcommand: str | None) -> list[str]:
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
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
    """The feature name as stored (see `bot.domain.names`), or the reason it cannot be one."""
    try:
        return clean_feature(name)
    except BadName as problem:
        raise UsageError(str(problem), subcommand) from None


def checked_start(start: Start) -> Start:
    """The same checks for the typed command and the start form: a flag key flag tools accept,
    a service name Datadog takes as a tag, and a bounded list of stakeholder channels."""
    if start.flag is not None and not FLAG_KEY_RE.match(start.flag):
        raise UsageError(
            f"`{start.flag[:120]}` is not a flag key (letters, digits, _ . : -)",
            "start",
            field=Block.START_FLAG,
        )
    try:
        service = check_service(start.service) if start.service else None
    except BadName as problem:
        raise UsageError(str(problem), "start") from None
    try:
        return replace(start, service=service, stakeholders=check_stakeholders(start.stakeholders))
    except BadName as problem:
        raise UsageError(str(problem), "start", field=Block.START_STAKEHOLDERS) from None


def parse_user(raw: str, subcommand: str) -> str:
    match = USER_RE.match(raw)
    if not match:
        raise UsageError(f"`{raw}` is not a Slack user: pick the person from the @ suggestions", subcommand)
    return match.group(1)


def parse_channel(raw: str, subcommand: str) -> str:
    match = CHANNEL_RE.match(raw)
    if not match:
        raise UsageError(f"`{raw}` is not a Slack channel: pick it from the # suggestions", subcommand)
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
        raise UsageError(f"unexpected `{extra}`: quote a feature name that has spaces", "start")
    feature = check_feature(tokens.words[0], "start")
    template = tokens.words[1].lower() if len(tokens.words) == 2 else None
    owner = _one(tokens, "owner")
    return checked_start(
        Start(
            feature=feature,
            template=template,
            owner_id=parse_user(owner, "start") if owner else None,
            stakeholders=tuple(parse_channel(c, "start") for c in tokens.options.get("stakeholders", [])),
            flag=_one(tokens, "flag"),
            service=_one(tokens, "service"),
            timezone=_one(tokens, "tz"),
        )
    )


def _optional_feature(words: list[str], subcommand: str) -> str | None:
    tokens = _group(words, {}, subcommand)
    if len(tokens.words) > 1:
        raise UsageError("give one feature name; quote a name that has spaces", subcommand)
    return check_feature(tokens.words[0], subcommand) if tokens.words else None


def _parse_digest(words: list[str]) -> Digest:
    cadences = ("off", "daily", "weekly")
    at = next((i for i, w in enumerate(words) if w.lower() in cadences), None)
    if at is None:
        raise UsageError("say `off`, `daily` or `weekly`", "digest")
    feature = _optional_feature(words[:at], "digest")
    rest = words[at + 1 :]
    time_of_day = None
    if rest:
        match = DIGEST_TIME_RE.match(rest[0])
        if len(rest) > 1 or not match:
            raise UsageError(f"`{' '.join(rest)}` is not a time like 09:30", "digest")
        time_of_day = f"{int(match.group(1)):02d}:{match.group(2)}"
    return Digest(feature, words[at].lower(), time_of_day)


def _parse_approvers(words: list[str]) -> Approvers:
    lowered = [w.lower() for w in words]
    verb_at = next((i for i, w in enumerate(lowered) if w in ("add", "remove")), None)
    if verb_at is None:
        return Approvers(feature=_optional_feature(words, "approvers"))
    feature = _optional_feature(words[:verb_at], "approvers")
    users = words[verb_at + 1 :]
    if len(users) != 1:
        raise UsageError(f"`{lowered[verb_at]}` takes one @user", "approvers")
    return Approvers(feature=feature, change=lowered[verb_at], user_id=parse_user(users[0], "approvers"))


ACCESS_ACTS = ("exit-criteria", "updates")
ACCESS_WHO = ("anyone", "steerers")


def _parse_access(words: list[str]) -> Access:
    lowered = [w.lower() for w in words]
    at = next((i for i, w in enumerate(lowered) if w in ACCESS_ACTS), None)
    if at is None:
        return Access(feature=_optional_feature(words, "access"))
    if len(lowered) != at + 2 or lowered[at + 1] not in ACCESS_WHO:
        raise UsageError(f"say `{lowered[at]} anyone` or `{lowered[at]} steerers`", "access")
    return Access(_optional_feature(words[:at], "access"), lowered[at], lowered[at + 1])


def _parse_templates(words: list[str]) -> Templates:
    if not words:
        return Templates()
    if words[0].lower() != "remove" or len(words) != 2:
        raise UsageError("say `/rollout templates` or `/rollout templates remove <name>`", "templates")
    return Templates(remove=words[1].lower())


def parse_command(text: str) -> Command:
    # No database stores a NUL, and nobody types one on purpose.
    words = _split((text or "").replace("\x00", ""), None)
    if not words:
        return Help()
    subcommand, rest = words[0].lower(), words[1:]
    if subcommand == "start":
        return _parse_start(rest)
    if subcommand == "status":
        return Status(_optional_feature(rest, "status"))
    if subcommand == "list":
        return ListRollouts()
    if subcommand == "import":
        if rest:
            raise UsageError("`import` takes no arguments: paste the document into the form", "import")
        return Import()
    if subcommand == "help":
        topic = rest[0].lower().lstrip("/") if rest else None
        if topic is not None and topic not in USAGES:
            raise UsageError(f"there is no subcommand `{rest[0]}`; `/rollout help` lists them", "help")
        return Help(topic)
    if subcommand == "templates":
        return _parse_templates(rest)
    if subcommand == "access":
        return _parse_access(rest)
    if subcommand in ROLLOUT_SUBCOMMANDS:
        return OnRollout(subcommand, _optional_feature(rest, subcommand))
    if subcommand in REASON_SUBCOMMANDS:
        reason = " ".join(rest)
        if len(reason) > MAX_REASON_LEN:
            raise UsageError(
                f"the reason is {len(reason)} characters; the limit is {MAX_REASON_LEN}", subcommand
            )
        if subcommand == "update" and not rest:
            raise UsageError("the update has no text", "update")
        return WithReason(subcommand, tuple(rest))
    if subcommand in parsing_auto.SUBCOMMANDS:
        return parsing_auto.parse(subcommand, rest)
    if subcommand == "digest":
        return _parse_digest(rest)
    if subcommand == "approvers":
        return _parse_approvers(rest)
    raise UsageError(f"`{words[0]}` is not a /rollout subcommand")
