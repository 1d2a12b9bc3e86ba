"""Plan templates: the built-in ones and those a team imported from Markdown."""

from __future__ import annotations

from sqlalchemy import select

from bot.domain.plans.catalog import UnknownTemplate, builtin_templates, plan_from_dict, plan_to_dict
from bot.domain.plans.model import Plan
from bot.services import Services
from storage import queries
from storage.models import PlanTemplate

EVERY_WORKSPACE = ""


def available(svc: Services, team_id: str) -> dict[str, Plan]:
    """Name -> plan; a workspace's own import wins over one for every workspace, and
    built-in names cannot be taken."""
    plans: dict[str, Plan] = {}
    with svc.db.reading() as session:
        for row in queries.plan_templates(session=session, team_id=team_id):
            plans.setdefault(row.name, plan_from_dict(row.data))
    return {**plans, **builtin_templates()}


def resolve(svc: Services, team_id: str, name: str) -> Plan:
    plans = available(svc, team_id)
    try:
        return plans[name.lower()]
    except KeyError:
        raise UnknownTemplate(name) from None


def save(svc: Services, team_id: str, plan: Plan, *, source: str, user_id: str | None) -> bool:
    """Stores an imported plan under its name. Returns True if it replaced an earlier import."""
    if plan.name in builtin_templates():
        raise ValueError(f"`{plan.name}` is a built-in template; import under another name")
    with svc.db.transaction() as session:
        row = session.scalars(
            select(PlanTemplate).where(PlanTemplate.team_id == team_id, PlanTemplate.name == plan.name)
        ).first()
        replaced = row is not None
        if row is None:
            row = PlanTemplate(team_id=team_id, name=plan.name)
            session.add(row)
        row.title, row.data, row.source, row.created_by = plan.title, plan_to_dict(plan), source, user_id
        row.created_at = svc.clock()
    return replaced
