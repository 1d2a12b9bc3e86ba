"""May this advance happen now: allowed hours, holidays, freeze windows and auto-advance.

One pure function, `decide`, answers for every kind of advance (a person's, a person's
"Advance anyway…" with a reason, and the automatic one of the due-work tick). The rows are
read top to bottom; the first that matches decides:

| # | who            | when                                                  | answer                         |
|---|----------------|-------------------------------------------------------|--------------------------------|
| 1 | anyone         | the rollout is not active (paused, rolled back, done) | STOP                           |
| 2 | override       | (a person gave a reason)                              | GO, recorded with the reason   |
| 3 | auto           | auto-advance is off for the rollout                   | STOP                           |
| 4 | auto           | the next move is a checkpoint (a `manual` step, the   | STOP: the owner is asked       |
|   |                | last move, or a phase boundary when the team says so) |                                |
| 5 | auto           | the flag drifted from the plan                        | WAIT, looked at again later    |
| 6 | auto           | the step's soak is not met                            | WAIT until the soak ends       |
| 7 | person         | inside a freeze window                                | REFUSE: its name and end       |
| 8 | person         | outside the allowed hours or on a holiday             | REFUSE: when it opens          |
| 9 | auto           | inside a freeze, outside the hours or on a holiday    | WAIT until the next open time  |
|10 | person         | otherwise                                             | GO (the gate decides, as ever) |
|11 | auto           | the gate has not been read yet                        | CHECK: read it, then ask again |
|12 | auto           | the gate is not fully green                           | WAIT, looked at again later    |
|13 | auto           | the gate is fully green                               | GO                             |

"Fully green" (`not_green`): the gate passes, no statistical judgement is marginal, no
trigger fired or could not be computed, every exit criterion is ticked.

Hours are wall-clock times in the rollout's time zone; a freeze runs from the start of its
first day to the end of its last day in that zone. With no hours set, any time of any day is
allowed (holidays included: that is how rollouts behaved before hours existed); freezes
always apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.domain import canary
from bot.domain.calendar import format_local, is_business_day
from bot.domain.gates import GateResult

RECHECK = timedelta(hours=1)  # a gate that is not green, or a drifted flag, is looked at again
_MAX_HOPS = 800  # a next open time is always found well within this many jumps

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAYS_RE = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)(?:-(mon|tue|wed|thu|fri|sat|sun))?$")
_SPAN_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)-([01]?\d|2[0-4]):([0-5]\d)$")


class BadWindow(ValueError):
    """Hours or a freeze that cannot be read, in words for the person who typed them."""


@dataclass(frozen=True)
class Hours:
    """When advances may happen: these weekdays (0 = Monday), from `start` to `end` (same day)."""

    days: frozenset[int]
    start: time
    end: time  # time.max stands for 24:00

    def to_dict(self) -> dict[str, object]:
        return {"days": sorted(self.days), "start": self.start.strftime("%H:%M"), "end": _hhmm(self.end)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Hours:
        days = data.get("days", [])
        assert isinstance(days, list)
        return cls(frozenset(int(d) for d in days), _time(str(data["start"])), _time(str(data["end"])))

    def describe(self) -> str:
        """E.g. "Mon–Fri 09:00–17:00"."""
        days = sorted(self.days)
        if days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
            names = f"{DAY_NAMES[days[0]].title()}–{DAY_NAMES[days[-1]].title()}"
        else:
            names = ", ".join(DAY_NAMES[d].title() for d in days)
        return f"{names} {self.start.strftime('%H:%M')}–{_hhmm(self.end)}"


def _hhmm(moment: time) -> str:
    return "24:00" if moment == time.max else moment.strftime("%H:%M")


def _time(text: str) -> time:
    hour, minute = (int(p) for p in text.split(":"))
    if hour == 24:
        if minute:
            raise BadWindow(f"`{text}` is not a time of day")
        return time.max
    return time(hour, minute)


def parse_hours(days_text: str, span_text: str) -> Hours:
    """`mon-fri 09:00-17:00`, `mon,wed,fri 10:00-16:00`: the days, then the hours."""
    days: set[int] = set()
    for part in days_text.lower().split(","):
        match = _DAYS_RE.match(part.strip())
        if not match:
            raise BadWindow(f"`{days_text}` is not days like `mon-fri` or `mon,wed,fri`")
        first = DAY_NAMES.index(match.group(1))
        last = DAY_NAMES.index(match.group(2) or match.group(1))
        if last < first:
            raise BadWindow(f"`{part}` runs backwards; say `{DAY_NAMES[last]}-{DAY_NAMES[first]}`")
        days.update(range(first, last + 1))
    span = _SPAN_RE.match(span_text.strip())
    if not span:
        raise BadWindow(f"`{span_text}` is not hours like `09:00-17:00`")
    start = _time(f"{span.group(1)}:{span.group(2)}")
    end = _time(f"{span.group(3)}:{span.group(4)}")
    if end <= start:
        raise BadWindow(f"`{span_text}` ends before it starts; hours cannot run past midnight")
    return Hours(frozenset(days), start, end)


@dataclass(frozen=True)
class Freeze:
    """No advance from the start of `first` to the end of `last`, in the rollout's zone."""

    name: str
    first: date
    last: date

    def start(self, zone: ZoneInfo) -> datetime:
        return datetime.combine(self.first, time(), tzinfo=zone)

    def end(self, zone: ZoneInfo) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), tzinfo=zone)


def parse_freeze(first: str, last: str, name: str) -> Freeze:
    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise BadWindow(f"`{first} {last}` are not dates like 2026-12-21 2027-01-04") from None
    if end < start:
        raise BadWindow(f"the freeze ends ({last}) before it starts ({first})")
    if (end - start).days > 366:
        raise BadWindow("a freeze is at most a year long")
    name = " ".join(name.split())
    if not name or len(name) > 80:
        raise BadWindow("give the freeze a name of at most 80 characters, in quotes")
    return Freeze(name, start, end)


@dataclass(frozen=True)
class Calendar:
    """When a rollout may move: its zone and country, the allowed hours (None: any time) and
    the freezes that apply to it (its team's and its own)."""

    tz: str
    country: str
    hours: Hours | None = None
    freezes: tuple[Freeze, ...] = ()


@dataclass(frozen=True)
class Closed:
    why: str
    until: datetime
    freeze: Freeze | None = None


def closed(cal: Calendar, now: datetime) -> Closed | None:
    """Why no advance may happen at `now`, and when one next may; None when it may."""
    zone = ZoneInfo(cal.tz)
    local = now.astimezone(zone)
    for freeze in cal.freezes:
        if freeze.start(zone) <= local < freeze.end(zone):
            until = next_open(cal, now)
            return Closed(f"freeze “{freeze.name}” until {format_local(until, cal.tz)}", until, freeze)
    if cal.hours is None:
        return None
    if not is_business_day(local.date(), cal.country) and local.weekday() < 5:
        until = next_open(cal, now)
        return Closed(f"a public holiday ({cal.country}); next allowed {format_local(until, cal.tz)}", until)
    if _outside_hours(cal.hours, local):
        until = next_open(cal, now)
        hours = f"{cal.hours.describe()} {cal.tz}"
        return Closed(
            f"outside the allowed hours ({hours}); next allowed {format_local(until, cal.tz)}", until
        )
    return None


def _outside_hours(hours: Hours, local: datetime) -> bool:
    return local.weekday() not in hours.days or not (hours.start <= local.time() < hours.end)


def next_open(cal: Calendar, now: datetime) -> datetime:
    """The first moment at or after `now` outside every freeze and inside the hours."""
    zone = ZoneInfo(cal.tz)
    at = now.astimezone(zone)
    for _ in range(_MAX_HOPS):
        moved = False
        for freeze in cal.freezes:
            if freeze.start(zone) <= at < freeze.end(zone):
                at, moved = freeze.end(zone), True
        if cal.hours is not None:
            hours = cal.hours
            day = at.date()
            holiday = at.weekday() < 5 and not is_business_day(day, cal.country)
            if holiday or at.weekday() not in hours.days or at.time() >= hours.end:
                at, moved = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone), True
            elif at.time() < hours.start:
                at, moved = datetime.combine(day, hours.start, tzinfo=zone), True
        if not moved:
            return at.astimezone(now.tzinfo)
    raise BadWindow("no allowed time within two years: the hours and freezes leave none")


class Who(StrEnum):
    PERSON = "person"  # `/rollout advance` or the Advance button
    OVERRIDE = "override"  # "Advance anyway…" with a reason
    AUTO = "auto"  # the due-work tick


class Gate(StrEnum):
    UNREAD = "unread"
    GREEN = "green"
    NOT_GREEN = "not green"


class Answer(StrEnum):
    GO = "go"
    CHECK = "check"  # everything but the gate allows it: read the gate and ask again
    WAIT = "wait"  # not now: ask again at `until`
    REFUSE = "refuse"  # a person's advance is refused; "Advance anyway…" may take it through
    STOP = "stop"  # not by itself: until something changes (a person acts, a resume)


@dataclass(frozen=True)
class Ask:
    """Everything `decide` needs, read from the rollout and its team by the caller."""

    who: Who
    now: datetime
    calendar: Calendar
    active: bool = True
    auto_on: bool = False
    checkpoint: str = ""  # why the next move needs a person; "" when it need not
    drift: bool = False
    soak_until: datetime | None = None  # when the step's soak is met; None: it is
    gate: Gate = Gate.UNREAD
    gate_why: str = ""


@dataclass(frozen=True)
class Decision:
    answer: Answer
    why: str = ""
    until: datetime | None = None  # WAIT: when to ask again; REFUSE: when it opens again
    freeze: Freeze | None = None

    @property
    def go(self) -> bool:
        return self.answer is Answer.GO


def decide(ask: Ask) -> Decision:
    """The table in the module docstring, row by row."""
    if not ask.active:
        return Decision(Answer.STOP, "the rollout is not active")
    if ask.who is Who.OVERRIDE:
        return Decision(Answer.GO, "advanced anyway, with a reason")
    auto = ask.who is Who.AUTO
    if auto:
        if not ask.auto_on:
            return Decision(Answer.STOP, "auto-advance is off")
        if ask.checkpoint:
            return Decision(Answer.STOP, ask.checkpoint)
        if ask.drift:
            return Decision(Answer.WAIT, "the flag is not where the plan says", ask.now + RECHECK)
        if ask.soak_until is not None and ask.soak_until > ask.now:
            return Decision(Answer.WAIT, "the soak is not over", ask.soak_until)
    shut = closed(ask.calendar, ask.now)
    if shut is not None:
        answer = Answer.WAIT if auto else Answer.REFUSE
        return Decision(answer, shut.why, shut.until, shut.freeze)
    if not auto:
        return Decision(Answer.GO)
    if ask.gate is Gate.UNREAD:
        return Decision(Answer.CHECK)
    if ask.gate is Gate.NOT_GREEN:
        return Decision(Answer.WAIT, ask.gate_why or "the gate is not green", ask.now + RECHECK)
    return Decision(Answer.GO, ask.gate_why)


_JUDGED_WORDS = {"MARGINAL": "marginal", "FAIL": "failing", "NODATA": "without data"}


def not_green(gate: GateResult) -> list[str]:
    """Why a gate is not fully green enough to advance without a person; empty when it is."""
    # The gate's own sentence about the judgement is written for the gate report (it offers
    # "Advance anyway…"); the tick's line says it short, with the score.
    judged = canary.blocker(gate.judgement) if gate.judgement is not None else None
    out = [b.rstrip(".") for b in gate.blockers if b != judged] if not gate.passed else []
    if gate.judgement is not None and gate.judgement.verdict.value != "PASS":
        state = _JUDGED_WORDS.get(gate.judgement.verdict.value, gate.judgement.verdict.value.lower())
        out.append(f"the canary judgement is {state} ({gate.judgement.reason})")
    out += [f"trigger {v.name} fired" for v in gate.fired]
    out += [f"trigger {v.name} cannot be computed" for v in gate.triggers if v.incomputable]
    if gate.unchecked:
        out.append(f"{len(gate.unchecked)} exit criteria not ticked")
    if not gate.soak.met:
        out.append("the soak is not over")
    return list(dict.fromkeys(out))


def green_words(gate: GateResult) -> str:
    """What made the gate green, for the announcement: "Error rate 0.4% passes; soak met"."""
    parts = [f"{m.name} passes" for m in gate.metrics]
    if gate.triggers:
        parts.append("no trigger fired")
    parts.append("soak met")
    return ", ".join(parts)


AUTO, MANUAL = "auto", "manual"
ADVANCE_MODES = (AUTO, MANUAL)


def advance_mode(plan_doc: dict[str, object], phase_index: int, step_index: int) -> str:
    """How a move into this step happens, as the plan says: the step's own `advance`, else its
    phase's, else the plan's (default "auto": the rollout's auto switch decides)."""
    phases = plan_doc.get("phases")
    phase = phases[phase_index] if isinstance(phases, list) and phase_index < len(phases) else {}
    steps = phase.get("steps") if isinstance(phase, dict) else None
    step = steps[step_index] if isinstance(steps, list) and step_index < len(steps) else {}
    for holder in (step, phase, plan_doc):
        value = holder.get("advance") if isinstance(holder, dict) else None
        if value in ADVANCE_MODES:
            return str(value)
    return AUTO


def checkpoint(*, target: str, mode: str, completes: bool, leaves_phase: bool, phase_stops: bool) -> str:
    """Why the next move waits for a person ("" when the tick may make it): a step marked
    `manual` is reached by a person, the move that completes a rollout is a person's, and a
    team may ask for a person at every phase boundary."""
    if completes:
        return "completing the rollout is a checkpoint: the owner advances"
    if mode == MANUAL:
        return f"{target} is a checkpoint: the owner advances to it"
    if leaves_phase and phase_stops:
        return f"{target} starts a new phase, a checkpoint for this team: the owner advances"
    return ""
