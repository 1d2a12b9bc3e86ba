"""From a document's text to Plans: lines, sections, drafts, then each phase's steps and the
plan's metrics, with every line that did not go in as written reported by its number.

A phase's steps are its explicit `**Steps:**` list when it has one; otherwise they are read
from the words used: its name ("Internal Testing", "Canary (1%)", "Full Launch"), a chain
"25% → 50% → 100%", a span "25% - 100%" stepped by "increments of 25%", the template's blank
"[1-10]%", or any percent in its description. Users ("Desired number of users:") are matched
to the steps in order, and the phase's Duration is shared among them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bot.domain.plans.markdown import lexer
from bot.domain.plans.markdown.lexer import BREAK, Line
from bot.domain.plans.markdown.metrics import (
    Keys,
    manual_triggers_beside_gate,
    metrics_from_success_table,
    read_criterion,
    triggers_from_prose,
)
from bot.domain.plans.markdown.reader import (
    Document,
    PhaseDraft,
    Problem,
    Reader,
    business_days,
    read_sections,
)
from bot.domain.plans.markdown.vocabulary import SUCCESS_KIND, TRIGGER_KIND
from bot.domain.plans.model import Metric, Phase, Plan, Step

# `(?<!\d)` before a number: a match never starts inside a run of digits (one from the run's
# start comes first), and saying so stops the search from rescanning the run from each digit,
# which was quadratic in the run's length. The same for `(?<!\s)` before a run of spaces.
# "25% → 50% → 100%": percents in a chain, each a step.
PERCENT_CHAIN = re.compile(r"(?<!\d)\d+(?:\.\d+)?%(?:\s*(?:→|->|>|,|then)\s*\d+(?:\.\d+)?%)+")
# "25% - 100%": a span of percents, stepped by INCREMENT.
PERCENT_SPAN = re.compile(r"(?P<low>(?<!\d)\d+(?:\.\d+)?)%\s*(?:-|–|—|to)\s*(?P<high>\d+(?:\.\d+)?)%")
# "increments of 25%".
INCREMENT = re.compile(r"increments? of (?P<size>\d+(?:\.\d+)?)%", re.I)
# "[1-10]%": the template's blank for the canary share.
PLACEHOLDER_SPAN = re.compile(r"\[(?P<low>\d+(?:\.\d+)?)\s*-\s*(?P<high>\d+(?:\.\d+)?)\]%")
PERCENT = re.compile(r"(?<![\d.\[])(?P<value>\d+(?:\.\d+)?)%")
# "Canary (1%)": the share written into a phase's name; the name is "Canary".
NAME_WITH_PERCENT = re.compile(r"^(?P<name>.*?)(?<!\s)\s*\((?P<percent>\d+(?:\.\d+)?)%\)$")
INTERNAL_PHASE = re.compile(r"\binternal\b|\bdogfood", re.I)
LAUNCH_PHASE = re.compile(r"\bfull launch\b|\bgeneral availability\b", re.I)


@dataclass(frozen=True)
class ImportResult:
    plan: Plan
    problems: list[Problem]
    understood: frozenset[int] = frozenset()  # numbers of the lines that went into the plan


def parse_plans(text: str, *, name: str) -> list[ImportResult]:
    """Imports every plan of a document (each `# ` heading starts one). One plan is named
    `name`; several are `name-1`, `name-2`, … Line numbers count from the document's start.
    Raises DocumentTooLarge for a document over MAX_DOCUMENT_BYTES."""
    lexer.check_size(text)
    groups = lexer.split_plans(lexer.lines(text))
    if len(groups) == 1:
        return [_parse_one(groups[0], name)]
    return [_parse_one(group, f"{name}-{i}") for i, group in enumerate(groups, 1)]


def parse_plan(text: str, *, name: str) -> ImportResult:
    """Imports a plan document. A document holding several plans gives the first, with a
    problem at the start of each of the others (import those with `parse_plans`). Raises
    DocumentTooLarge for a document over MAX_DOCUMENT_BYTES."""
    lexer.check_size(text)
    first, *others = lexer.split_plans(lexer.lines(text))
    result = _parse_one(first, name)
    for other in others:
        title = other[0]
        why = "a further plan starts here; only the first plan of the document was imported"
        result.problems.append(Problem(title.number, title.text, why))
    return result


def _parse_one(lines: list[Line], name: str) -> ImportResult:
    reader = Reader()
    doc = read_sections(lexer.sections(lines), reader)
    plan = _assemble(doc, name, reader)
    # The safety net: nothing is dropped without a word. One set of the lines accounted for,
    # made once: a union per line would copy it for every line, quadratic in the document.
    accounted = reader.understood | {p.line for p in reader.problems}
    for line in lines:
        if line.text and line.number not in accounted:
            reader.report(line, "not understood")
    problems = sorted(reader.problems, key=lambda p: p.line)
    return ImportResult(plan, problems, frozenset(reader.understood))


def _assemble(doc: Document, name: str, reader: Reader) -> Plan:
    keys = Keys()
    metrics: list[Metric] = []
    phases = []
    for draft in doc.phases:
        phase_name, steps = _resolve_steps(draft, reader)
        exit_criteria = list(draft.exit_criteria)
        for line, text in draft.criteria:
            exit_criteria += read_criterion(line, text, metrics, keys, doc.gate is not None, reader)
        phases.append(
            Phase(
                name=phase_name,
                steps=steps,
                description=" ".join(text for _, text in draft.description),
                duration=draft.duration,
                tasks=tuple(draft.tasks),
                exit_criteria=tuple(exit_criteria),
                dates=draft.dates,
                advance=draft.advance,
            )
        )
    if doc.gate is None:
        metrics += metrics_from_success_table(doc.success_rows, keys, reader)
        triggers, manual = triggers_from_prose(doc.rollback, keys, reader)
    else:
        metrics = [m for kind, m in doc.gate if kind == SUCCESS_KIND]
        triggers = [m for kind, m in doc.gate if kind == TRIGGER_KIND]
        manual = manual_triggers_beside_gate(doc.rollback, triggers, reader)
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


def _paragraphs(lines: list[Line]) -> str:
    """Lines of a paragraph are joined by a space, paragraphs by a blank line."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if not line.text or BREAK.match(line.text):
            paragraphs.append([])
        else:
            paragraphs[-1].append(line.text)
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def _resolve_steps(draft: PhaseDraft, reader: Reader) -> tuple[str, tuple[Step, ...]]:
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


def _percents(draft: PhaseDraft, name: str, in_name: float | None, reader: Reader) -> tuple[list[float], str]:
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
    if INCREMENT.search(prose) and (per_step := business_days(prose)) is not None:
        return per_step
    if days_total:
        return math.ceil(days_total / count * 2) / 2
    return 0.0
