"""Work due at a time (digests, reminders, the trigger watch)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.services import Actor, Services
from storage.models import Rollout


def reschedule(session: Session, rollout: Rollout, now: datetime) -> None:
    """Called in the transaction of every change to a rollout: (re)computes its due work."""


def run_due(svc: Services) -> int:
    return 0


def set_digest(svc: Services, actor: Actor, rollout_id: int, cadence: str, at: str | None) -> Rollout:
    raise NotImplementedError


def describe_digest(rollout: Rollout) -> str:
    raise NotImplementedError
