"""Plan documents in Markdown, both ways. Pure: text in, Plan out; Plan in, text out.

`parse_plan` reads the two forms teams write by hand (see shared/seeds/):

- the house template: `# Rollout Plan: X`, `**Owner:**`-style header fields, `## Overview`,
  `## Rollout Strategy` holding `### Phase N: Name` sections (a `> description`,
  `**Duration:**`, `**Tasks:**` and `**Exit Criteria:**` checklists), a `## Success Metrics`
  table and a `## Rollback Triggers` list;
- the back-end questionnaire: `## Phase I: Canary (1%)` sections whose `### Planning` answers
  "Desired number of users:", "Desired date range or test duration:", "How will you make the
  product available…" and lists `- DataDog: …` success criteria.

`export_plan` writes the template form back, plus the two things the template has no place
for and the bot needs to run a plan: a `**Steps:**` list in each phase and a `## Metric Gate`
table holding every metric's rule and Datadog query. When a document has those, the importer
takes them as written instead of reading steps and metrics out of prose, so an exported plan
imports back unchanged.

Every non-blank line is either understood or reported as a `Problem` with its line number.
"Results" sections describe a past run, not a plan: the importer skips them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.plans.model import Direction, Metric, Phase, Plan, Rule, Step, SuccessMetricRow
from messages.render import render

__all__ = [
    "Decision",
    "ImportResult",
    "PhaseResults",
    "Problem",
    "Reading",
    "RolloutResults",
    "Snapshot",
    "StepReached",
    "Tick",
    "export_plan",
    "parse_plan",
    "parse_plans",
]


# --- what an import gives back ---------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A line the importer could not take as written: its number (1-based), text and why."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True)
class ImportResult:
    plan: Plan
    problems: list[Problem]
    understood: frozenset[int] = frozenset()  # numbers of the lines that went into the plan


# --- what a run adds to an export (filled from the database by the caller) --------------


@dataclass(frozen=True)
class StepReached:
    title: str  # Step.title, e.g. "25%" or "internal"
    users: int | None
    reached_at: datetime


@dataclass(frozen=True)
class Tick:
    user: str  # as it should read after "@"
    at: datetime


@dataclass(frozen=True)
class Reading:
    """One metric in one snapshot. `allowed` says the rule, e.g. "change vs baseline ≤ +0.1 pp"."""

    metric: str
    value: float | None
    baseline: float | None
    allowed: str
    verdict: str
    unit: str = ""


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    readings: tuple[Reading, ...]


@dataclass(frozen=True)
class Decision:
    """An advance, an override (with its reason), a pause, a resume, a rollback."""

    at: datetime
    user: str
    text: str
    reason: str = ""


@dataclass(frozen=True)
class PhaseResults:
    started: datetime | None = None
    completed: datetime | None = None
    steps: tuple[StepReached, ...] = ()
    checked: Mapping[str, Tick] = field(default_factory=dict)  # checklist item text -> tick
    snapshots: tuple[Snapshot, ...] = ()
    decisions: tuple[Decision, ...] = ()


@dataclass(frozen=True)
class RolloutResults:
    """`phases[i]` is what happened in the plan's i-th phase; phases not reached may be left
    out. Times are written in `time_zone`."""

    phases: tuple[PhaseResults, ...]
    time_zone: str = "UTC"


# --- the shapes of lines ------------------------------------------------------------------

# "## Phase I: Canary (1%)"; the number of #s only matters for the title (one #). A closing
# run of #s after a space is layout (CommonMark), so "## Overview ##" is "Overview".
HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.*?)(?:\s+#+)?$")
# "# Rollout Plan: [Feature Name]": the template's title prefix, dropped from the title.
TITLE_PREFIX = re.compile(r"^Rollout Plan:\s*", re.I)
# "Phase 1: Internal Testing", "Phase II: 25% - 100%".
PHASE_HEADING = re.compile(r"^Phase\s+(?:\d+|[IVXLC]+)\b\s*[:.)\-–—]?\s*(?P<name>.*)$", re.I)
# "**Owner:** [PM Name]", "**Tasks:**": a bold label and what follows it.
FIELD = re.compile(r"^\*\*(?P<key>[^*]+?):\*\*\s*(?P<value>.*)$")
# "> Deploy to internal team members": a phase's description.
QUOTE = re.compile(r"^>\s?(?P<text>.*)$")
# "- [ ] Deploy to staging", "- [x] Done", "- DataDog: …": a list item, checkbox or not.
BULLET = re.compile(r"^[-*+]\s+(?:\[[ xX]\]\s*)?(?P<text>.*)$")
# "---": a thematic break, layout only.
BREAK = re.compile(r"^(?:-{3,}|\*{3,}|_{3,})$")
# "| a | b |": a table row; "|---|:--:|": the row under a table's header.
TABLE_ROW = re.compile(r"^\|.*\|$")
TABLE_RULE = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+$")
# A template blank still to be filled in, e.g. "[X days]", "[1-10]%".
PLACEHOLDER = re.compile(r"\[[^\]]*\]")

# The back-end questionnaire's questions, each answered on its own line.
DESIRED_DATES = re.compile(r"^Desired date range or test duration:\s*(?P<value>.*)$", re.I)
ACTUAL_DATES = re.compile(r"^Actual date range (?:of|or) test duration:\s*(?P<value>.*)$", re.I)
DESIRED_USERS = re.compile(r"^Desired number of users:\s*(?P<value>.*)$", re.I)
AVAILABILITY = re.compile(r"^How will you make the product available[^:]*:\s*(?P<value>.*)$", re.I)
CRITERIA_QUESTION = re.compile(r"^What metrics-based criteria[^?]*\?\)?:?\s*(?P<value>.*)$", re.I)
# "DataDog: No increase in error rates": a success criterion read in Datadog.
DATADOG_PREFIX = re.compile(r"^Data\s?dog:\s*", re.I)

# A number of users: "12,000" (thousands commas) or "3000"; "3000, 6000" is two numbers.
USER_COUNT = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+")
# What may sit between user counts: separators and the words "and"/"users".
USER_FILLER = re.compile(r"^(?:[\s,;/]|and|users?)*$", re.I)

# "25% → 50% → 100%": percents in a chain, each a step.
PERCENT_CHAIN = re.compile(r"\d+(?:\.\d+)?%(?:\s*(?:→|->|>|,|then)\s*\d+(?:\.\d+)?%)+")
# "25% - 100%": a span of percents, stepped by INCREMENT.
PERCENT_SPAN = re.compile(r"(?P<low>\d+(?:\.\d+)?)%\s*(?:-|–|—|to)\s*(?P<high>\d+(?:\.\d+)?)%")
# "increments of 25%".
INCREMENT = re.compile(r"increments? of (?P<size>\d+(?:\.\d+)?)%", re.I)
# "[1-10]%": the template's blank for the canary share.
PLACEHOLDER_SPAN = re.compile(r"\[(?P<low>\d+(?:\.\d+)?)\s*-\s*(?P<high>\d+(?:\.\d+)?)\]%")
PERCENT = re.compile(r"(?<![\d.\[])(?P<value>\d+(?:\.\d+)?)%")
# "Canary (1%)": the share written into a phase's name; the name is "Canary".
NAME_WITH_PERCENT = re.compile(r"^(?P<name>.*?)\s*\((?P<percent>\d+(?:\.\d+)?)%\)$")
INTERNAL_PHASE = re.compile(r"\binternal\b|\bdogfood", re.I)
LAUNCH_PHASE = re.compile(r"\bfull launch\b|\bgeneral availability\b", re.I)

# "3 days", "2 weeks", "at least one full bnusiness day" (sic: the back-end seed's typo of
# "business" is read as the word it means).
DURATION = re.compile(
    r"(?P<amount>\d+(?:\.\d+)?|an?|one|two|three|four|five|six|seven|eight|nine|ten)\s+"
    r"(?:full\s+)?(?:(?:business|bnusiness|working)\s+)?(?P<unit>day|week)s?\b",
    re.I,
)
DATE = re.compile(r"\d{1,2}/\d{1,2}")  # "3/11/24"
WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
WORD_NUMBERS |= {"six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}

# A number as export writes it (Python's shortest form: "25", "0.5", "1e-06").
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?"
# An exported step: "25% — 3000 users, at least 1 business day", "internal (0%) — …".
STEP_LINE = re.compile(
    rf"^(?:(?P<label>[^—]+?)\s+\((?P<labelled>{NUMBER})%\)|(?P<percent>{NUMBER})%)(?:\s+—\s+(?P<details>.+))?$"
)
STEP_USERS = re.compile(r"^(?P<users>\d{1,3}(?:,\d{3})+|\d+) users?$")
STEP_SOAK = re.compile(rf"^at least (?P<days>{NUMBER}) business days?$")

# A metric that moves: "Error rate increases by more than 0.5%" (a trigger),
# "Latency increases by no more than 10% of its baseline" (a criterion).
CHANGE = re.compile(
    r"^(?P<subject>.+?)\s+(?P<verb>increases|rises|grows|decreases|drops|falls)\s+(?:by\s+)?"
    r"(?:no more than|at most|less than|more than|over)\s+(?P<amount>-?\d+(?:\.\d+)?)\s*"
    r"(?P<unit>%|pp|percentage points?|[^\s\d][^\s]*?)?(?P<relative>\s+of (?:its |the )?baseline)?\.?$",
    re.I,
)
# A metric against a bound: "Checkout errors go above 50", "Conversion stays above 2%".
BOUND = re.compile(
    r"^(?P<subject>.+?)\s+(?:goes|go|is|stays|remains)\s+(?P<side>above|over|below|under)\s+"
    r"(?P<amount>-?\d+(?:\.\d+)?)\s*(?P<unit>%|[^\s\d][^\s]*?)?\.?$",
    re.I,
)
# "Records not of type 5103 is not zero" (trigger), "… stays at zero" (criterion).
NOT_ZERO = re.compile(r"^(?P<subject>.+?)\s+(?:is|are) not zero\.?$", re.I)
STAYS_ZERO = re.compile(r"^(?P<subject>.+?)\s+(?:is|are|stays|stay|remains) (?:at )?zero\.?$", re.I)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# "No increase in error rates directly caused by …": read literally, a threshold of 0 (pp for a
# rate, % of the baseline otherwise). Noise will fail it; a team sets a tolerance with
# `/rollout metrics`, and the import says so.
NO_INCREASE = re.compile(r"^no (?:increase|rise) in (?P<subject>.+?)\.?$", re.I)
# "ensure that all doc transactions are in fact for 5103 Letters": everything must be of one
# type, so the count of records of any other type must be zero.
ALL_OF_TYPE = re.compile(
    r"^(?:ensure|check|verify|confirm)?\s*(?:that\s+)?all\s+(?P<records>.+?)\s+are\s+"
    r"(?:in fact\s+|only\s+)?(?:for|of type|of)\s+(?P<kind>[\w-]+)",
    re.I,
)
# Metrics the importer can name from prose, with the key, name and unit the built-in
# templates use, so an imported plan reads like one of ours.
ERROR_RATE = re.compile(r"\berror[- ]?rates?\b", re.I)
LATENCY = re.compile(r"\blatency\b", re.I)
PERCENTILE = re.compile(r"\bp(?P<n>\d{2,3})\b", re.I)

# Success Metrics rows whose Method is one of these are read in Datadog and become metrics;
# others ("Analytics", "Support") stay rows of the table.
DATADOG_METHODS = frozenset({"monitoring", "apm", "datadog", "metrics", "logs", "rum"})
# A Success Metrics target such as "<0.1% increase" or "< 10% increase".
TARGET = re.compile(
    r"^[<≤]\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>%|pp|[a-z]+)?\s+(?P<verb>increase|decrease|rise|drop)$",
    re.I,
)

ROLLBACK_INTRO = "Immediately halt and rollback if:"
GATE_INTRO = (
    "How the bot checks the success criteria and rollback triggers in Datadog; change them with "
    "`/rollout metrics`. A query may use `{feature}`, `{flag}` and `{service}`."
)
GATE_COLUMNS = (
    "Kind", "Key", "Metric", "Rule", "Threshold", "Unit", "Worse when",
    "Aggregator", "Window (min)", "Query", "Control query",
)  # fmt: skip
SUCCESS_KIND = "success criterion"
TRIGGER_KIND = "rollback trigger"
FILL_IN_QUERY = "fill in its Datadog query with `/rollout metrics`"


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    number: int
    text: str  # without surrounding white space


class _Reader:
    """Keeps account of every line: understood, reported, or both."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.understood: set[int] = set()

    def ok(self, line: _Line) -> None:
        self.understood.add(line.number)

    def report(self, line: _Line, reason: str) -> None:
        self.problems.append(Problem(line.number, line.text, reason))


@dataclass
class _Section:
    kind: str
    heading: _Line | None
    title: str
    body: list[_Line] = field(default_factory=list)


@dataclass
class _PhaseDraft:
    heading: _Line
    title: str
    description: list[tuple[_Line, str]] = field(default_factory=list)
    duration: str = ""
    dates: str = ""
    tasks: list[str] = field(default_factory=list)
    exit_criteria: list[str] = field(default_factory=list)
    steps: list[Step] | None = None  # an explicit **Steps:** list
    users: list[int] = field(default_factory=list)
    users_line: _Line | None = None
    days_total: float | None = None  # the phase's duration in business days
    criteria: list[tuple[_Line, str]] = field(default_factory=list)


@dataclass
class _Document:
    title: str = ""
    header: list[tuple[str, str]] = field(default_factory=list)
    availability: str = ""
    overview: list[_Line] = field(default_factory=list)
    strategy: list[_Line] = field(default_factory=list)
    phases: list[_PhaseDraft] = field(default_factory=list)
    success_rows: list[tuple[_Line, SuccessMetricRow]] = field(default_factory=list)
    rollback: list[tuple[_Line, str]] = field(default_factory=list)  # a line, its item's text
    gate: list[tuple[str, Metric]] | None = None  # None: the document has no Metric Gate


def parse_plans(text: str, *, name: str) -> list[ImportResult]:
    """Imports every plan of a document (each `# ` heading starts one). One plan is named
    `name`; several are `name-1`, `name-2`, … Line numbers count from the document's start."""
    groups = _split_plans(_lines(text))
    if len(groups) == 1:
        return [_parse_one(groups[0], name)]
    return [_parse_one(group, f"{name}-{i}") for i, group in enumerate(groups, 1)]


def parse_plan(text: str, *, name: str) -> ImportResult:
    """Imports a plan document. A document holding several plans gives the first, with a
    problem at the start of each of the others (import those with `parse_plans`)."""
    first, *others = _split_plans(_lines(text))
    result = _parse_one(first, name)
    for other in others:
        title = other[0]
        why = "a further plan starts here; only the first plan of the document was imported"
        result.problems.append(Problem(title.number, title.text, why))
    return result


def _lines(text: str) -> list[_Line]:
    return [_Line(n, raw.strip()) for n, raw in enumerate(text.splitlines(), 1)]


def _split_plans(lines: list[_Line]) -> list[list[_Line]]:
    """Cuts a document before every title (`# `) but the first."""
    groups: list[list[_Line]] = [[]]
    titles = 0
    for line in lines:
        if _is_title(line):
            titles += 1
            if titles > 1:
                groups.append([])
        groups[-1].append(line)
    return groups


def _is_title(line: _Line) -> bool:
    heading = HEADING.match(line.text)
    return bool(heading and len(heading["hashes"]) == 1)


def _parse_one(lines: list[_Line], name: str) -> ImportResult:
    reader = _Reader()
    doc = _Document()
    for section in _sections(lines, reader):
        SECTION_READERS[section.kind](section, doc, reader)
    plan = _assemble(doc, name, reader)
    reported = {p.line for p in reader.problems}
    for line in lines:  # the safety net: nothing is dropped without a word
        if line.text and line.number not in reader.understood | reported:
            reader.report(line, "not understood")
    problems = sorted(reader.problems, key=lambda p: p.line)
    return ImportResult(plan, problems, frozenset(reader.understood))


def _sections(lines: list[_Line], reader: _Reader) -> list[_Section]:
    """Cuts the document at its headings. A "Planning" heading continues its phase."""
    sections = [_Section("header", None, "")]
    for line in lines:
        heading = HEADING.match(line.text)
        if not heading:
            sections[-1].body.append(line)
            continue
        kind = _section_kind(heading["text"], len(heading["hashes"]))
        if kind == "planning" and sections[-1].kind == "phase":
            reader.ok(line)
            continue
        sections.append(_Section(kind, line, heading["text"]))
    return sections


def _section_kind(title: str, level: int) -> str:
    if level == 1:
        return "header"
    if PHASE_HEADING.match(title):
        return "phase"
    known = {
        "planning": "planning",
        "results": "results",
        "overview": "overview",
        "rollout strategy": "strategy",
        "success metrics": "success_metrics",
        "rollback triggers": "rollback",
        "metric gate": "metric_gate",
    }
    return known.get(title.rstrip(":").strip().lower(), "unknown")


# --- one reader per section kind -------------------------------------------------------------


def _read_header(section: _Section, doc: _Document, reader: _Reader) -> None:
    """The title and the `**Field:** value` lines under it."""
    if section.heading is not None:
        doc.title = TITLE_PREFIX.sub("", section.title).strip()
        reader.ok(section.heading)
    for line in section.body:
        field_ = FIELD.match(line.text)
        if BREAK.match(line.text):
            reader.ok(line)
        elif field_ and field_["key"].strip().lower() == "availability":
            doc.availability = field_["value"].strip()
            reader.ok(line)
        elif field_:
            doc.header.append((field_["key"].strip(), field_["value"].strip()))
            reader.ok(line)
        elif line.text:
            reader.report(line, "text under the title that is not a `**Field:** value` line")


def _read_overview(section: _Section, doc: _Document, reader: _Reader) -> None:
    _ok_heading(section, reader)
    doc.overview += _prose(section.body, reader)


def _read_strategy(section: _Section, doc: _Document, reader: _Reader) -> None:
    _ok_heading(section, reader)
    doc.strategy += _prose(section.body, reader)


def _prose(lines: list[_Line], reader: _Reader) -> list[_Line]:
    """A section of paragraphs (and thematic breaks): every line is taken."""
    for line in lines:
        if line.text:
            reader.ok(line)
    return lines


def _read_phase(section: _Section, doc: _Document, reader: _Reader) -> None:
    """A phase in either form: template fields and checklists, or the questionnaire."""
    assert section.heading is not None
    match = PHASE_HEADING.match(section.title)
    title = (match["name"] if match else "").strip() or section.title
    draft = _PhaseDraft(section.heading, title)
    reader.ok(section.heading)
    doc.phases.append(draft)
    list_kind = ""  # which list bullets belong to: tasks, exit, steps, criteria
    for line in section.body:
        text = line.text
        if not text:
            continue
        if BREAK.match(text):
            reader.ok(line)
        elif field_ := FIELD.match(text):
            list_kind = _read_phase_field(line, field_["key"], field_["value"].strip(), draft, reader)
        elif quote := QUOTE.match(text):
            draft.description.append((line, quote["text"].strip()))
            reader.ok(line)
        elif (bullet := BULLET.match(text)) and list_kind in ("tasks", "exit", "steps"):
            _read_list_item(line, list_kind, bullet["text"].strip(), draft, reader)
        elif bullet and (list_kind == "criteria" or DATADOG_PREFIX.match(bullet["text"])):
            draft.criteria.append((line, bullet["text"].strip()))
            reader.ok(line)
        elif (kind := _read_question(line, draft, doc, reader)) is not None:
            list_kind = kind
        else:  # free prose is the phase's description: "- In this phase we will expand …"
            draft.description.append((line, bullet["text"].strip() if bullet else text))
            reader.ok(line)
            list_kind = "" if not bullet else list_kind


def _read_phase_field(line: _Line, key: str, value: str, draft: _PhaseDraft, reader: _Reader) -> str:
    """`**Duration:** 3 days`, `**Dates:** …`, or the label of a list. Returns the list kind."""
    lists = {"tasks": "tasks", "exit criteria": "exit", "steps": "steps"}
    key = key.strip().lower()
    if key in lists and not value:
        reader.ok(line)
        return lists[key]
    if key == "duration":
        draft.duration = value
        draft.days_total = _business_days(value)
        reader.ok(line)
    elif key == "dates":
        draft.dates = value
        reader.ok(line)
    else:
        expected = "Duration, Dates, Steps, Tasks or Exit Criteria"
        reader.report(line, f"unknown field “{key}” in a phase; expected {expected}")
    return ""


def _read_list_item(line: _Line, kind: str, text: str, draft: _PhaseDraft, reader: _Reader) -> None:
    if kind == "tasks":
        draft.tasks.append(text)
    elif kind == "exit":
        draft.exit_criteria.append(text)
    else:
        step = _step_from_line(text)
        if step is None:
            reader.report(line, "not a step; write it like `- 25% — 3000 users, at least 1 business day`")
            return
        draft.steps = [*(draft.steps or []), step]
    reader.ok(line)


def _step_from_line(text: str) -> Step | None:
    match = STEP_LINE.match(text)
    if not match:
        return None
    percent = float(match["percent"] or match["labelled"])
    users, days = None, 0.0
    for detail in match["details"].split(", ") if match["details"] else []:
        if m := STEP_USERS.match(detail):
            users = int(m["users"].replace(",", ""))
        elif m := STEP_SOAK.match(detail):
            days = float(m["days"])
        else:
            return None
    return Step(percent, desired_users=users, min_business_days=days, label=(match["label"] or "").strip())


def _read_question(line: _Line, draft: _PhaseDraft, doc: _Document, reader: _Reader) -> str | None:
    """A questionnaire line. Returns the list kind that follows it, None if it is not one."""
    text = line.text
    if m := DESIRED_DATES.match(text):
        value = m["value"].strip()
        if DURATION.search(value) and not DATE.search(value):  # "2 weeks", not "3/11/24 - 3/25/24"
            draft.duration, draft.days_total = value, _business_days(value)
        else:
            draft.dates = value
    elif ACTUAL_DATES.match(text):
        pass  # a result of the run, not part of the plan
    elif m := DESIRED_USERS.match(text):
        _read_users(line, m["value"].strip(), draft, reader)
    elif m := AVAILABILITY.match(text):
        value = m["value"].strip()
        if doc.availability and value and value != doc.availability:
            reader.report(line, f"a second answer to how the product is limited; kept “{doc.availability}”")
            return ""
        doc.availability = doc.availability or value
    elif m := CRITERIA_QUESTION.match(text):
        if m["value"].strip():
            draft.criteria.append((line, m["value"].strip()))
        reader.ok(line)
        return "criteria"
    else:
        return None
    reader.ok(line)
    return ""


def _read_users(line: _Line, value: str, draft: _PhaseDraft, reader: _Reader) -> None:
    if not value or PLACEHOLDER.fullmatch(value):
        return
    counts = USER_COUNT.findall(value)
    if not counts or not USER_FILLER.match(USER_COUNT.sub("", value)):
        reader.report(line, "expected numbers of users like `500` or `3000, 6000, 9000, 12,000`")
        return
    draft.users = [int(c.replace(",", "")) for c in counts]
    draft.users_line = line


def _read_success_metrics(section: _Section, doc: _Document, reader: _Reader) -> None:
    """The `Metric | Baseline | Target | Method` table, kept as written."""
    _ok_heading(section, reader)
    for line, row in _table(section.body, reader):
        cells = (row.get(column, "") for column in ("metric", "baseline", "target", "method"))
        doc.success_rows.append((line, SuccessMetricRow(*cells)))


def _read_rollback(section: _Section, doc: _Document, reader: _Reader) -> None:
    _ok_heading(section, reader)
    for line in section.body:
        if not line.text:
            continue
        if bullet := BULLET.match(line.text):
            doc.rollback.append((line, bullet["text"].strip()))
            reader.ok(line)
        elif line.text.endswith(":") or BREAK.match(line.text):  # "Immediately halt and rollback if:"
            reader.ok(line)
        else:
            reader.report(line, "expected a `- ` list of rollback triggers")


def _read_metric_gate(section: _Section, doc: _Document, reader: _Reader) -> None:
    """The exported table of metrics: each row a complete `Metric` and its kind."""
    _ok_heading(section, reader)
    doc.gate = []
    for line in section.body:
        if line.text == GATE_INTRO:
            reader.ok(line)
    for line, row in _table(section.body, reader):
        try:
            kind, metric = _gate_row(row)
        except (KeyError, ValueError) as exc:
            reader.report(line, f"not a metric: {exc}")
            reader.understood.discard(line.number)
            continue
        doc.gate.append((kind, metric))


def _gate_row(row: dict[str, str]) -> tuple[str, Metric]:
    kind = row["kind"].lower()
    if kind not in (SUCCESS_KIND, TRIGGER_KIND):
        raise ValueError(f"kind must be “{SUCCESS_KIND}” or “{TRIGGER_KIND}”")
    metric = Metric(
        key=row["key"],
        name=row["metric"],
        query=row.get("query", "").strip("`"),
        rule=Rule(row["rule"].lower()),
        threshold=float(row.get("threshold") or 0),
        bad=Direction(row.get("worse when", "up").lower() or "up"),
        aggregator=row.get("aggregator") or "avg",
        window_minutes=int(row.get("window (min)") or 60),
        unit=row.get("unit", ""),
        control_query=row.get("control query", "").strip("`"),
    )
    return kind, metric


def _skip_results(section: _Section, doc: _Document, reader: _Reader) -> None:
    """A past run's results: not part of the plan, so read past them."""
    _ok_heading(section, reader)
    for line in section.body:
        reader.ok(line)


def _report_unknown(section: _Section, doc: _Document, reader: _Reader) -> None:
    if section.heading is not None:
        reader.report(section.heading, "a section the importer does not know; its lines were not imported")
    for line in section.body:
        if line.text:
            reader.report(line, f"in the section “{section.title}”, which the importer does not know")


def _ok_heading(section: _Section, reader: _Reader) -> None:
    if section.heading is not None:
        reader.ok(section.heading)


SECTION_READERS: dict[str, Callable[[_Section, _Document, _Reader], None]] = {
    "header": _read_header,
    "overview": _read_overview,
    "strategy": _read_strategy,
    "phase": _read_phase,
    "planning": _report_unknown,  # only a Planning outside any phase gets here
    "results": _skip_results,
    "success_metrics": _read_success_metrics,
    "rollback": _read_rollback,
    "metric_gate": _read_metric_gate,
    "unknown": _report_unknown,
}


def _table(lines: list[_Line], reader: _Reader) -> list[tuple[_Line, dict[str, str]]]:
    """A Markdown table's rows as {lower-case column name: cell}. `\\|` is a pipe in a cell."""
    columns: list[str] | None = None
    rows = []
    for line in lines:
        if not TABLE_ROW.match(line.text):
            if line.text and line.number not in reader.understood:
                reader.report(line, "expected a table row")
            continue
        reader.ok(line)
        if TABLE_RULE.match(line.text):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.text[1:-1])]
        if columns is None:
            columns = [c.lower() for c in cells]
        else:
            rows.append((line, dict(zip(columns, cells, strict=False))))
    return rows


# --- from drafts to a Plan ---------------------------------------------------------------------


def _assemble(doc: _Document, name: str, reader: _Reader) -> Plan:
    keys: set[str] = set()
    metrics: list[Metric] = []
    phases = []
    for draft in doc.phases:
        phase_name, steps = _resolve_steps(draft, reader)
        exit_criteria = list(draft.exit_criteria)
        for line, text in draft.criteria:
            exit_criteria += _read_criterion(line, text, metrics, keys, doc.gate is not None, reader)
        phases.append(
            Phase(
                name=phase_name,
                steps=steps,
                description=" ".join(text for _, text in draft.description),
                duration=draft.duration,
                tasks=tuple(draft.tasks),
                exit_criteria=tuple(exit_criteria),
                dates=draft.dates,
            )
        )
    if doc.gate is None:
        metrics += _metrics_from_success_table(doc.success_rows, keys, reader)
        triggers, manual = _triggers_from_prose(doc.rollback, keys, reader)
    else:
        metrics = [m for kind, m in doc.gate if kind == SUCCESS_KIND]
        triggers = [m for kind, m in doc.gate if kind == TRIGGER_KIND]
        manual = _manual_triggers_beside_gate(doc.rollback, triggers, reader)
    return Plan(
        name=name,
        title=doc.title,
        phases=tuple(phases),
        description=_paragraphs(doc.overview),
        metrics=tuple(metrics),
        triggers=tuple(triggers),
        manual_triggers=tuple(manual),
        success_table=tuple(row for _, row in doc.success_rows),
        header=tuple(doc.header),
        strategy=_paragraphs(doc.strategy),
        availability=doc.availability,
    )


def _paragraphs(lines: list[_Line]) -> str:
    """Lines of a paragraph are joined by a space, paragraphs by a blank line."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if not line.text or BREAK.match(line.text):
            paragraphs.append([])
        else:
            paragraphs[-1].append(line.text)
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def _resolve_steps(draft: _PhaseDraft, reader: _Reader) -> tuple[str, tuple[Step, ...]]:
    """The phase's name and steps: an explicit **Steps:** list, or read from the prose."""
    if draft.steps is not None:
        if draft.users_line is not None:
            reader.report(draft.users_line, "the **Steps:** list already gives each step's users; not used")
        return draft.title, tuple(draft.steps)
    named = NAME_WITH_PERCENT.match(draft.title)
    name = named["name"] if named else draft.title
    percents, label = _percents(draft, name, float(named["percent"]) if named else None, reader)
    prose = " ".join(text for _, text in draft.description)
    days = _days_per_step(prose, draft.days_total, len(percents))
    users: list[int | None] = [*draft.users]
    if draft.users_line is not None and len(users) != len(percents):
        reader.report(
            draft.users_line, f"{len(users)} numbers of users for {len(percents)} steps; matched in order"
        )
    users += [None] * (len(percents) - len(users))
    steps = (
        Step(p, desired_users=u, min_business_days=days, label=label)
        for p, u in zip(percents, users, strict=False)
    )
    return name, tuple(steps)


def _percents(
    draft: _PhaseDraft, name: str, in_name: float | None, reader: _Reader
) -> tuple[list[float], str]:
    """The shares of users a phase's steps reach, and their label, from the words used."""
    if INTERNAL_PHASE.search(name):
        return [0.0], "internal"
    if LAUNCH_PHASE.search(name):
        return [100.0], "launch"
    for text in [name, *(t for _, t in draft.description), *draft.tasks]:
        if chain := PERCENT_CHAIN.search(text):
            return [float(p) for p in re.findall(r"\d+(?:\.\d+)?", chain[0])], ""
    prose = " ".join([name, *(t for _, t in draft.description)])
    if span := PERCENT_SPAN.search(prose):
        low, high = float(span["low"]), float(span["high"])
        if increment := INCREMENT.search(prose):
            return _stepped(low, high, float(increment["size"])), ""
        reader.report(
            draft.heading, f"no increment given for {span[0]}; made two steps, {low:g}% and {high:g}%"
        )
        return [low, high], ""
    if in_name is not None:
        return [in_name], ""
    for line, text in draft.description:
        if blank := PLACEHOLDER_SPAN.search(text):
            low = float(blank["low"])
            reader.report(
                line, f"the share is still a blank ({blank[0]}); assumed {low:g}% — change the step if wrong"
            )
            return [low], ""
        if percent := PERCENT.search(text):
            return [float(percent["value"])], ""
    reader.report(draft.heading, "no share of users found for this phase; made one 0% step labelled “manual”")
    return [0.0], "manual"


def _stepped(low: float, high: float, size: float) -> list[float]:
    if size <= 0:
        return [low, high]
    count = math.floor((high - low) / size + 1e-9)
    percents = [low + i * size for i in range(count + 1)]
    return percents if percents[-1] == high else [*percents, high]


def _days_per_step(prose: str, days_total: float | None, count: int) -> float:
    """Days a step must soak: "at increments of 25%, allowing at least one full business day"
    gives each step that much; a phase's Duration is shared by its steps, rounded up to half
    days so that together they last at least as long."""
    if INCREMENT.search(prose) and (per_step := _business_days(prose)) is not None:
        return per_step
    if days_total:
        return math.ceil(days_total / count * 2) / 2
    return 0.0


def _business_days(text: str) -> float | None:
    if PLACEHOLDER.search(text):
        return None
    match = DURATION.search(text)
    if not match:
        return None
    amount = match["amount"].lower()
    number = float(WORD_NUMBERS.get(amount, 0) or amount)
    return number * 5 if match["unit"].lower() == "week" else number


# --- metrics from prose ---------------------------------------------------------------------------


def _read_criterion(
    line: _Line, text: str, metrics: list[Metric], keys: set[str], has_gate: bool, reader: _Reader
) -> list[str]:
    """A success criterion line. A metric the importer recognises joins `metrics` (with no
    query yet, which is reported); the rest of the line stays as exit criteria to tick."""
    body = DATADOG_PREFIX.sub("", text).strip()
    if not body:
        return []  # an empty "- DataDog:" blank
    if has_gate:
        reader.report(line, "the Metric Gate table holds the metrics; kept this as an exit criterion")
        return [text]
    first, rest = _first_sentence(body)
    metric = _criterion_metric(first)
    if metric is None:
        reader.report(line, "no metric recognised; kept as an exit criterion to tick by hand")
        return [text]
    metric = _with_unique_key(metric, keys)
    metrics.append(metric)
    reader.report(line, f"made the metric “{metric.name}” ({_rule_summary(metric)}); {FILL_IN_QUERY}")
    return [rest.rstrip(".")] if rest else []


def _first_sentence(text: str) -> tuple[str, str]:
    """("ensure that all … 5103 Letters", "Note any discrepancies … DDL")."""
    first, *rest = SENTENCE_END.split(text, maxsplit=1)
    return first.rstrip("."), "".join(rest).strip()


def _criterion_metric(text: str) -> Metric | None:
    if m := NO_INCREASE.match(text):
        key, name, unit = _known_metric(m["subject"])
        rule = Rule.ABSOLUTE if unit == "%" else Rule.RELATIVE
        return Metric(key, name, "", rule, 0.0, Direction.UP, unit=unit)
    if m := ALL_OF_TYPE.match(text):
        kind = m["kind"]
        key = _slug(f"records not of type {kind}")
        return Metric(key, f"Records not of type {kind}", "", Rule.ZERO, aggregator="sum", unit="records")
    return _metric_from_sentence(text, trigger=False)


def _metric_from_sentence(text: str, *, trigger: bool) -> Metric | None:
    """A metric from a sentence like "Error rate increases by more than 0.5%".

    A bare "%" means percentage points for a metric that is itself a rate (error rate) and a
    change relative to the baseline otherwise (latency); "pp" and "% of its baseline" say it
    outright. "Above"/"below" is the side that fires a trigger or that a criterion stays on."""
    if m := CHANGE.match(text):
        key, name, unit = _known_metric(m["subject"])
        bad = Direction.UP if m["verb"].lower() in ("increases", "rises", "grows") else Direction.DOWN
        token = (m["unit"] or "").lower()
        if token.startswith(("pp", "percentage point")):
            rule, unit = Rule.ABSOLUTE, "%"
        elif token == "%":
            rule = Rule.RELATIVE if m["relative"] or unit != "%" else Rule.ABSOLUTE
        elif token:
            rule, unit = Rule.ABSOLUTE, token
        else:
            rule = Rule.ABSOLUTE
        return Metric(key, name, "", rule, float(m["amount"]), bad, unit=unit)
    if m := BOUND.match(text):
        key, name, unit = _known_metric(m["subject"])
        above = m["side"].lower() in ("above", "over")
        rule = Rule.UPPER if above == trigger else Rule.LOWER
        bad = Direction.UP if rule is Rule.UPPER else Direction.DOWN
        return Metric(key, name, "", rule, float(m["amount"]), bad, unit=m["unit"] or unit)
    if m := (NOT_ZERO if trigger else STAYS_ZERO).match(text):
        key, name, unit = _known_metric(m["subject"])
        return Metric(key, name, "", Rule.ZERO, aggregator="sum", unit=unit)
    return None


def _known_metric(subject: str) -> tuple[str, str, str]:
    """Key, name and unit for a metric named in prose: ours for error rate and latency, else
    the words as written."""
    if ERROR_RATE.search(subject):
        return "error_rate", "Error rate", "%"
    if LATENCY.search(subject):
        if p := PERCENTILE.search(subject):
            return f"latency_p{p['n']}", f"Latency (p{p['n']})", "ms"
        return "latency", "Latency", "ms"
    name = subject.strip()
    name = name[:1].upper() + name[1:]
    return _slug(name), name, "%" if re.search(r"\brate\b", name, re.I) else ""


def _metrics_from_success_table(
    rows: list[tuple[_Line, SuccessMetricRow]], keys: set[str], reader: _Reader
) -> list[Metric]:
    """Rows measured in Datadog whose target is a threshold ("<0.1% increase") become metrics."""
    metrics = []
    for line, row in rows:
        if row.method.strip().lower() not in DATADOG_METHODS or PLACEHOLDER.search(row.target):
            continue
        target = TARGET.match(row.target.strip())
        if not target:
            reader.report(
                line, f"target “{row.target}” is not a threshold like “<10% increase”; no metric made"
            )
            continue
        verb = "increases" if target["verb"].lower() in ("increase", "rise") else "decreases"
        sentence = f"{row.metric} {verb} by no more than {target['amount']}{target['unit'] or ''}"
        metric = _metric_from_sentence(sentence, trigger=False)
        assert metric is not None  # the sentence is built in the form CHANGE reads
        metric = _with_unique_key(metric, keys)
        metrics.append(metric)
        reader.report(line, f"made the metric “{metric.name}” ({_rule_summary(metric)}); {FILL_IN_QUERY}")
    return metrics


def _triggers_from_prose(
    items: list[tuple[_Line, str]], keys: set[str], reader: _Reader
) -> tuple[list[Metric], list[str]]:
    """Rollback triggers with a number become metrics; the others are checked by people."""
    triggers, manual = [], []
    for line, text in items:
        metric = _metric_from_sentence(text, trigger=True)
        if metric is None:
            manual.append(text)
            continue
        suffix = "_spike" if metric.bad is Direction.UP else "_drop"
        metric = _with_unique_key(Metric(**{**metric.to_dict(), "key": metric.key + suffix}), keys)
        triggers.append(metric)
        reader.report(line, f"made the trigger “{metric.name}” ({_rule_summary(metric)}); {FILL_IN_QUERY}")
    return triggers, manual


def _manual_triggers_beside_gate(
    items: list[tuple[_Line, str]], triggers: list[Metric], reader: _Reader
) -> list[str]:
    """With a Metric Gate table, a trigger sentence only restates a row of it; the table wins."""
    manual = []
    exported = {_trigger_sentence(t) for t in triggers}
    for line, text in items:
        if text in exported:
            continue
        said = _metric_from_sentence(text, trigger=True)
        names = {_subject(text).lower(), said.name.lower()} if said else set()
        row = next((t for t in triggers if t.name.lower() in names), None)
        if said is None:
            manual.append(text)
        elif row is None:
            manual.append(text)
            reader.report(
                line,
                "reads like a metric, but the Metric Gate table has no such trigger; kept to check by hand",
            )
        elif (said.rule, said.threshold, said.bad) != (row.rule, row.threshold, row.bad):
            reader.report(
                line, f"disagrees with the Metric Gate table ({_rule_summary(row)}); the table is used"
            )
    return manual


def _subject(sentence: str) -> str:
    """The metric a trigger sentence names, as written."""
    match = CHANGE.match(sentence) or BOUND.match(sentence) or NOT_ZERO.match(sentence)
    return match["subject"] if match else ""


def _with_unique_key(metric: Metric, keys: set[str]) -> Metric:
    key, n = metric.key, 2
    while key in keys:
        key, n = f"{metric.key}_{n}", n + 1
    keys.add(key)
    return metric if key == metric.key else Metric(**{**metric.to_dict(), "key": key})


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "metric"


def _rule_summary(metric: Metric) -> str:
    """E.g. "absolute, +0.5 pp vs baseline", "relative, +50% vs baseline", "must be 0"."""
    sign = "+" if metric.bad is Direction.UP else "−"
    match metric.rule:
        case Rule.RELATIVE:
            return f"relative, {sign}{_num(metric.threshold)}% vs baseline"
        case Rule.ABSOLUTE:
            unit = "pp" if metric.unit == "%" else metric.unit
            return f"absolute, {sign}{_amount(metric.threshold, unit)} vs baseline"
        case Rule.UPPER:
            return f"upper bound, {_amount(metric.threshold, metric.unit)}"
        case Rule.LOWER:
            return f"lower bound, {_amount(metric.threshold, metric.unit)}"
        case Rule.ZERO:
            return "must be 0"


# --- export --------------------------------------------------------------------------------------


def export_plan(plan: Plan, *, results: RolloutResults | None = None) -> str:
    """The plan in the template's Markdown form; with `results`, what happened in each phase.
    The layout is messages/templates/plan_export.md.j2; this only prepares the text it places."""
    tz = results.time_zone if results else "UTC"
    phase_results = results.phases if results else ()
    phases = [
        _phase_view(number, phase, phase_results[number - 1] if number <= len(phase_results) else None, tz)
        for number, phase in enumerate(plan.phases, 1)
    ]
    text = render(
        "plan_export.md",
        title=plan.title,
        header=list(plan.header),
        availability=plan.availability,
        overview=plan.description,
        strategy=plan.strategy,
        phases=phases,
        success_table=[
            [_cell(r.metric), _cell(r.baseline), _cell(r.target), _cell(r.method)] for r in plan.success_table
        ],
        rollback_intro=ROLLBACK_INTRO,
        triggers=[_trigger_sentence(t) for t in plan.triggers] + list(plan.manual_triggers),
        gate_intro=GATE_INTRO,
        gate_columns=GATE_COLUMNS,
        gate_rows=[_gate_cells(SUCCESS_KIND, m) for m in plan.metrics]
        + [_gate_cells(TRIGGER_KIND, t) for t in plan.triggers],
        time_zone=tz if results else "",
    )
    return text + "\n"


def _phase_view(number: int, phase: Phase, results: PhaseResults | None, tz: str) -> dict[str, Any]:
    return {
        "number": number,
        "name": phase.name,
        "description": " ".join(phase.description.split("\n")),
        "duration": phase.duration,
        "dates": phase.dates,
        "steps": [_step_line(step) for step in phase.steps],
        "tasks": list(phase.tasks),
        "exit_criteria": list(phase.exit_criteria),
        "results": _results_view(phase, results, tz) if results else None,
    }


def _step_line(step: Step) -> str:
    share = f"{step.label} ({_num(step.percent)}%)" if step.label else f"{_num(step.percent)}%"
    details = []
    if step.desired_users is not None:
        details.append(f"{step.desired_users} users")
    if step.min_business_days:
        days = _num(step.min_business_days)
        details.append(f"at least {days} business day{'' if days == '1' else 's'}")
    return f"{share} — {', '.join(details)}" if details else share


def _trigger_sentence(metric: Metric) -> str:
    """A trigger in words that `_metric_from_sentence` reads back to the same rule."""
    verb = "increases" if metric.bad is Direction.UP else "decreases"
    match metric.rule:
        case Rule.RELATIVE:
            return f"{metric.name} {verb} by more than {_num(metric.threshold)}% of its baseline"
        case Rule.ABSOLUTE:
            unit = "pp" if metric.unit == "%" else metric.unit
            return f"{metric.name} {verb} by more than {_num(metric.threshold)}{' ' + unit if unit else ''}"
        case Rule.UPPER:
            return f"{metric.name} goes above {_amount(metric.threshold, metric.unit)}"
        case Rule.LOWER:
            return f"{metric.name} goes below {_amount(metric.threshold, metric.unit)}"
        case Rule.ZERO:
            return f"{metric.name} is not zero"


def _gate_cells(kind: str, m: Metric) -> list[str]:
    code = [f"`{q}`" if q else "" for q in (m.query, m.control_query)]
    values = [kind, m.key, m.name, m.rule.value, _num(m.threshold), m.unit, m.bad.value, m.aggregator]
    return [_cell(v) for v in values] + [str(m.window_minutes)] + [_cell(c) for c in code]


def _results_view(phase: Phase, results: PhaseResults, tz: str) -> dict[str, Any]:
    items = [*phase.tasks, *phase.exit_criteria]
    items += [text for text in results.checked if text not in items]  # ticked, then edited out
    checklist = []
    for text in items:
        tick = results.checked.get(text)
        checklist.append(f"[x] {text} — @{tick.user}, {_when(tick.at, tz)}" if tick else f"[ ] {text}")
    return {
        "started": _when(results.started, tz) or "not yet",
        "completed": _when(results.completed, tz) or "not yet",
        "steps": [
            f"{s.title}{f' — {s.users} users' if s.users is not None else ''} — reached {_when(s.reached_at, tz)}"
            for s in results.steps
        ],
        "checklist": checklist,
        "snapshots": [
            {"taken_at": _when(s.taken_at, tz), "rows": [_reading_cells(r) for r in s.readings]}
            for s in results.snapshots
        ],
        "decisions": [
            f"{_when(d.at, tz)} — @{d.user}: {d.text}{f' — reason: {d.reason}' if d.reason else ''}"
            for d in results.decisions
        ],
    }


def _reading_cells(reading: Reading) -> list[str]:
    def shown(value: float | None) -> str:
        return "no data" if value is None else _amount(value, reading.unit)

    values = [reading.metric, shown(reading.value), shown(reading.baseline), reading.allowed, reading.verdict]
    return [_cell(v) for v in values]


def _when(moment: datetime | None, tz: str) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(tz)) if moment.tzinfo else moment
    return local.strftime("%Y-%m-%d %H:%M")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _num(value: float) -> str:
    """Shortest text that reads back as the same float: 0.5, 25, 0.05."""
    text = f"{value:g}"
    return text if float(text) == value else repr(float(value))


def _amount(value: float, unit: str) -> str:
    if unit == "%":
        return f"{_num(value)}%"
    return f"{_num(value)} {unit}" if unit else _num(value)
