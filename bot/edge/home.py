"""App Home: published when a person opens the bot's Home tab."""

from __future__ import annotations

from bot.delivery import status_board
from bot.services import Actor, Services
from bot.usecases import view_reads, views
from messages.blocks import status_message
from messages.home import home_view, status_modal


def publish(svc: Services, team_id: str, user_id: str) -> None:
    with svc.db.reading() as session:
        rows = views.load_home(session=session, team_id=team_id, user_id=user_id, now=svc.clock())
    svc.client.views_publish(user_id=user_id, view=home_view(rows))


def open_rollout(svc: Services, actor: Actor, rollout_id: int, trigger_id: str) -> None:
    with svc.db.reading() as session:
        rollout = view_reads.load_rollout(session=session, rollout_id=rollout_id, team_id=actor.team_id)
    if rollout is None:
        return
    link = status_board.permalink(svc, rollout_id)
    message = status_message(rollout, now=svc.clock(), interactive=False, link=link)
    svc.client.views_open(trigger_id=trigger_id, view=status_modal(rollout.feature, message.blocks))
