"""A plan as a Markdown document: the house template's form, which bot/domain/plans/markdown
reads back.

`export_plan` writes the template form plus the two things the template has no place for and
the bot needs to run a plan: a `**Steps:**` list in each phase and a `## Metric Gate` table
holding every metric's rule and Datadog query; the importer takes those as written, so an
exported plan imports back unchanged. Steps, trigger sentences and the Metric Gate are written
in the words of bot/domain/plans/markdown/vocabulary.py, which the importer reads.

With `results`, each phase also gets a "Results" section saying what happened in it; the
importer skips those. Plain Markdown, not mrkdwn: nothing is Slack-escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.calendar import format_day
from bot.domain.formulas import control_text, source_text
from bot.domain.plans.markdown.vocabulary import (
    AT_THRESHOLD,
    GATE_COLUMNS,
    GATE_INTRO,
    ROLLBACK_INTRO,
    SUCCESS_KIND,
    TRIGGER_KIND,
    amount,
    judge_cell,
    num,
    step_line,
    trigger_sentence,
)
from bot.domain.plans.model import Metric, Phase, Plan
from bot.domain.plans.results import PhaseResults, Reading, RolloutResults
from messages.render import render

__all__ = ["export_plan"]


def export_plan(
    plan: Plan, *, results: RolloutResults | None = None, charts: Sequence[tuple[str, str]] = ()
) -> str:
    """The plan in the template's Markdown form; with `results`, what happened in each phase;
    with `charts` ((title, file name) pairs), a Charts section showing the files saved beside
    it. The layout is messages/templates/plan_export.md.j2; this only prepares the text it places."""
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
        triggers=[_item(trigger_sentence(t)) for t in plan.triggers]
        + [_item(m) for m in plan.manual_triggers],
        gate_intro=GATE_INTRO,
        gate_columns=GATE_COLUMNS,
        gate_rows=[_gate_cells(SUCCESS_KIND, m) for m in plan.metrics]
        + [_gate_cells(TRIGGER_KIND, t) for t in plan.triggers],
        time_zone=tz if results else "",
        charts=[{"title": _cell(title).replace("]", ")"), "filename": name} for title, name in charts],
    )
    return text + "\n"


def _phase_view(number: int, phase: Phase, results: PhaseResults | None, tz: str) -> dict[str, Any]:
    return {
        "number": number,
        "name": phase.name,
        "description": " ".join(phase.description.split("\n")),
        "duration": phase.duration,
        "dates": phase.dates,
        "advance": phase.advance,
        "steps": [step_line(step) for step in phase.steps],
        "tasks": list(phase.tasks),
        "exit_criteria": list(phase.exit_criteria),
        "results": _results_view(phase, results, tz) if results else None,
    }


def _gate_cells(kind: str, m: Metric) -> list[str]:
    sources = (
        source_text(m.query, m.queries, m.formula, m.min_count),
        control_text(m.control_query, m.control_queries),
    )
    code = [f"`{q}`" if q else "" for q in sources]
    values = [kind, m.key, m.name, m.rule.value, num(m.threshold), m.unit, m.bad.value, m.aggregator]
    cells = [_cell(v) for v in values] + [str(m.window_minutes)] + [_cell(c) for c in code]
    return [*cells, _cell(judge_cell(m)), AT_THRESHOLD[m.comparison]]


def _results_view(phase: Phase, results: PhaseResults, tz: str) -> dict[str, Any]:
    items = [*phase.tasks, *phase.exit_criteria]
    items += [text for text in results.checked if text not in items]  # ticked, then edited out
    checklist = []
    for text in items:
        tick = results.checked.get(text)
        checklist.append(f"[x] {text} — @{tick.user}, {_when(tick.at, tz)}" if tick else f"[ ] {text}")
    return {
        "started": _when(results.started, tz) or "not yet",
        "completed": (
            f"skipped by override ⚠ ({_when(results.completed, tz)})"
            if results.left_by_override and results.completed
            else _when(results.completed, tz) or "not yet"
        ),
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
        return "no data" if value is None else amount(value, reading.unit)

    values = [reading.metric, shown(reading.value), shown(reading.baseline), reading.allowed, reading.verdict]
    return [_cell(v) for v in values]


def _when(moment: datetime | None, tz: str) -> str:
    if moment is None:
        return ""
    # The messages' one date form ("Mon 11 Mar"), with the year: a document outlives the week.
    local = moment.astimezone(ZoneInfo(tz)) if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(tz))
    return f"{format_day(local, tz)} {local:%Y %H:%M}"


# The importer takes one checkbox off the start of each list item ("- [ ] …", "- [x] …"), so a
# plain item whose own text starts like one ("[ ] errors", a metric named "[x]") would lose it:
# such an item is written behind an empty box of its own, which the importer takes off instead.
_LEADING_BOX = re.compile(r"\[[ xX]\]")


def _item(text: str) -> str:
    return f"[ ] {text}" if _LEADING_BOX.match(text) else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
