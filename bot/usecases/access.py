"""TODO"""

from __future__ import annotations

from bot.domain import rollouts
from bot.errors import NotAllowed
from bot.services import Actor, Services
from bot.slackweb.client import is_workspace_admin
from storage.enums import EventKind
from storage.models import Rollout


def check_allowed(svc: Services, actor: Actor, rollout: Rollout, action: str) -> None:
    """Refuses politely, and records the attempt, unless the actor may steer this rollout."""
    if rollouts.may_steer(rollout, actor.user_id, lambda: is_workspace_admin(svc.client, actor.user_id)):
        return
    with svc.db.transaction() as session:
        session.add(rollouts.event(rollout, EventKind.REFUSED, actor.user_id, svc.clock(), action=action))
    raise NotAllowed(
        "Only the owner (<@{owner}>), approvers and workspace admins can {action} *{feature}*. "
        "Ask the owner to `/rollout approvers add @you`.",
        owner=rollout.owner_id,
        action=action,
        feature=rollout.feature,
    )
