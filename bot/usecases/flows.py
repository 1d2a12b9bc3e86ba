"""Use cases. Each opens one transaction, loads the rollout under lock, applies a rule from the
domain, writes the new state with its Event, and commits. Slack is touched only after commit."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import IntegrityError

from bot.delivery import jobs
from bot.domain import rollouts
from bot.edge.parsing import Start, UsageError
from bot.errors import DuplicateFeature, NeedsChoice, RolloutNotFound
from bot.services import Actor, Services
from bot.usecases import announcing, plan_store
from storage import queries
from storage.enums import EventKind
from storage.models import Rollout

DEFAULT_TEMPLATE = "standard"


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
    key = rollouts.feature_key(cmd.feature)
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
            jobs.reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
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


def resolve(svc: Services, actor: Actor, feature: str | None, subcommand: str) -> int:
    """Finds the rollout a command means: by name, else the channel's only open one."""
    with svc.db.reading() as session:
        if feature is not None:
            key = rollouts.feature_key(feature)
            found = queries.latest_by_feature(session=session, team_id=actor.team_id, feature_key=key)
            if found is None:
                raise RolloutNotFound(
                    "There is no rollout called *{feature}*. `/rollout list` shows the open ones.",
                    feature=feature,
                )
            return found.id
        in_channel = queries.open_in_channel(
            session=session, team_id=actor.team_id, channel_id=actor.channel_id
        )
    if len(in_channel) == 1:
        return in_channel[0].id
    if not in_channel:
        raise RolloutNotFound(
            f"This channel has no open rollout. Name one (`/rollout {subcommand} <feature>`) "
            "or start one with `/rollout start <feature>`."
        )
    raise NeedsChoice(
        f"This channel has {len(in_channel)} open rollouts. Which one?",
        [(r.id, r.feature) for r in in_channel],
    )


def load(svc: Services, team_id: str, rollout_id: int) -> Rollout:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    if rollout is None or rollout.team_id != team_id:
        raise RolloutNotFound("That rollout does not exist any more.")
    return rollout


def open_rollouts(svc: Services, team_id: str) -> list[Rollout]:
    with svc.db.reading() as session:
        return list(queries.open_in_team(session=session, team_id=team_id))


@dataclass(frozen=True)
class ItemChange:
    item_id: int
    checked: bool


def set_items(svc: Services, actor: Actor, rollout_id: int, changes: list[ItemChange]) -> int:
    """Applies checklist ticks. Each tick names one item and its new state, so two people
    ticking different boxes at once both stick. Returns how many items changed."""
    now = svc.clock()
    changed = 0
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if rollout is None or rollout.team_id != actor.team_id:
            raise RolloutNotFound("That rollout does not exist any more.")
        for change in changes:
            toggle = rollouts.set_item(rollout, change.item_id, change.checked, actor.user_id, now)
            if toggle is None:
                continue
            changed += 1
            kind = EventKind.ITEM_CHECKED if toggle.checked else EventKind.ITEM_UNCHECKED
            item = toggle.item
            session.add(
                rollouts.event(
                    rollout, kind, actor.user_id, now, item_id=item.id, text=item.text, phase=item.phase.name
                )
            )
    return changed


def resolve_words(svc: Services, actor: Actor, words: list[str], subcommand: str) -> tuple[int, str]:
    """`pause [feature] [reason]`: the first word is the feature if a rollout has that name,
    otherwise every word is the reason and the channel's rollout is meant."""
    if words:
        with svc.db.reading() as session:
            named = queries.latest_by_feature(
                session=session, team_id=actor.team_id, feature_key=rollouts.feature_key(words[0])
            )
        if named is not None:
            return named.id, " ".join(words[1:])
    return resolve(svc, actor, None, subcommand), " ".join(words)


def send_update(svc: Services, actor: Actor, rollout_id: int, text: str) -> Rollout:
    """`/rollout update <text>`: the current state and the text, to the thread and stakeholders."""
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
