"""`/rollout update`: a stakeholder update with the rollout's current state."""

from __future__ import annotations

from bot.domain import rights, rollouts
from bot.errors import RolloutNotFound
from bot.services import Actor, Services
from bot.usecases import access, announcing, lookup
from storage import queries
from storage.enums import EventKind
from storage.models import Rollout


def send_update(svc: Services, actor: Actor, rollout_id: int, text: str) -> Rollout:
    """`/rollout update <text>`: the current state and the text, to the thread and stakeholders."""
    access.check_may(svc, actor, lookup.load_for(svc, actor, rollout_id), rights.Act.UPDATES)
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is None or rollout.team_id != actor.team_id:
            raise RolloutNotFound("That rollout does not exist any more.")
        event = rollouts.event(rollout, EventKind.UPDATE_SENT, actor.user_id, now, text=text)
        session.add(event)
        session.flush()
        announcing.announce(
            session, rollout, "update", f"update:{event.id}", now, actor=actor.user_id, text=text
        )
    return rollout
