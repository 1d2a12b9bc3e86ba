"""Use cases. Each opens one transaction, loads the rollout under lock, applies a rule from the
domain, writes the new state with its Event, and commits. Slack is touched only after commit."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import IntegrityError

from bot.domain import names, rollouts
from bot.errors import DuplicateFeature, UsageError
from bot.services import Actor, Services
from bot.usecases import announcing, plan_store, schedule
from storage import queries
from storage.enums import EventKind
from storage.models import Rollout

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


def start(svc: Services, actor: Actor, cmd: Start) -> int:
    """Creates the rollout from its template. Returns its id."""
    assert cmd.feature is not None
    plan = plan_store.resolve(svc, actor.team_id, cmd.template or DEFAULT_TEMPLATE)
    tz = _check_timezone(cmd.timezone, svc.settings.default_timezone)
    now = svc.clock()
    key = names.feature_key(cmd.feature)
    try:
        with svc.db.transaction() as session:
            existing = queries.open_by_feature(session=session, team_id=actor.team_id, feature_key=key)
            if existing is not None:
                raise _duplicate(existing)
            rollout = rollouts.new_rollout(
                plan,
                team_id=actor.team_id,
                channel_id=actor.channel_id,
                feature=cmd.feature,
                owner_id=cmd.owner_id or actor.user_id,
                created_by=actor.user_id,
                flag_key=cmd.flag,
                service=cmd.service,
                stakeholders=list(cmd.stakeholders),
                timezone=tz,
                country=svc.settings.default_country,
                now=now,
            )
            session.add(rollout)
            session.flush()
            session.add(
                rollouts.event(
                    rollout,
                    EventKind.STARTED,
                    actor.user_id,
                    now,
                    template=plan.name,
                    channel=actor.channel_id,
                )
            )
            announcing.announce(session, rollout, "started", "started", now, actor=actor.user_id)
            schedule.reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
            return rollout.id
    except IntegrityError:
        # Two starts of one name raced past the check; the unique index kept one.
        with svc.db.reading() as session:
            existing = queries.open_by_feature(session=session, team_id=actor.team_id, feature_key=key)
        if existing is None:
            raise
        raise _duplicate(existing) from None


def _duplicate(existing: Rollout) -> DuplicateFeature:
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
            session.delete(rollout)
