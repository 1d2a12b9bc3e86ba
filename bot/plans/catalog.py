"""The built-in templates (TOML files beside this module) and how a Plan is read from data."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from bot.plans.model import Metric, Phase, Plan, Step, SuccessMetricRow

TEMPLATES_DIR = Path(__file__).parent / "templates"


class UnknownTemplate(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def plan_from_dict(data: dict[str, Any]) -> Plan:
    phases = tuple(
        Phase(
            name=p["name"],
            description=p.get("description", ""),
            duration=p.get("duration", ""),
            steps=tuple(Step(**s) for s in p["steps"]),
            tasks=tuple(p.get("tasks", ())),
            exit_criteria=tuple(p.get("exit_criteria", ())),
        )
        for p in data["phases"]
    )
    if not phases or any(not p.steps for p in phases):
        raise ValueError(f"plan {data.get('name')!r} needs phases, each with at least one step")
    return Plan(
        name=data["name"],
        title=data.get("title", data["name"]),
        description=data.get("description", ""),
        phases=phases,
        metrics=tuple(Metric.from_dict(m) for m in data.get("metrics", ())),
        triggers=tuple(Metric.from_dict(m) for m in data.get("triggers", ())),
        manual_triggers=tuple(data.get("manual_triggers", ())),
        success_table=tuple(SuccessMetricRow(**row) for row in data.get("success_table", ())),
    )


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
