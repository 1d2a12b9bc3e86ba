"""The metrics editor's submission: checked in the ack, saved after it."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.edge import metric_forms
from bot.edge.answers import answering
from bot.edge.listeners.views import form_context, form_replier, rollout_token
from bot.ids import View
from bot.services import Services


def _values(view: dict[str, Any]) -> dict[str, Any]:
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    return dict(values) if isinstance(values, dict) else {}


def register(app: App, svc: Services) -> None:
    def ack_metrics(ack: Ack, view: dict[str, Any]) -> None:
        errors = metric_forms.check_form(_values(view))
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()

    def save_metrics(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        reply = form_replier(body, view, client)
        with answering(reply, "metrics"):
            actor, context = form_context(body, view)
            metric_forms.submit(svc, actor, rollout_token(context), _values(view), reply)

    app.view(View.METRICS)(ack=ack_metrics, lazy=[save_metrics])
