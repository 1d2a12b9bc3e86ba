"""What each milestone announces. Called inside the flow's transaction, so the state change and
its announcement are committed together or not at all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.delivery import outbox
from bot.domain import rollouts
from messages.announcements import milestone
from storage.models import Rollout

QUEUED = "outbox_queued"


def _context(rollout: Rollout, **extra: Any) -> dict[str, Any]:
    step = rollout.current_step
    return {
        "feature": rollout.feature,
        "plan": rollout.plan_title,
        "owner": rollout.owner_id,
        "step": rollouts.display_title(step),
        "users": step.desired_users,
        "phase": rollout.current_phase.name,
        "paused": rollout.status.value == "paused",
        "channel": rollout.channel_id,
        "actor": None,
        "reason": "",
        **extra,
    }


def announce(session: Session, rollout: Rollout, kind: str, key: str, now: datetime, **extra: Any) -> None:
    """Queues the milestone `kind` under the dedupe key `key` (unique per rollout)."""
    thread, line = milestone(kind, **_context(rollout, **extra))
    if outbox.announce(session, rollout, outbox.Announcement(key, thread, line), now):
        session.info[QUEUED] = True


def step_key(rollout: Rollout) -> str:
    """Reaching a step happens once per rollout, so its position is its key."""
    return f"step:{rollout.phase_index}:{rollout.step_index}"
