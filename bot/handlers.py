"""What each /rollout subcommand does, shared by the slash command, the buttons that re-run a
command for a chosen rollout, and the terminal shell. Each returns the reply to send, if any."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from slack_sdk.errors import SlackApiError

from bot import flows, status_board
from bot.answers import help_message
from bot.errors import NotInChannel
from bot.flows import Actor
from bot.parsing import Command, Help, ListRollouts, Start, Status, UsageError
from bot.plans import get_template, template_names
from bot.services import Services
from bot.slack import error_code
from messages import render
from messages.blocks import Message, status_message, text_message
from messages.modals import start_modal
from messages.text import escape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartContext:
    """What the start form carries in private_metadata."""

    channel_id: str

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str) -> StartContext:
        data = json.loads(raw or "{}")
        return cls(channel_id=str(data["channel_id"]))


def quick_reply(cmd: Command) -> Message | None:
    """What the ack itself can say, touching neither the database nor Slack."""
    if isinstance(cmd, Help):
        return help_message()
    if isinstance(cmd, Start) and cmd.feature is not None:
        return text_message(f":hourglass_flowing_sand: Starting *{escape(cmd.feature)}*…")
    return None


def run(svc: Services, actor: Actor, cmd: Command, *, trigger_id: str | None = None) -> Message | None:
    if isinstance(cmd, Help):
        return None  # answered by the ack
    if isinstance(cmd, Start):
        if cmd.feature is None:
            open_start_form(svc, actor, trigger_id)
            return None
        return start(svc, actor, cmd)
    if isinstance(cmd, Status):
        return status(svc, actor, flows.resolve(svc, actor, cmd.feature, "status"))
    if isinstance(cmd, ListRollouts):
        return list_rollouts(svc, actor)
    raise AssertionError(f"no handler for {cmd!r}")


def run_for(svc: Services, actor: Actor, subcommand: str, rollout_id: int) -> Message | None:
    """A command re-run for a rollout picked from the "which one?" buttons."""
    if subcommand == "status":
        return status(svc, actor, rollout_id)
    raise AssertionError(f"no picked-rollout handler for {subcommand!r}")


def start(svc: Services, actor: Actor, cmd: Start) -> Message | None:
    get_template(cmd.template or flows.DEFAULT_TEMPLATE)  # unknown template: refuse before writing
    rollout_id = flows.start(svc, actor, cmd)
    try:
        status_board.post(svc, rollout_id)
    except (NotInChannel, SlackApiError):
        flows.discard(svc, rollout_id)
        raise
    return None


def status(svc: Services, actor: Actor, rollout_id: int) -> Message:
    rollout = flows.load(svc, actor.team_id, rollout_id)
    link = status_board.permalink(svc, rollout_id)
    return status_message(rollout, now=svc.clock(), interactive=False, link=link)


def list_rollouts(svc: Services, actor: Actor) -> Message:
    rows = [
        {
            "feature": r.feature,
            "channel_id": r.channel_id,
            "step_title": r.current_step.label or f"{r.current_step.percent:g}%",
            "phase_name": r.current_phase.name,
            "paused": r.status.value == "paused",
            "owner_id": r.owner_id,
        }
        for r in flows.open_rollouts(svc, actor.team_id)
    ]
    return text_message(render("list", rollouts=rows))


def open_start_form(svc: Services, actor: Actor, trigger_id: str | None) -> None:
    if not trigger_id:  # the terminal shell has no forms
        raise UsageError("the feature name is missing", "start")
    view = start_modal(
        templates=[(n, get_template(n).title) for n in template_names()],
        default_template=flows.DEFAULT_TEMPLATE,
        owner_id=actor.user_id,
        private_metadata=StartContext(channel_id=actor.channel_id).dumps(),
    )
    try:
        svc.client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        log.warning("views.open failed: %s", error_code(exc))
        raise
