"""Finding the rollout a request means: by name, the channel's only open one, or by id."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from bot.domain import names
from bot.errors import NeedsChoice, RolloutNotFound
from bot.observe import logs
from bot.services import Actor, Services
from storage import queries
from storage.models import Rollout


def resolve(svc: Services, actor: Actor, feature: str | None, subcommand: str) -> int:
    """Finds the rollout a command means: by name, else the channel's only open one."""
    with svc.db.reading() as session:
        return resolve_in(session, actor, feature, subcommand)


def resolve_in(session: Session | Connection, actor: Actor, feature: str | None, subcommand: str) -> int:
    """`resolve`, in a read transaction the caller goes on using (a session's, or a bare
    connection's)."""
    if feature is not None:
        key = names.feature_key(feature)
        found = queries.latest_by_feature(session=session, team_id=actor.team_id, feature_key=key)
        if found is None:
            raise RolloutNotFound(
                "There is no rollout called *{feature}*. `/rollout list` shows the open ones.",
                feature=feature,
            )
        logs.bind_rollout(found)
        return found.id
    in_channel = queries.open_in_channel(session=session, team_id=actor.team_id, channel_id=actor.channel_id)
    if len(in_channel) == 1:
        logs.bind_rollout(in_channel[0])
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
    logs.bind_rollout(rollout)
    return rollout


def open_rollouts(svc: Services, team_id: str) -> list[Rollout]:
    with svc.db.reading() as session:
        return list(queries.open_in_team(session=session, team_id=team_id))


def resolve_words(svc: Services, actor: Actor, words: list[str], subcommand: str) -> tuple[int, str]:
    """`pause [feature] [reason]`: the first word is the feature if a rollout has that name,
    otherwise every word is the reason and the channel's rollout is meant."""
    if words:
        with svc.db.reading() as session:
            named = queries.latest_by_feature(
                session=session, team_id=actor.team_id, feature_key=names.feature_key(words[0])
            )
        if named is not None:
            logs.bind_rollout(named)
            return named.id, " ".join(words[1:])
    return resolve(svc, actor, None, subcommand), " ".join(words)


def load_for(svc: Services, actor: Actor, rollout_id: int) -> Rollout:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    if rollout is None or rollout.team_id != actor.team_id:
        raise RolloutNotFound("That rollout does not exist any more.")
    logs.bind_rollout(rollout)
    return rollout
