"""Plan templates: the built-in ones and those a team imported from Markdown.

Rules, because a template is shared by everyone in a workspace:

- a plan that cannot be run (`catalog.plan_problems`) is refused at import and never stored;
- a stored row that no longer reads as a plan (damaged, or written by an older version) never
  breaks anything else: listing and starting skip it, and only whoever names it is told;
- a template remembers who imported it; only they, workspace admins and the people in
  `ROLLOUT_TEMPLATE_EDITORS` may replace or remove it. Built-in names cannot be taken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from bot.domain.plans.catalog import (
    UnknownTemplate,
    builtin_templates,
    plan_from_dict,
    plan_problems,
    plan_to_dict,
)
from bot.domain.plans.model import Plan
from bot.errors import NotAllowed, RolloutError, UsageError
from bot.services import Actor, Services
from bot.slackweb.client import is_workspace_admin
from storage import queries
from storage.models import PlanTemplate

log = logging.getLogger(__name__)

EVERY_WORKSPACE = ""


class DamagedTemplate(RolloutError):
    """A stored template that no longer reads as a plan."""


@dataclass(frozen=True)
class Stored:
    """An imported template as the list shows it."""

    name: str
    title: str
    imported_by: str | None
    usable: bool


def _read(row: PlanTemplate) -> Plan | None:
    try:
        plan = plan_from_dict(row.data)
    except (KeyError, TypeError, ValueError) as error:
        log.warning("template %s (%r) is damaged and skipped: %s", row.id, row.name, error)
        return None
    return None if plan_problems(plan) else plan


def available(svc: Services, team_id: str) -> dict[str, Plan]:
    """Name -> plan; a workspace's own import wins over one for every workspace, and
    built-in names cannot be taken. Damaged rows are left out."""
    plans: dict[str, Plan] = {}
    with svc.db.reading() as session:
        for row in queries.plan_templates(session=session, team_id=team_id):
            if row.name not in plans and (plan := _read(row)) is not None:
                plans[row.name] = plan
    return {**plans, **builtin_templates()}


def resolve(svc: Services, team_id: str, name: str) -> Plan:
    if (builtin := builtin_templates().get(name.lower())) is not None:
        return builtin  # no stored template can take a built-in name: nothing to read
    plans = available(svc, team_id)
    try:
        return plans[name.lower()]
    except KeyError:
        pass
    with svc.db.reading() as session:
        rows = [r for r in queries.plan_templates(session=session, team_id=team_id) if r.name == name.lower()]
    if rows:
        who = "<@{user}>" if rows[0].created_by else "an operator from the command line"
        raise DamagedTemplate(
            "The template `{name}` can no longer be read; import it again with `/rollout import` "
            "(it was imported by " + who + ").",
            name=name.lower(),
            user=rows[0].created_by or "",
        )
    raise UnknownTemplate(name)


def listing(svc: Services, team_id: str) -> list[Stored]:
    with svc.db.reading() as session:
        rows = queries.plan_templates(session=session, team_id=team_id)
        return [Stored(r.name, r.title, r.created_by, _read(r) is not None) for r in rows]


def _may_manage(svc: Services, actor: Actor, row: PlanTemplate) -> bool:
    return (
        row.created_by == actor.user_id
        or actor.user_id in svc.settings.template_editors
        or is_workspace_admin(svc.client, actor.user_id)
    )


def _refuse(row: PlanTemplate, action: str) -> NotAllowed:
    who = "<@{user}>" if row.created_by else "an operator from the command line"
    return NotAllowed(
        "`{name}` was imported by " + who + "; only they, workspace admins and template editors "
        "can {action} it. Import yours under another name.",
        name=row.name,
        user=row.created_by or "",
        action=action,
    )


def save(svc: Services, actor: Actor | None, plan: Plan, *, source: str) -> bool:
    """Stores an imported plan under its name. Returns True if it replaced an earlier import.
    `actor` None is an operator at the command line, who stores for every workspace."""
    if plan.name in builtin_templates():
        raise UsageError(f"`{plan.name}` is a built-in template; import under another name", "import")
    if problems := plan_problems(plan):
        raise UsageError("this document is not a plan I can run: " + "; ".join(problems), "import")
    team_id = actor.team_id if actor is not None else EVERY_WORKSPACE
    with svc.db.transaction() as session:
        row = session.scalars(
            select(PlanTemplate).where(PlanTemplate.team_id == team_id, PlanTemplate.name == plan.name)
        ).first()
        replaced = row is not None
        if row is None:
            row = PlanTemplate(team_id=team_id, name=plan.name, created_by=actor.user_id if actor else None)
            session.add(row)
        elif actor is not None and not _may_manage(svc, actor, row):
            raise _refuse(row, "replace")
        row.title, row.data, row.source = plan.title, plan_to_dict(plan), source
        row.created_at = svc.clock()
    return replaced


def remove(svc: Services, actor: Actor, name: str) -> None:
    with svc.db.transaction() as session:
        row = session.scalars(
            select(PlanTemplate).where(PlanTemplate.team_id == actor.team_id, PlanTemplate.name == name)
        ).first()
        if row is None:
            raise UnknownTemplate(name)
        if not _may_manage(svc, actor, row):
            raise _refuse(row, "remove")
        session.delete(row)
