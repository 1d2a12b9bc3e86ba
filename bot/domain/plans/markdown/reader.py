"""The sections of a plan read into drafts, in the words of the plan template.

One reader per kind of section: the header (title and `**Field:** value` lines), Overview and
Rollout Strategy (prose), a phase (in the template's form or the questionnaire's), Success
Metrics (a table), Rollback Triggers (a list), the exported Metric Gate (a table of complete
metrics), Results (a past run: skipped) and any other section (reported). What a section says
goes into a `Document` of drafts; assembly.py makes the Plan of them.

Every line is accounted for by the `Reader`: understood, reported as a `Problem`, or both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.domain.formulas import parse_control, parse_source
from bot.domain.plans.markdown.lexer import (
    BREAK,
    BULLET,
    FIELD,
    PHASE_HEADING,
    PLACEHOLDER,
    QUOTE,
    TABLE_ROW,
    TABLE_RULE,
    Line,
    Section,
    has_placeholder,
    table_cells,
)
from bot.domain.plans.markdown.vocabulary import (
    AT_THRESHOLD,
    GATE_INTRO,
    MAX_USER_DIGITS,
    SUCCESS_KIND,
    TRIGGER_KIND,
    judge_from_cell,
    step_from_line,
)
from bot.domain.plans.model import Comparison, Direction, Metric, Rule, Step, SuccessMetricRow

# "# Rollout Plan: [Feature Name]": the template's title prefix, dropped from the title.
TITLE_PREFIX = re.compile(r"^Rollout Plan:\s*", re.I)

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

# "3 days", "2 weeks", "at least one full bnusiness day" (sic: the back-end seed's typo of
# "business" is read as the word it means). `(?<!\d)`: a number is read from its first digit,
# not retried from each of its digits (quadratic in a long run of digits).
DURATION = re.compile(
    r"(?P<amount>(?<!\d)\d+(?:\.\d+)?|an?|one|two|three|four|five|six|seven|eight|nine|ten)\s+"
    r"(?:full\s+)?(?:(?:business|bnusiness|working)\s+)?(?P<unit>day|week)s?\b",
    re.I,
)
DATE = re.compile(r"\d{1,2}/\d{1,2}")  # "3/11/24"
WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
WORD_NUMBERS |= {"six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


@dataclass(frozen=True)
class Problem:
    """A line the importer could not take as written: its number (1-based), text and why."""

    line: int
    text: str
    reason: str


class Reader:
    """Keeps account of every line: understood, reported, or both."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.understood: set[int] = set()

    def ok(self, line: Line) -> None:
        self.understood.add(line.number)

    def report(self, line: Line, reason: str) -> None:
        self.problems.append(Problem(line.number, line.text, reason))


@dataclass
class PhaseDraft:
    heading: Line
    title: str
    description: list[tuple[Line, str]] = field(default_factory=list)
    duration: str = ""
    dates: str = ""
    advance: str = ""  # "auto" | "manual" (bot/domain/windows.py); "" = the plan's
    tasks: list[str] = field(default_factory=list)
    exit_criteria: list[str] = field(default_factory=list)
    steps: list[Step] | None = None  # an explicit **Steps:** list
    users: list[int] = field(default_factory=list)
    users_line: Line | None = None
    days_total: float | None = None  # the phase's duration in business days
    criteria: list[tuple[Line, str]] = field(default_factory=list)


@dataclass
class Document:
    title: str = ""
    header: list[tuple[str, str]] = field(default_factory=list)
    availability: str = ""
    overview: list[Line] = field(default_factory=list)
    strategy: list[Line] = field(default_factory=list)
    phases: list[PhaseDraft] = field(default_factory=list)
    success_rows: list[tuple[Line, SuccessMetricRow]] = field(default_factory=list)
    rollback: list[tuple[Line, str]] = field(default_factory=list)  # a line, its item's text
    gate: list[tuple[str, Metric]] | None = None  # None: the document has no Metric Gate


def read_sections(sections: list[Section], reader: Reader) -> Document:
    doc = Document()
    for section in sections:
        for heading in section.continued:
            reader.ok(heading)
        SECTION_READERS[section.kind](section, doc, reader)
    return doc


# --- one reader per section kind -------------------------------------------------------------


def _read_header(section: Section, doc: Document, reader: Reader) -> None:
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


def _read_overview(section: Section, doc: Document, reader: Reader) -> None:
    _ok_heading(section, reader)
    doc.overview += _prose(section.body, reader)


def _read_strategy(section: Section, doc: Document, reader: Reader) -> None:
    _ok_heading(section, reader)
    doc.strategy += _prose(section.body, reader)


def _prose(lines: list[Line], reader: Reader) -> list[Line]:
    """A section of paragraphs (and thematic breaks): every line is taken."""
    for line in lines:
        if line.text:
            reader.ok(line)
    return lines


def _read_phase(section: Section, doc: Document, reader: Reader) -> None:
    """A phase in either form: template fields and checklists, or the questionnaire."""
    assert section.heading is not None
    match = PHASE_HEADING.match(section.title)
    title = (match["name"] if match else "").strip() or section.title
    draft = PhaseDraft(section.heading, title)
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


def _read_phase_field(line: Line, key: str, value: str, draft: PhaseDraft, reader: Reader) -> str:
    """`**Duration:** 3 days`, `**Dates:** …`, or the label of a list. Returns the list kind."""
    lists = {"tasks": "tasks", "exit criteria": "exit", "steps": "steps"}
    key = key.strip().lower()
    if key in lists and not value:
        reader.ok(line)
        return lists[key]
    if key == "duration":
        draft.duration = value
        draft.days_total = business_days(value)
        reader.ok(line)
    elif key == "dates":
        draft.dates = value
        reader.ok(line)
    elif key == "advance" and value.strip().lower() in ("auto", "manual"):
        draft.advance = value.strip().lower()
        reader.ok(line)
    elif key == "advance":
        reader.report(line, f"advance is “auto” or “manual”, not “{value[:40]}”")
    else:
        expected = "Duration, Dates, Advance, Steps, Tasks or Exit Criteria"
        reader.report(line, f"unknown field “{key}” in a phase; expected {expected}")
    return ""


def _read_list_item(line: Line, kind: str, text: str, draft: PhaseDraft, reader: Reader) -> None:
    if kind == "tasks":
        draft.tasks.append(text)
    elif kind == "exit":
        draft.exit_criteria.append(text)
    else:
        step = step_from_line(text)
        if step is None:
            reader.report(line, "not a step; write it like `- 25% — 3000 users, at least 1 business day`")
            return
        if draft.steps is None:
            draft.steps = []
        draft.steps.append(step)  # in place: a copy per step would be quadratic in a long list
    reader.ok(line)


def _read_question(line: Line, draft: PhaseDraft, doc: Document, reader: Reader) -> str | None:
    """A questionnaire line. Returns the list kind that follows it, None if it is not one."""
    text = line.text
    if m := DESIRED_DATES.match(text):
        value = m["value"].strip()
        if DURATION.search(value) and not DATE.search(value):  # "2 weeks", not "3/11/24 - 3/25/24"
            draft.duration, draft.days_total = value, business_days(value)
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


def _read_users(line: Line, value: str, draft: PhaseDraft, reader: Reader) -> None:
    if not value or PLACEHOLDER.fullmatch(value):
        return
    counts = USER_COUNT.findall(value)
    too_long = any(len(c) > MAX_USER_DIGITS for c in counts)
    if not counts or too_long or not USER_FILLER.match(USER_COUNT.sub("", value)):
        reader.report(line, "expected numbers of users like `500` or `3000, 6000, 9000, 12,000`")
        return
    draft.users = [int(c.replace(",", "")) for c in counts]
    draft.users_line = line


def business_days(text: str) -> float | None:
    if has_placeholder(text):
        return None
    match = DURATION.search(text)
    if not match:
        return None
    amount = match["amount"].lower()
    number = float(WORD_NUMBERS.get(amount, 0) or amount)
    return number * 5 if match["unit"].lower() == "week" else number


def _read_success_metrics(section: Section, doc: Document, reader: Reader) -> None:
    """The `Metric | Baseline | Target | Method` table, kept as written."""
    _ok_heading(section, reader)
    for line, row in _table(section.body, reader):
        cells = (row.get(column, "") for column in ("metric", "baseline", "target", "method"))
        doc.success_rows.append((line, SuccessMetricRow(*cells)))


def _read_rollback(section: Section, doc: Document, reader: Reader) -> None:
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


def _read_metric_gate(section: Section, doc: Document, reader: Reader) -> None:
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
    source = parse_source(row.get("query", "").strip("`"))
    control = row.get("control query", "").strip("`")
    names = tuple(name for name, _ in source.queries)
    judge, critical, weight = judge_from_cell(row.get("judge", ""))
    metric = Metric(
        key=row["key"],
        name=row["metric"],
        query=source.query,
        rule=Rule(row["rule"].lower()),
        threshold=float(row.get("threshold") or 0),
        bad=Direction(row.get("worse when", "up").lower() or "up"),
        aggregator=row.get("aggregator") or "avg",
        window_minutes=int(row.get("window (min)") or 60),
        unit=row.get("unit", ""),
        control_query="" if names else control,
        queries=source.queries,
        formula=source.formula,
        control_queries=parse_control(control, names) if names and control else (),
        min_count=source.min_count,
        judge=judge,
        critical=critical,
        weight=weight,
        comparison=_comparison(row.get("at threshold", "")),
    )
    return kind, metric


def _comparison(cell: str) -> Comparison:
    """The "At threshold" cell; empty (a table exported before the column) means "passes"."""
    for comparison, words in AT_THRESHOLD.items():
        if cell.strip().lower() in (words, comparison.value):
            return comparison
    if not cell.strip():
        return Comparison.INCLUSIVE
    passes, fails = AT_THRESHOLD[Comparison.INCLUSIVE], AT_THRESHOLD[Comparison.STRICT]
    raise ValueError(f"at threshold must be “{passes}” or “{fails}”")


def _skip_results(section: Section, doc: Document, reader: Reader) -> None:
    """A past run's results: not part of the plan, so read past them."""
    _ok_heading(section, reader)
    for line in section.body:
        reader.ok(line)


def _report_unknown(section: Section, doc: Document, reader: Reader) -> None:
    if section.heading is not None:
        reader.report(section.heading, "a section the importer does not know; its lines were not imported")
    for line in section.body:
        if line.text:
            reader.report(line, f"in the section “{section.title}”, which the importer does not know")


def _ok_heading(section: Section, reader: Reader) -> None:
    if section.heading is not None:
        reader.ok(section.heading)


SECTION_READERS: dict[str, Callable[[Section, Document, Reader], None]] = {
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


def _table(lines: list[Line], reader: Reader) -> list[tuple[Line, dict[str, str]]]:
    """A Markdown table's rows as {lower-case column name: cell}."""
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
        cells = table_cells(line.text)
        if columns is None:
            columns = [c.lower() for c in cells]
        else:
            rows.append((line, dict(zip(columns, cells, strict=False))))
    return rows
