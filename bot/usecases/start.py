"""Use cases. Each opens one transaction, loads the rollout under lock, applies a rule from the
domain, writes the new state with its Event, and commits. Slack is touched only after commit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain import flagging as flag_rules
from bot.domain import names, rollouts
from bot.errors import DuplicateFeature, RolloutError, UsageError
from bot.flags import FlagError, FlagState, valid_flag_key
from bot.observe import logs
from bot.services import Actor, Services
from bot.usecases import announcing, flagging, plan_store, schedule
from bot.usecases.views import rollout_view
from messages.views import RolloutView
from storage import db, queries
from storage.enums import EventKind
from storage.models import Rollout
from storage.rows import assign, insert_new

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "standard"


@dataclass(frozen=True)
class Start:
    """What `/rollout start` (or its form) asks for."""

    feature: str | None = None  # None: open the form
    template: str | None = None
    owner_id: str | None = None
    stakeholders: tuple[str, ...] = ()
    flag: str | None = None
    service: str | None = None
    timezone: str | None = None


def _check_timezone(name: str | None, default: str) -> str:
    if not name:
        return default
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"`{name}` is not a time zone (use a name like Europe/Berlin)", "start") from None
    return name


def check_flag(svc: Services, feature: str, flag: str | None) -> tuple[str | None, FlagState | None]:
    """With a flag service: the rollout's flag key (default: the feature name), which must
    name a flag that exists there. Without one: the key as given, unchecked."""
    if svc.flags is None:
        return flag, None
    key = flag or feature
    if not valid_flag_key(key):
        raise UsageError(
            f"`{key}` cannot be a flag key (letters, digits, `.`, `_`, `-`): name the flag with `--flag key`",
            "start",
        )
    try:
        state = svc.flags.read(key)
    except FlagError as error:
        raise RolloutError(
            "Could not read flag `{flag}` from {provider}, so nothing was started: {reason}",
            flag=key,
            provider=svc.flags.name,
            reason=error.reason,
        ) from None
    if not state.exists:
        raise RolloutError(
            "There is no flag `{flag}` in {provider} ({detail}). Create it there "
            "first, or name the flag this rollout should drive with `--flag key`. Nothing was started.",
            flag=key,
            provider=svc.flags.name,
            detail=state.detail or "not found",
        )
    return key, state


def start(svc: Services, actor: Actor, cmd: Start) -> int:
    """Creates the rollout from its template. Returns its id.

    With a flag service, the flag must exist; the bot remembers what it says and, when the
    first step exposes users (a 5 % canary), sets it to that step before the commit."""
    return opened(svc, actor, cmd)[0]


def opened(svc: Services, actor: Actor, cmd: Start) -> tuple[int, RolloutView | None]:
    """`start`, and the view of the rollout as its transaction committed it, for the first
    status message (`status_board.post`), so it is not read back: built from the very rows that
    were inserted. None when the flag's first step changed the rollout in the session (its view
    is read after the commit, as every other change's is)."""
    assert cmd.feature is not None
    plan = plan_store.resolve(svc, actor.team_id, cmd.template or DEFAULT_TEMPLATE)
    tz = _check_timezone(cmd.timezone, svc.settings.default_timezone)
    flag_key, flag = check_flag(svc, cmd.feature, cmd.flag)
    now = svc.clock()
    key = names.feature_key(cmd.feature)
    try:
        with svc.db.transaction() as session:
            existing = queries.open_by_feature(session=session, team_id=actor.team_id, feature_key=key)
            if existing is not None:
                raise _duplicate(existing)
            rollout = rollouts.new_rows(
                plan,
                team_id=actor.team_id,
                channel_id=actor.channel_id,
                feature=cmd.feature,
                owner_id=cmd.owner_id or actor.user_id,
                created_by=actor.user_id,
                flag_key=flag_key,
                service=cmd.service,
                stakeholders=list(cmd.stakeholders),
                timezone=tz,
                country=svc.settings.default_country,
                now=now,
            )
            _insert_plan(session, rollout)
            logs.bind_rollout(rollout)
            insert_new(
                session,
                [
                    rollouts.new_event(
                        rollout,
                        EventKind.STARTED,
                        actor.user_id,
                        now,
                        template=plan.name,
                        channel=actor.channel_id,
                    )
                ],
                ids=False,  # nothing reads the event's id
            )
            db.wrote_events(session)
            watch = svc.settings.watch_minutes
            if flag is None:
                # Nothing after this changes the rollout's row or plan: this is what commits.
                shown = rollout_view(rollout)
                announcing.announce_new(
                    session, rollout, "started", "started", now, actor=actor.user_id, view=shown
                )
                schedule.schedule_new(session, rollout, now, watch_minutes=watch)
                return rollout.id, shown
            else:
                # The flag's first step changes the rollout: from here on it is the session's
                # (loaded as committed so far), so those changes are written with the rest.
                rollout = session.get_one(Rollout, rollout.id)
                _first_step(svc, session, rollout, flag, actor, now)
                announcing.announce(
                    session, rollout, "started", "started", now, actor=actor.user_id, before_status=True
                )
                # Its rows wait for the status message, whose commit wakes the outbox.
                session.info.pop(announcing.QUEUED, None)
                schedule.reschedule(session, rollout, now, watch_minutes=watch)
            return rollout.id, None
    except IntegrityError:
        # Two starts of one name raced past the check; the unique index kept one.
        with svc.db.reading() as session:
            existing = queries.open_by_feature(session=session, team_id=actor.team_id, feature_key=key)
        if existing is None:
            raise
        raise _duplicate(existing) from None


def _insert_plan(session: Session, rollout: Rollout) -> None:
    """Writes the new rollout and its copy of the plan (phases, their steps and checklist items)
    with one INSERT per table, each with every row (`storage.rows.insert_new`; on SQLite each
    after reading the table's highest id). The objects stay outside the session, read-only from
    here on, with their ids set."""
    insert_new(session, [rollout])
    assign(rollout.phases, rollout_id=rollout.id)
    insert_new(session, rollout.phases)
    for phase in rollout.phases:
        assign(phase.steps, phase_id=phase.id)
        assign(phase.items, phase_id=phase.id, rollout_id=rollout.id)
    insert_new(session, [step for phase in rollout.phases for step in phase.steps])
    insert_new(session, [item for phase in rollout.phases for item in phase.items])


def _first_step(
    svc: Services, session: Session, rollout: Rollout, flag: FlagState, actor: Actor, now: datetime
) -> None:
    seen = flag_rules.exposed(flag.enabled, flag.percent)
    flag_rules.see(rollout, percent=seen, enabled=flag.enabled, strategy_id=flag.strategy_id, now=now)
    target = flag_rules.plan_percent(rollout)
    if seen == target:
        return
    try:
        flagging.write(svc, session, rollout, target, actor=actor.user_id, why="start", now=now)
    except FlagError as error:
        raise flagging.refused(svc, rollout.feature, error, "start") from None


def _duplicate(existing: queries.OpenRollout) -> DuplicateFeature:
    return DuplicateFeature(
        "*{feature}* already has an open rollout in <#{channel}>. "
        "Use `/rollout status {feature}` to see it, or pick another name.",
        feature=existing.feature,
        channel=existing.channel_id,
    )


def discard(svc: Services, rollout_id: int) -> None:
    """Undoes a start whose status message could not be posted, so nothing half-made stays
    (its queued announcements go with it)."""
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is not None:
            if flagging.provider_for(svc, rollout) is not None and rollout.flag_percent:
                # Its first step was set on the flag: take it back, or users keep the feature.
                try:
                    flagging.write(
                        svc, session, rollout, flagging.OFF, actor=None, why="start undone", now=svc.clock()
                    )
                except FlagError:
                    log.warning(
                        "flag %s of an undone start stays at %s%%", rollout.flag_key, rollout.flag_percent
                    )
            session.delete(rollout)
