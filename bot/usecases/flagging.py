"""The feature flag follows the plan: every write the bot makes to it, the retries of a write
that failed during a rollback, the watch that reads it back, and what people decide about a
flag that drifted from the plan.

A write that must happen before a change (advance, complete, roll back) runs inside that
change's transaction, before its commit, under the rollout's lock: if the commit is then lost,
the periodic watch finds the flag ahead of the plan and says so (see `watch`). Every write is
an Event with its before and after; a refused write is an Event too, recorded in a
transaction of its own because the change it belonged to did not happen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.domain import flagging, rollouts
from bot.errors import FlagWriteFailed, InvalidTransition, RolloutNotFound
from bot.flags import FlagError, FlagProvider, FlagState
from bot.services import Actor, Services
from bot.usecases import announcing, schedule
from bot.usecases.access import check_allowed
from bot.usecases.lookup import load_for
from messages import flag_texts
from storage import queries
from storage.enums import EventKind
from storage.models import Rollout

log = logging.getLogger(__name__)

OFF = "off"  # the rollback's write: provider.turn_off


@dataclass(frozen=True)
class Written:
    """One write the bot made: the percentage the flag exposed before and after."""

    flag: str
    provider: str
    before: float | None
    after: float

    def words(self) -> str:
        before = flagging.percent_words(self.before)
        return f"{self.provider} flag `{self.flag}`: {before} → {self.after:g}%"


def provider_for(svc: Services, rollout: Rollout) -> FlagProvider | None:
    """The flag service, when it runs this rollout's flag."""
    if svc.flags is None or not flagging.managed(rollout):
        return None
    return svc.flags


def _call(provider: FlagProvider, rollout: Rollout, target: float | str) -> FlagState:
    assert rollout.flag_key
    if target == OFF:
        return provider.turn_off(rollout.flag_key, strategy_id=rollout.flag_strategy_id)
    assert isinstance(target, float | int)
    return provider.set_percent(rollout.flag_key, float(target), strategy_id=rollout.flag_strategy_id)


def _seen(rollout: Rollout, state: FlagState, now: datetime) -> float:
    after = flagging.exposed(state.enabled, state.percent)
    flagging.see(rollout, percent=after, enabled=state.enabled, strategy_id=state.strategy_id, now=now)
    return after


def write(
    svc: Services,
    session: Session,
    rollout: Rollout,
    target: float | str,
    *,
    actor: str | None,
    why: str,
    now: datetime,
) -> Written | None:
    """Sets the flag to `target` (a percentage, or OFF) in the caller's transaction, before its
    commit, and records the write. None when no flag service runs this rollout's flag.
    Raises FlagError, in the provider's words, when the write fails."""
    provider = provider_for(svc, rollout)
    if provider is None:
        return None
    before = rollout.flag_percent
    state = _call(provider, rollout, target)
    after = _seen(rollout, state, now)
    rollout.flag_adopted_percent = None  # the plan's percentage is on the flag again
    rollout.flag_pending = None
    rollout.touch(now)
    assert rollout.flag_key
    session.add(
        rollouts.event(
            rollout,
            EventKind.FLAG_SET,
            actor,
            now,
            flag=rollout.flag_key,
            provider=provider.name,
            before=before,
            after=after,
            enabled=state.enabled,
            why=why,
            detail=state.detail,
        )
    )
    return Written(rollout.flag_key, provider.name, before, after)


def refused(svc: Services, feature: str, error: FlagError, doing: str) -> FlagWriteFailed:
    """The user's answer to a refused write of a change that did not happen."""
    name = svc.flags.name if svc.flags is not None else "The flag service"
    return FlagWriteFailed(
        "{provider} did not take the flag change, so *{feature}* did not {doing}: {reason}"
        + (" (this may pass: try again in a moment)" if error.retryable else ""),
        reason=error.reason,
        retryable=error.retryable,
        provider=name,
        feature=feature,
        doing=doing,
    )


def record_failure(
    svc: Services, rollout_id: int, actor: str | None, target: float | str, error: FlagError, why: str
) -> None:
    """The attempt of a change that did not happen, in a transaction of its own."""
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is None:
            return
        _failed(svc, session, rollout, actor, target, error, why, now)


def _failed(
    svc: Services,
    session: Session,
    rollout: Rollout,
    actor: str | None,
    target: float | str,
    error: FlagError,
    why: str,
    now: datetime,
) -> None:
    rollout.flag_problem = error.reason
    rollout.touch(now)
    session.add(
        rollouts.event(
            rollout,
            EventKind.FLAG_WRITE_FAILED,
            actor,
            now,
            flag=rollout.flag_key,
            provider=svc.flags.name if svc.flags is not None else "",
            before=rollout.flag_percent,
            wanted=0.0 if target == OFF else float(target),
            reason=error.reason,
            retryable=error.retryable,
            why=why,
        )
    )


def roll_back_flag(
    svc: Services, session: Session, rollout: Rollout, actor: str | None, now: datetime
) -> Written | None:
    """The first thing a rollback does: the bot's rollout on the flag goes to 0 %. When the
    flag service fails, the rollback goes on anyway (people must not wait on it), the owed
    write is kept in `flag_pending` for the `flag_sync` job to retry until it lands, and an
    alarm goes to the channel."""
    if provider_for(svc, rollout) is None:
        return None
    try:
        return write(svc, session, rollout, OFF, actor=actor, why="rollback", now=now)
    except FlagError as error:
        log.warning("rollback of rollout %s: flag write failed: %s", rollout.id, error.reason)
        _failed(svc, session, rollout, actor, OFF, error, "rollback", now)
        rollout.flag_pending = 0.0
        session.flush()
        thread, top = flag_texts.rollback_write_failed(
            rollout, provider=svc.flags.name if svc.flags else "", reason=error.reason
        )
        key = f"flag-failed:{rollout.revision}"
        announcing.queue(session, rollout, announcing.Announcement(key, thread, None, top), now)
        return None


# --- the retries of a rollback's write (the flag_sync due job) -------------------------------


def sync(svc: Services, rollout_id: int) -> bool:
    """Retries the write a rollback still owes the flag. True once it has landed (or nothing
    is owed any more); False when it failed again and is retried later."""
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    if rollout is None or rollout.flag_pending is None:
        return True
    provider = provider_for(svc, rollout)
    if provider is None:
        return True
    owed = rollout.flag_pending
    target: float | str = OFF if owed == 0 else owed
    try:
        state = _call(provider, rollout, target)  # the flag first, as in the rollback itself
    except FlagError as error:
        now = svc.clock()
        with svc.db.transaction() as session:
            locked = queries.lock_rollout(session=session, rollout_id=rollout_id)
            if locked is not None and locked.flag_problem != error.reason:
                locked.flag_problem = error.reason
                locked.touch(now)
        log.warning("flag of rollout %s still not written: %s", rollout_id, error.reason)
        return False
    now = svc.clock()
    with svc.db.transaction() as session:
        locked = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if locked is None or locked.flag_pending != owed:
            return True
        before = locked.flag_percent
        after = _seen(locked, state, now)
        locked.flag_pending = None
        locked.touch(now)
        session.add(
            rollouts.event(
                locked,
                EventKind.FLAG_SET,
                None,
                now,
                flag=locked.flag_key,
                provider=provider.name,
                before=before,
                after=after,
                enabled=state.enabled,
                why="retry of the rollback's write",
                detail=state.detail,
            )
        )
        thread = flag_texts.write_landed(locked, provider=provider.name, after=after)
        announcing.queue(
            session, locked, announcing.Announcement(f"flag-landed:{locked.revision}", thread), now
        )
        schedule.reschedule(session, locked, now, watch_minutes=svc.settings.watch_minutes)
    return True


# --- the watch: reading the flag back --------------------------------------------------------


def watch(svc: Services, rollout_id: int) -> bool:
    """Reads the flag and remembers what it says. When it says something else than the plan
    (a person changed it, or a write landed whose commit did not), tells the owner once per
    drift, with buttons to apply the plan's percentage or adopt the flag's. Returns whether
    the status message should be refreshed."""
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    if rollout is None or not rollout.status.is_open:
        return False
    provider = provider_for(svc, rollout)
    if provider is None:
        return False
    assert rollout.flag_key
    try:
        state = provider.read(rollout.flag_key, strategy_id=rollout.flag_strategy_id)
    except FlagError as error:
        return _unreadable(svc, rollout_id, error.reason)
    if not state.exists:
        return _unreadable(
            svc, rollout_id, state.detail or f"flag {rollout.flag_key} does not exist any more"
        )
    now = svc.clock()
    with svc.db.transaction() as session:
        locked = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if locked is None or not locked.status.is_open:
            return False
        previous = locked.flag_percent
        changed = _seen_quietly(locked, state, now)
        if flagging.new_drift(locked, previous):
            plan = flagging.plan_percent(locked)
            event = rollouts.event(
                locked,
                EventKind.FLAG_DRIFT,
                None,
                now,
                flag=locked.flag_key,
                provider=provider.name,
                before=previous,
                flag_says=locked.flag_percent,
                plan_says=plan,
                detail=state.detail,
            )
            session.add(event)
            session.flush()
            thread = flag_texts.drift_alert(
                locked, provider=provider.name, plan=plan, link=provider.link(locked.flag_key or "")
            )
            announcing.queue(session, locked, announcing.Announcement(f"flag-drift:{event.id}", thread), now)
        if changed:
            locked.touch(now)
        return changed


def _seen_quietly(rollout: Rollout, state: FlagState, now: datetime) -> bool:
    """Like `_seen`, but says whether anything shown changed (a read alone is no news)."""
    seen_at = rollout.flag_seen_at
    after = flagging.exposed(state.enabled, state.percent)
    changed = flagging.see(
        rollout, percent=after, enabled=state.enabled, strategy_id=state.strategy_id, now=now
    )
    if not changed:
        rollout.flag_seen_at = seen_at or now
    return changed


def _unreadable(svc: Services, rollout_id: int, reason: str) -> bool:
    now = svc.clock()
    with svc.db.transaction() as session:
        locked = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if locked is None or locked.flag_problem == reason:
            return False
        locked.flag_problem = reason
        locked.touch(now)
        return True


# --- what people decide about a drift ---------------------------------------------------------


def apply_plan(svc: Services, actor: Actor, rollout_id: int) -> Written:
    """ "Apply the plan's %": writes the plan's percentage to the flag."""
    check_allowed(svc, actor, load_for(svc, actor, rollout_id), "set the flag of")
    now = svc.clock()
    feature, target = "", 0.0
    try:
        with svc.db.transaction() as session:
            rollout = _open(session, rollout_id)
            feature, target = rollout.feature, flagging.plan_percent(rollout)
            written = write(svc, session, rollout, target, actor=actor.user_id, why="plan applied", now=now)
            if written is None:
                raise InvalidTransition("no flag service runs the flag of {feature}", feature=feature)
            return written
    except FlagError as error:
        record_failure(svc, rollout_id, actor.user_id, target, error, "plan applied")
        raise refused(svc, feature, error, "change") from None


def adopt(svc: Services, actor: Actor, rollout_id: int, percent: float) -> Rollout:
    """ "Adopt the flag's %": people accept what the flag says; no more warnings for it."""
    check_allowed(svc, actor, load_for(svc, actor, rollout_id), "adopt the flag of")
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = _open(session, rollout_id)
        if rollout.flag_percent != percent:
            raise InvalidTransition(
                "the flag of {feature} now says {now}, not {then}: nothing adopted",
                feature=rollout.feature,
                now=flagging.percent_words(rollout.flag_percent),
                then=flagging.percent_words(percent),
            )
        rollout.flag_adopted_percent = percent
        rollout.touch(now)
        session.add(
            rollouts.event(
                rollout,
                EventKind.FLAG_ADOPTED,
                actor.user_id,
                now,
                flag=rollout.flag_key,
                percent=percent,
                plan_says=flagging.plan_percent(rollout),
            )
        )
        return rollout


def _open(session: Session, rollout_id: int) -> Rollout:
    rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
    if rollout is None:
        raise RolloutNotFound("That rollout does not exist any more.")
    if not rollout.status.is_open:
        raise InvalidTransition(
            "{feature} is {status}; its flag is no longer the bot's to set",
            feature=rollout.feature,
            status=rollout.status.value.replace("_", " "),
        )
    return rollout
