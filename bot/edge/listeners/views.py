"""Modal submissions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.edge import dispatch, plan_slack, subcommands
from bot.edge.answers import answering
from bot.edge.forms import FormContext
from bot.edge.listeners.payloads import actor_of, field, rollout_id_of
from bot.edge.listeners.replies import EphemeralReplier
from bot.edge.parsing import check_feature, checked_start
from bot.errors import UsageError
from bot.ids import Block, View
from bot.services import Actor, Services
from bot.usecases.start import Start
from messages.modals import VALUE


def _input(view: dict[str, Any], block: str) -> dict[str, Any]:
    values = view.get("state", {}).get("values", {}) if isinstance(view.get("state"), dict) else {}
    entry = values.get(block, {}) if isinstance(values, dict) else {}
    value = entry.get(VALUE, {}) if isinstance(entry, dict) else {}
    return value if isinstance(value, dict) else {}


def _text(view: dict[str, Any], block: str) -> str:
    return field(_input(view, block), "value").replace("\x00", "").strip()


def start_from_form(view: dict[str, Any]) -> Start:
    stakeholders = _input(view, Block.START_STAKEHOLDERS).get("selected_conversations")
    return checked_start(
        Start(
            feature=check_feature(_text(view, Block.START_FEATURE), "start"),
            template=field(_input(view, Block.START_TEMPLATE), "selected_option", "value") or None,
            owner_id=field(_input(view, Block.START_OWNER), "selected_user") or None,
            stakeholders=tuple(c for c in stakeholders if isinstance(c, str))
            if isinstance(stakeholders, list)
            else (),
            flag=_text(view, Block.START_FLAG) or None,
        )
    )


def _reason(view: dict[str, Any]) -> str:
    return _text(view, Block.REASON)


def form_context(body: dict[str, Any], view: dict[str, Any]) -> tuple[Actor, FormContext]:
    try:
        context = FormContext.loads(field(view, "private_metadata"))
    except (ValueError, KeyError, TypeError):
        raise UsageError("that form is not one of mine any more") from None
    return replace(actor_of(body), channel_id=context.channel_id), context


def form_replier(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> EphemeralReplier:
    """Where a form's answer goes: the channel it was opened in, else the person's DM."""
    user = field(body, "user", "id")
    try:
        channel = form_context(body, view)[1].channel_id
    except UsageError:
        channel = user
    return EphemeralReplier(client, channel or user, user)


def rollout_token(context: FormContext) -> int:
    return rollout_id_of(context.token)


def register(app: App, svc: Services) -> None:
    def ack_start(ack: Ack, view: dict[str, Any]) -> None:
        try:
            start_from_form(view)
        except UsageError as error:
            ack(response_action="errors", errors={error.field or Block.START_FEATURE: error.problem[:150]})
            return
        ack()

    # Bolt runs the lazy work even after an ack that returned errors, so each one checks the
    # form again and does nothing when the person is still looking at the errors.
    def start(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        try:
            cmd = start_from_form(view)
        except UsageError:
            return
        with answering(form_replier(body, view, client), "start"):
            actor, _ = form_context(body, view)
            subcommands.start(svc, actor, cmd)

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
        reply = form_replier(body, view, client)
        with answering(reply, "advance"):
            actor, context = form_context(body, view)
            subcommands.override(svc, actor, context.token, _reason(view), reply)

    def ack_now(ack: Ack) -> None:
        ack()

    def rollback(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        reply = form_replier(body, view, client)
        with answering(reply, "rollback"):
            actor, context = form_context(body, view)
            dispatch.run_for(svc, actor, "rollback", rollout_token(context), reply, reason=_reason(view))

    def ack_import(ack: Ack, view: dict[str, Any]) -> None:
        problem = plan_slack.check_name(_text(view, Block.IMPORT_NAME))
        if problem:
            ack(response_action="errors", errors={Block.IMPORT_NAME: problem})
            return
        ack()

    def import_plan(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        name = _text(view, Block.IMPORT_NAME)
        if plan_slack.check_name(name):
            return
        reply = form_replier(body, view, client)
        with answering(reply, "import"):
            actor, _ = form_context(body, view)
            reply(plan_slack.import_text(svc, actor, name, _text(view, Block.IMPORT_TEXT)))

    app.view(View.START)(ack=ack_start, lazy=[start])
    app.view(View.IMPORT)(ack=ack_import, lazy=[import_plan])
    app.view(View.OVERRIDE)(ack=ack_reason_required, lazy=[override])
    app.view(View.ROLLBACK)(ack=ack_now, lazy=[rollback])
