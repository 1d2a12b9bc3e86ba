"""The metrics editor's submission: checked in the ack, saved after it."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot import metric_forms
from bot.answers import answering
from bot.handlers import FormContext
from bot.ids import View
from bot.listeners.replies import EphemeralReplier
from bot.services import Actor, Services


def _values(view: dict[str, Any]) -> dict[str, Any]:
    return dict(view.get("state", {}).get("values", {}))


def register(app: App, svc: Services) -> None:
    def ack_metrics(ack: Ack, view: dict[str, Any]) -> None:
        errors = metric_forms.form_errors(metric_forms.read_form(_values(view)))
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()

    def save_metrics(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        context = FormContext.loads(view.get("private_metadata", ""))
        actor = Actor(team_id=body["team"]["id"], user_id=body["user"]["id"], channel_id=context.channel_id)
        reply = EphemeralReplier(client, actor.channel_id, actor.user_id)
        with answering(reply, "metrics"):
            metric_forms.submit(svc, actor, int(context.token), _values(view), reply)

    app.view(View.METRICS)(ack=ack_metrics, lazy=[save_metrics])
