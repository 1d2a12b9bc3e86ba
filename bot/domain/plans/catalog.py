"""The built-in templates (TOML files beside this module) and how a Plan is read from data."""

from __future__ import annotations

import json
import threading
import tomllib
from dataclasses import asdict, fields
from functools import cache
from pathlib import Path
from typing import Any

from bot.domain import formulas
from bot.domain.plans.model import Metric, Phase, Plan, Step, SuccessMetricRow

TEMPLATES_DIR = Path(__file__).parent / "templates"
# What a rollout's rows hold (storage/models.py): a longer text would be refused by Postgres at
# start, long after the import said yes.
MAX_TITLE = 200
MAX_PHASE_NAME = 120
MAX_STEP_LABEL = 32


class UnknownTemplate(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """A Plan from its data: a TOML template, or a plan stored as JSON (`plan_to_dict`)."""
    phases = tuple(
        Phase(
            **{
                **_known(Phase, p),
                "steps": tuple(Step(**_known(Step, s)) for s in p["steps"]),
                "tasks": tuple(p.get("tasks", ())),
                "exit_criteria": tuple(p.get("exit_criteria", ())),
            }
        )
        for p in data["phases"]
    )
    if not phases or any(not p.steps for p in phases):
        raise ValueError(f"plan {data.get('name')!r} needs phases, each with at least one step")
    if data.get("on_trigger", "pause") not in ("pause", "rollback"):
        raise ValueError(f'plan {data.get("name")!r}: on_trigger is "pause" or "rollback"')
    return Plan(
        **{
            **_known(Plan, data),
            "title": data.get("title", data["name"]),
            "phases": phases,
            "metrics": tuple(Metric.from_dict(m) for m in data.get("metrics", ())),
            "triggers": tuple(Metric.from_dict(m) for m in data.get("triggers", ())),
            "manual_triggers": tuple(data.get("manual_triggers", ())),
            "success_table": tuple(SuccessMetricRow(**row) for row in data.get("success_table", ())),
            "header": tuple(tuple(pair) for pair in data.get("header", ())),
        }
    )


def plan_problems(plan: Plan) -> list[str]:
    """Why a plan cannot be run, in words for whoever imported it; empty when it can.

    A rollout needs at least one phase, every phase at least one step, and every step's share
    of users between 0 and 100 %; nothing else is required (metrics, checklists and triggers
    are optional)."""
    problems = []
    if len(plan.title) > MAX_TITLE:
        problems.append(f"its title is {len(plan.title)} characters; the limit is {MAX_TITLE}")
    if not plan.phases:
        problems.append("it has no phases: a plan needs at least one phase with a step, like `1% canary`")
    for phase in plan.phases:
        if len(phase.name) > MAX_PHASE_NAME or len(phase.duration) > MAX_PHASE_NAME:
            problems.append(
                f"phase {phase.name[:40]!r}…: a name or duration is over {MAX_PHASE_NAME} characters"
            )
        if not phase.steps:
            problems.append(f"phase {phase.name!r} has no steps")
        problems += [
            f"phase {phase.name!r} has a step labelled {step.label[:40]!r}: a label is at most {MAX_STEP_LABEL} characters"
            for step in phase.steps
            if len(step.label) > MAX_STEP_LABEL
        ]
        problems += [
            f"phase {phase.name!r} has a step at {step.percent:g}%: a share must be between 0 and 100"
            for step in phase.steps
            if not 0 <= step.percent <= 100
        ]
    problems += advance_problems(plan)
    for metric in (*plan.metrics, *plan.triggers):
        try:
            formulas.check_metric(metric.queries, metric.formula, metric.min_count, metric.control_queries)
        except formulas.SourceError as exc:
            problems.append(f"metric {metric.name!r}: {exc}")
    return problems


def advance_problems(plan: Plan) -> list[str]:
    """`advance` is "auto" or "manual" (or, on a phase or step, left out)."""
    said = [("the plan", plan.advance, False)]
    for phase in plan.phases:
        said.append((f"phase {phase.name[:40]!r}", phase.advance, True))
        said += [(f"phase {phase.name[:40]!r}, step {s.title[:40]!r}", s.advance, True) for s in phase.steps]
    return [
        f'{where}: advance is "auto" or "manual", not {value[:40]!r}'
        for where, value, may_be_empty in said
        if value not in ("auto", "manual") and not (may_be_empty and value == "")
    ]


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """JSON-ready, a new dict on each call; `plan_from_dict(plan_to_dict(p)) == p`.

    The JSON text of the last few plans is kept, by identity (an equal plan may still write
    differently: 1 and 1.0 are equal), so a plan started again and again (the built-in
    templates are one object each) costs a `json.loads`, not `asdict` and a `json.dumps`."""
    kept = _TEXTS.get(id(plan))
    if kept is not None and kept[0] is plan:
        text = kept[1]
    else:
        text = json.dumps(asdict(plan))
        # The work process's threads start plans at once: one of them trims at a time.
        with _TEXTS_LOCK:
            while len(_TEXTS) >= _KEEP:
                del _TEXTS[next(iter(_TEXTS))]  # the oldest
            # The plan is held with its text, so its id cannot be reused while the entry lives.
            _TEXTS[id(plan)] = (plan, text)
    data: dict[str, Any] = json.loads(text)
    return data


_KEEP = 64
_TEXTS: dict[int, tuple[Plan, str]] = {}
_TEXTS_LOCK = threading.Lock()


@cache
def builtin_templates() -> dict[str, Plan]:
    plans = {}
    for path in sorted(TEMPLATES_DIR.glob("*.toml")):
        plan = plan_from_dict(tomllib.loads(path.read_text(encoding="utf-8")))
        plans[plan.name] = plan
    return plans


def template_names() -> list[str]:
    return list(builtin_templates())


def get_template(name: str) -> Plan:
    try:
        return builtin_templates()[name.lower()]
    except KeyError:
        raise UnknownTemplate(name) from None
