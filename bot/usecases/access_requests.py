"""Refusals as a path: "Request access" asks the owner, in the status thread, with an "Add as
approver" button; recorded as an event. (Apart from `access` so that the check every use case
makes imports no announcing.)"""

from __future__ import annotations

from bot.domain import rollouts
from bot.errors import InvalidTransition, RolloutNotFound
from bot.services import Actor, Services
from bot.usecases import announcing
from messages.access import access_request
from storage import queries
from storage.enums import EventKind
from storage.models import Rollout


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
