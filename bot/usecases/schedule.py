"""The due work of a rollout, written in the transaction of each change (`reschedule`), and the
digest setting that shapes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from bot.domain import rollouts
from bot.domain.schedule import (
    CADENCES,
    DIGEST_TIME_RE,
    UNPLANNED,
    WATCH_MINUTES,
    Kind,
    planned,
    planned_inputs,
)
from bot.errors import InvalidTransition, RolloutNotFound, UsageError
from bot.services import Actor, Services
from bot.usecases import access, lookup
from storage import queries
from storage.enums import EventKind
from storage.models import DueJob, Rollout
from storage.rows import insert_new, plain


def reschedule(
    session: Session, rollout: Rollout, now: datetime, *, watch_minutes: int = WATCH_MINUTES
) -> None:
    """Called in the transaction of every change to a rollout, under its lock: (re)computes its
    due work. Core statements, not ORM objects: a run finishing at the same time may delete or
    move a row, and that must never fail the change itself."""
    wanted = planned(rollout, now, watch_minutes=watch_minutes)
    rows = session.execute(select(DueJob.kind, DueJob.data).where(DueJob.rollout_id == rollout.id)).all()
    existing = {kind: data for kind, data in rows}
    if gone := [kind for kind in existing if kind not in wanted and kind not in UNPLANNED]:
        session.execute(delete(DueJob).where(DueJob.rollout_id == rollout.id, DueJob.kind.in_(gone)))
    for kind, due in wanted.items():
        if kind in existing and planned_inputs(kind, existing[kind]) == planned_inputs(kind, due.data):
            continue
        mine = (DueJob.rollout_id == rollout.id, DueJob.kind == kind)
        moved = session.execute(update(DueJob).where(*mine).values(due_at=due.at, data=due.data))
        if not cast("CursorResult[Any]", moved).rowcount:  # new, or just deleted by a finishing run
            session.add(DueJob(rollout_id=rollout.id, kind=kind, due_at=due.at, data=due.data))


def schedule_new(
    session: Session, rollout: Rollout, now: datetime, *, watch_minutes: int = WATCH_MINUTES
) -> None:
    """`reschedule` for a rollout created in this very transaction: it has no rows yet, so its
    planned rows are written in one statement (the same rows, in the same order)."""
    wanted = planned(rollout, now, watch_minutes=watch_minutes)
    insert_new(
        session,
        [
            plain(DueJob, {"rollout_id": rollout.id, "kind": kind, "due_at": due.at, "data": due.data})
            for kind, due in wanted.items()
        ],
        ids=False,
    )


def set_digest(svc: Services, actor: Actor, rollout_id: int, cadence: str, at: str | None) -> Rollout:
    """`/rollout digest [feature] off|daily|weekly [HH:MM]`: owner, approvers and admins only."""
    cadence = cadence.strip().lower()
    if cadence not in CADENCES:
        raise UsageError("say `off`, `daily` or `weekly`", "digest")
    if at is not None:
        match = DIGEST_TIME_RE.match(at.strip())
        if not match:
            raise UsageError(f"`{at}` is not a time like 09:30", "digest")
        at = f"{int(match.group(1)):02d}:{match.group(2)}"
    access.check_allowed(svc, actor, lookup.load_for(svc, actor, rollout_id), "change the digest of")
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is None:
            raise RolloutNotFound("That rollout does not exist any more.")
        if not rollout.status.is_open:
            raise InvalidTransition(
                f"{rollout.feature} is {rollout.status.replace('_', ' ')}; it has no digest"
            )
        before = {"cadence": rollout.digest, "at": rollout.digest_time}
        rollout.digest, rollout.digest_time = cadence, at or rollout.digest_time
        after = {"cadence": rollout.digest, "at": rollout.digest_time}
        if after != before:
            rollout.touch(now)
            session.add(
                rollouts.event(rollout, EventKind.DIGEST_CHANGED, actor.user_id, now, **after, before=before)
            )
            reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
    return rollout


def watch_now(svc: Services) -> int:
    """Makes every rollout's watch (rollback triggers, the flag) due now. The terminal shell
    calls it at `tick`: its clock jumps with `later`, where `serve`'s watch would have run all
    along, so a trigger typed with `set` fires at the next `tick` as it would in Slack. Returns
    how many watches were moved."""
    now = svc.clock()
    with svc.db.transaction() as session:
        moved = session.execute(
            update(DueJob).where(DueJob.kind == Kind.WATCH, DueJob.due_at > now).values(due_at=now)
        )
    return int(cast("CursorResult[Any]", moved).rowcount or 0)
