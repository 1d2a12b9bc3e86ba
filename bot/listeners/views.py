"""Modal submissions."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot import handlers, plan_slack
from bot.answers import answering
from bot.handlers import FormContext
from bot.ids import Block, View
from bot.listeners.replies import EphemeralReplier
from bot.parsing import Start, UsageError, check_feature
from bot.services import Actor, Services
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


def _reason(view: dict[str, Any]) -> str:
    return str(_value(view, Block.REASON) or "").strip()


def _context(body: dict[str, Any], view: dict[str, Any]) -> tuple[Actor, FormContext]:
    context = FormContext.loads(view.get("private_metadata", ""))
    return Actor(
        team_id=body["team"]["id"], user_id=body["user"]["id"], channel_id=context.channel_id
    ), context


def register(app: App, svc: Services) -> None:
    def ack_start(ack: Ack, view: dict[str, Any]) -> None:
        try:
            start_from_form(view)
        except UsageError as error:
            ack(response_action="errors", errors={Block.START_FEATURE: error.problem[:150]})
            return
        ack()

    # Bolt runs the lazy work even after an ack that returned errors, so each one checks the
    # form again and does nothing when the person is still looking at the errors.
    def start(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        actor, _ = _context(body, view)
        try:
            cmd = start_from_form(view)
        except UsageError:
            return
        with answering(EphemeralReplier(client, actor.channel_id, actor.user_id), "start"):
            handlers.start(svc, actor, cmd)

    def ack_reason_required(ack: Ack, view: dict[str, Any]) -> None:
        if not _reason(view):
            ack(
                response_action="errors",
                errors={Block.REASON: "Say why, for the timeline and the announcement."},
            )
            return
        ack()

    def override(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        if not _reason(view):
            return
        actor, context = _context(body, view)
        reply = EphemeralReplier(client, actor.channel_id, actor.user_id)
        with answering(reply, "advance"):
            handlers.override(svc, actor, context.token, _reason(view), reply)

    def ack_now(ack: Ack) -> None:
        ack()

    def rollback(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        actor, context = _context(body, view)
        reply = EphemeralReplier(client, actor.channel_id, actor.user_id)
        with answering(reply, "rollback"):
            handlers.run_for(svc, actor, "rollback", int(context.token), reply, reason=_reason(view))

    def ack_import(ack: Ack, view: dict[str, Any]) -> None:
        problem = plan_slack.check_name(str(_value(view, Block.IMPORT_NAME) or ""))
        if problem:
            ack(response_action="errors", errors={Block.IMPORT_NAME: problem})
            return
        ack()

    def import_plan(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        name = str(_value(view, Block.IMPORT_NAME) or "")
        if plan_slack.check_name(name):
            return
        actor, _ = _context(body, view)
        reply = EphemeralReplier(client, actor.channel_id, actor.user_id)
        with answering(reply, "import"):
            reply(plan_slack.import_text(svc, actor, name, str(_value(view, Block.IMPORT_TEXT) or "")))

    app.view(View.START)(ack=ack_start, lazy=[start])
    app.view(View.IMPORT)(ack=ack_import, lazy=[import_plan])
    app.view(View.OVERRIDE)(ack=ack_reason_required, lazy=[override])
    app.view(View.ROLLBACK)(ack=ack_now, lazy=[rollback])
