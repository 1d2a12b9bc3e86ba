"""Who may act on a rollout: the check, and the polite, recorded refusal.

Steering is the owner's, the approvers' and workspace admins' (`bot.domain.rollouts.may_steer`;
the admin question costs a Slack call and is asked last); ticking exit criteria and sending
updates follow the rollout's own choice (`bot.domain.rights`). Every refusal leaves a REFUSED
event, so the timeline shows who tried, and offers a path: "Request access" asks the owner
(`bot.usecases.access_requests`). Pausing is open to anyone (`bot.usecases.controls.pause`)."""

from __future__ import annotations

from bot.domain import rights, rollouts
from bot.errors import NotAllowed
from bot.services import Actor, Services
from bot.slackweb.client import is_workspace_admin
from storage.enums import EventKind
from storage.models import Rollout


def may_steer(svc: Services, actor: Actor, rollout: Rollout) -> bool:
    return rollouts.may_steer(rollout, actor.user_id, lambda: is_workspace_admin(svc.client, actor.user_id))


def check_allowed(svc: Services, actor: Actor, rollout: Rollout, action: str) -> None:
    """Refuses politely, and records the attempt, unless the actor may steer this rollout."""
    if not may_steer(svc, actor, rollout):
        refuse(svc, actor, rollout, action)


def check_may(svc: Services, actor: Actor, rollout: Rollout, act: rights.Act) -> None:
    """Ticking exit criteria or sending updates: anyone, or steerers only, as the rollout says."""
    if rights.who_may(rollout, act) == rights.STEERERS:
        check_allowed(svc, actor, rollout, rights.WORDS[act])


def refuse(svc: Services, actor: Actor, rollout: Rollout, action: str) -> None:
    with svc.db.transaction() as session:
        session.add(rollouts.event(rollout, EventKind.REFUSED, actor.user_id, svc.clock(), action=action))
    raise NotAllowed(
        "Only the owner (<@{owner}>), approvers and workspace admins can {action} *{feature}*. "
        "Request access and I ask <@{owner}> for you; anyone may pause it.",
        rollout_id=rollout.id,
        owner=rollout.owner_id,
        action=action,
        feature=rollout.feature,
    )
