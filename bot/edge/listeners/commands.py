"""`/rollout ...`: ack at once (help and bad input are answered in the ack), work after."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltRequest, Respond

from bot.edge import dispatch
from bot.edge.answers import answering, usage_message
from bot.edge.listeners.payloads import field, sent_at_of
from bot.edge.listeners.replies import RespondReplier
from bot.edge.parsing import parse_command
from bot.errors import UsageError
from bot.services import Actor, Services


def actor_of(command: dict[str, Any]) -> Actor:
    team, user = field(command, "team_id"), field(command, "user_id")
    if not team or not user:
        raise UsageError("that command does not say who sent it")
    return Actor(team_id=team, user_id=user, channel_id=field(command, "channel_id"))


def subcommand_of(text: str) -> str:
    return (text or "").split(maxsplit=1)[0].lower() if (text or "").strip() else "help"


def register(app: App, svc: Services) -> None:
    def acknowledge(ack: Ack, command: dict[str, Any]) -> None:
        try:
            quick = dispatch.quick_reply(parse_command(command.get("text", "")))
        except UsageError as error:
            quick = usage_message(error)
        if quick is None:
            ack()
        else:
            ack(response_type="ephemeral", **quick.as_kwargs())

    def work(command: dict[str, Any], respond: Respond, request: BoltRequest) -> None:
        text = command.get("text", "")
        try:
            cmd = parse_command(text)
        except UsageError:
            return  # the ack already showed the right form
        reply = RespondReplier(respond)
        with answering(reply, subcommand_of(text)):
            dispatch.run(
                svc,
                actor_of(command),
                cmd,
                reply,
                trigger_id=command.get("trigger_id"),
                sent_at=sent_at_of(request),
            )

    app.command("/rollout")(ack=acknowledge, lazy=[work])
