"""Pause, resume, roll back, complete, and who may steer: each one transaction with its Event.

Steering is the owner's, the approvers' and workspace admins', except a pause: anyone may
pause, as stopping is the safe direction; the Event says who did."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from bot.domain import flagging as flag_rules
from bot.domain import rights, rollouts
from bot.errors import InvalidTransition, RolloutNotFound
from bot.flags import FlagError
from bot.services import Actor, Services
from bot.usecases import announcing, flagging, schedule
from bot.usecases.access import check_allowed
from bot.usecases.lookup import load_for
from storage import queries
from storage.enums import EventKind
from storage.models import Approver, Rollout

# What each control announces, and its dedupe key: a pause can happen many times (keyed by its
# event), a rollback or completion once per rollout.
ANNOUNCED = {
    EventKind.PAUSED: "paused:{event}",
    EventKind.RESUMED: "resumed:{event}",
    EventKind.ROLLED_BACK: "rolled_back",
    EventKind.COMPLETED: "completed",
}


def _change(
    svc: Services,
    actor: Actor,
    rollout_id: int,
    action: str,
    apply: Callable[[Session, Rollout], EventKind],
    *,
    anyone: bool = False,
    **data: str,
) -> Rollout:
    seen = load_for(svc, actor, rollout_id)  # of the actor's workspace, or refused
    if not anyone:
        check_allowed(svc, actor, seen, action)
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is None:
            raise RolloutNotFound("That rollout does not exist any more.")
        kind = apply(session, rollout)
        event = rollouts.event(
            rollout, kind, actor.user_id, now, step=rollouts.display_title(rollout.current_step), **data
        )
        session.add(event)
        session.flush()
        if kind in ANNOUNCED:
            key = ANNOUNCED[kind].format(event=event.id)
            announcing.announce(
                session, rollout, kind.value, key, now, actor=actor.user_id, reason=data.get("reason", "")
            )
        schedule.reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
    return rollout


def _by_rule(
    svc: Services,
    actor: Actor,
    rollout_id: int,
    action: str,
    rule: Callable[[Rollout, datetime], None],
    kind: EventKind,
    *,
    anyone: bool = False,
    **data: str,
) -> Rollout:
    """A change that is one rule of bot/rollouts.py and the event it leaves."""

    def apply(_session: Session, rollout: Rollout) -> EventKind:
        rule(rollout, svc.clock())
        return kind

    return _change(svc, actor, rollout_id, action, apply, anyone=anyone, **data)


def pause(svc: Services, actor: Actor, rollout_id: int, reason: str) -> Rollout:
    """Anyone in the workspace may pause: it is the safe direction (on-call should not need to
    be made an approver first to stop harm). The event records who, and the state line shows it;
    resuming stays the steerers'."""

    def rule(rollout: Rollout, now: datetime) -> None:
        rollouts.pause(rollout, now, by=actor.user_id, reason=reason)

    return _by_rule(svc, actor, rollout_id, "pause", rule, EventKind.PAUSED, anyone=True, reason=reason)


def resume(svc: Services, actor: Actor, rollout_id: int) -> Rollout:
    return _by_rule(svc, actor, rollout_id, "resume", rollouts.resume, EventKind.RESUMED)


def roll_back(svc: Services, actor: Actor, rollout_id: int, reason: str) -> Rollout:
    """The flag goes to 0 % first (see `flagging.roll_back_flag`), then the state and the
    announcements, in one transaction. A flag write that fails does not stop the rollback:
    the rollout comes back with `flag_pending` set, and the caller says so loudly."""

    def apply(session: Session, rollout: Rollout) -> EventKind:
        # refuses a finished rollout before any write
        rollouts.roll_back(rollout, svc.clock(), by=actor.user_id, reason=reason)
        flagging.roll_back_flag(svc, session, rollout, actor.user_id, svc.clock())
        return EventKind.ROLLED_BACK

    return _change(svc, actor, rollout_id, "roll back", apply, reason=reason)


def roll_back_locked(
    svc: Services,
    session: Session,
    rollout: Rollout,
    actor_id: str | None,
    reason: str,
    now: datetime,
    *,
    in_thread: bool = True,
) -> flagging.Written | None:
    """A rollback inside a transaction that already holds the rollout's lock (a fired trigger
    whose plan says `on_trigger = "rollback"`): the flag first, then state, event, announcement."""
    step = rollouts.display_title(rollout.current_step)
    rollouts.roll_back(rollout, now, by=actor_id, reason=reason)
    written = flagging.roll_back_flag(svc, session, rollout, actor_id, now)
    event = rollouts.event(rollout, EventKind.ROLLED_BACK, actor_id, now, step=step, reason=reason)
    session.add(event)
    session.flush()
    announcing.announce(
        session,
        rollout,
        EventKind.ROLLED_BACK.value,
        "rolled_back",
        now,
        actor=actor_id,
        reason=reason,
        in_thread=in_thread,
    )
    schedule.reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
    return written


def complete(svc: Services, actor: Actor, rollout_id: int) -> Rollout:
    """At full exposure only; the flag is set to 100 % before the commit (it should be there
    already), and a flag service that refuses keeps the rollout open."""
    feature = ""

    def apply(session: Session, rollout: Rollout) -> EventKind:
        nonlocal feature
        feature = rollout.feature
        rollouts.complete(rollout, svc.clock())
        flagging.write(
            svc,
            session,
            rollout,
            flag_rules.plan_percent(rollout),
            actor=actor.user_id,
            why="complete",
            now=svc.clock(),
        )
        return EventKind.COMPLETED

    try:
        return _change(svc, actor, rollout_id, "complete", apply)
    except FlagError as error:
        flagging.record_failure(svc, rollout_id, actor.user_id, 100.0, error, "complete")
        raise flagging.refused(svc, feature, error, "complete") from None


def set_approver(svc: Services, actor: Actor, rollout_id: int, user_id: str, *, add: bool) -> Rollout:
    def apply(session: Session, r: Rollout) -> EventKind:
        current = {a.user_id: a for a in r.approvers}
        if add:
            if user_id in current:
                raise InvalidTransition(
                    "<@{user}> is already an approver of {feature}", user=user_id, feature=r.feature
                )
            r.approvers.append(Approver(user_id=user_id))
        else:
            if user_id not in current:
                raise InvalidTransition(
                    "<@{user}> is not an approver of {feature}", user=user_id, feature=r.feature
                )
            r.approvers.remove(current[user_id])
        r.touch(svc.clock())
        return EventKind.APPROVER_ADDED if add else EventKind.APPROVER_REMOVED

    return _change(svc, actor, rollout_id, "change the approvers of", apply, user=user_id)


def set_access(svc: Services, actor: Actor, rollout_id: int, act: rights.Act, who: str) -> Rollout:
    """`/rollout access … exit-criteria|updates anyone|steerers`: steerers decide."""

    def apply(session: Session, r: Rollout) -> EventKind:
        if not rights.set_who(r, act, who):
            raise InvalidTransition(
                "{act} of {feature} are already open to {who}", act=act.value, feature=r.feature, who=who
            )
        r.touch(svc.clock())
        return EventKind.ACCESS_CHANGED

    return _change(svc, actor, rollout_id, "change who may act on", apply, act=act.value, who=who)
