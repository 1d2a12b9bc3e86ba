"""App Home: published when a person opens the bot's Home tab."""

from __future__ import annotations

from bot.delivery import status_board
from bot.domain import rollouts
from bot.domain.gates import soak_status
from bot.services import Actor, Services
from messages.blocks import status_message
from messages.home import HomeRow, home_view, status_modal
from storage import queries
from storage.models import Rollout


def next_gate(rollout: Rollout, svc: Services) -> str:
    """What stands before the next advance, short of reading Datadog."""
    step = rollout.current_step
    soak = soak_status(
        rollout.step_started_at,
        step.min_business_days,
        svc.clock(),
        tz=rollout.timezone,
        country=rollout.country,
    )
    parts = ["soak met" if soak.met else soak.describe(rollouts.display_title(step), rollout.timezone)]
    open_criteria = len(rollouts.unchecked_exit_criteria(rollout))
    if open_criteria:
        parts.append(f"{open_criteria} exit criteria not ticked")
    parts.append(f"{len(rollout.metrics)} metrics to check")
    return "; ".join(parts)


def publish(svc: Services, team_id: str, user_id: str) -> None:
    with svc.db.reading() as session:
        mine = queries.open_for_user(session=session, team_id=team_id, user_id=user_id)
    rows = []
    for r in mine:
        done, total = rollouts.progress(r)
        rows.append(
            HomeRow(
                r.id,
                r.feature,
                r.channel_id,
                rollouts.display_title(r.current_step),
                r.current_phase.name,
                r.status.value == "paused",
                done,
                total,
                next_gate(r, svc),
            )
        )
    svc.client.views_publish(user_id=user_id, view=home_view(rows))


def open_rollout(svc: Services, actor: Actor, rollout_id: int, trigger_id: str) -> None:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    if rollout is None or rollout.team_id != actor.team_id:
        return
    link = status_board.permalink(svc, rollout_id)
    message = status_message(rollout, now=svc.clock(), interactive=False, link=link)
    svc.client.views_open(trigger_id=trigger_id, view=status_modal(rollout.feature, message.blocks))
