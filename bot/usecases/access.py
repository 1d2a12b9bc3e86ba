"""Who may act on a rollout: the check, and the polite, recorded refusal.

Steering is the owner's, the approvers' and workspace admins' (`bot.domain.rollouts.may_steer`;
the admin question costs a Slack call and is asked last); ticking exit criteria and sending
updates follow the rollout's own choice (`bot.domain.rights`). Every refusal leaves a REFUSED
event, so the timeline shows who tried, and offers a path: "Request access" asks the owner
(`request_access`). Pausing is open to anyone (`bot.usecases.controls.pause`)."""

from __future__ import annotations

from bot.domain import rights, rollouts
from bot.errors import InvalidTransition, NotAllowed, RolloutNotFound
from bot.services import Actor, Services
from bot.slackweb.client import is_workspace_admin
from bot.usecases import announcing
from messages.access import access_request
from storage import queries
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


def request_access(svc: Services, actor: Actor, rollout_id: int) -> Rollout:
    """The "Request access" button: asks the owner, in the status thread (the owner is mentioned,
    so notified), with an "Add as approver" button; recorded as an event. Once a day per person:
    a second click the same day is told it was asked already, nothing is posted twice."""
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is None or rollout.team_id != actor.team_id:
            raise RolloutNotFound("That rollout does not exist any more.")
        if actor.user_id == rollout.owner_id or actor.user_id in {a.user_id for a in rollout.approvers}:
            raise InvalidTransition("You can already steer {feature}.", feature=rollout.feature)
        last = queries.last_refusal(session=session, rollout_id=rollout.id, user_id=actor.user_id)
        action = str((last.data or {}).get("action", "steer")) if last is not None else "steer"
        key = f"access_request:{actor.user_id}:{now.date().isoformat()}"
        message = access_request(rollout.id, rollout.feature, rollout.owner_id, actor.user_id, action)
        if not announcing.queue(session, rollout, announcing.Announcement(key, message), now):
            raise InvalidTransition(
                "You already asked <@{owner}> today; the request is in the status thread of {feature}.",
                owner=rollout.owner_id,
                feature=rollout.feature,
            )
        session.add(rollouts.event(rollout, EventKind.ACCESS_REQUESTED, actor.user_id, now, action=action))
    return rollout
