"""Modal submissions."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot import handlers
from bot.answers import answering
from bot.flows import Actor
from bot.handlers import StartContext
from bot.ids import Block, View
from bot.parsing import Start, UsageError, check_feature
from bot.services import Services
from messages.blocks import Message
from messages.modals import VALUE


def _value(view: dict[str, Any], block: str) -> Any:
    field = view["state"]["values"].get(block, {}).get(VALUE, {})
    for key in ("value", "selected_user", "selected_conversations", "selected_option"):
        if field.get(key) is not None:
            return field[key]
    return None


def start_from_form(view: dict[str, Any]) -> Start:
    template = _value(view, Block.START_TEMPLATE)
    return Start(
        feature=check_feature(_value(view, Block.START_FEATURE) or "", "start"),
        template=template["value"] if template else None,
        owner_id=_value(view, Block.START_OWNER),
        stakeholders=tuple(_value(view, Block.START_STAKEHOLDERS) or ()),
        flag=(_value(view, Block.START_FLAG) or "").strip() or None,
    )


def register(app: App, svc: Services) -> None:
    def acknowledge(ack: Ack, view: dict[str, Any]) -> None:
        try:
            start_from_form(view)
        except UsageError as error:
            ack(response_action="errors", errors={Block.START_FEATURE: error.problem[:150]})
            return
        ack()

    def work(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        context = StartContext.loads(view.get("private_metadata", ""))
        actor = Actor(team_id=body["team"]["id"], user_id=body["user"]["id"], channel_id=context.channel_id)

        def reply(message: Message) -> None:
            client.chat_postEphemeral(channel=actor.channel_id, user=actor.user_id, **message.as_kwargs())

        with answering(reply, "start"):
            answer = handlers.start(svc, actor, start_from_form(view))
            if answer is not None:
                reply(answer)

    app.view(View.START)(ack=acknowledge, lazy=[work])
