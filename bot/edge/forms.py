"""The forms (Slack modals) a command opens, and what each carries in `private_metadata`."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from slack_sdk.errors import SlackApiError

from bot.errors import UsageError
from bot.ids import View
from bot.services import Actor, Services
from bot.slackweb.client import error_code
from bot.usecases import access, advance, lookup, plan_store
from bot.usecases import start as starting
from messages.modals import override_intro, reason_modal, start_modal
from messages.text import escape
from storage.models import Rollout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FormContext:
    """What a modal carries in private_metadata: where it was opened, and for what."""

    channel_id: str
    token: str = ""  # rollout id, or "rollout:phase:step" for an override

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str) -> FormContext:
        data = json.loads(raw or "{}")
        return cls(channel_id=str(data["channel_id"]), token=str(data.get("token", "")))


def open_form(svc: Services, trigger_id: str | None, view: dict[str, object]) -> None:
    if not trigger_id:  # the terminal shell has no forms
        raise UsageError("this needs a form, which only Slack can show")
    try:
        svc.client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        log.warning("views.open failed: %s", error_code(exc))
        raise


def open_start_form(svc: Services, actor: Actor, trigger_id: str | None) -> None:
    if not trigger_id:
        raise UsageError("the feature name is missing", "start")
    open_form(
        svc,
        trigger_id,
        start_modal(
            templates=[(name, plan.title) for name, plan in plan_store.available(svc, actor.team_id).items()],
            default_template=starting.DEFAULT_TEMPLATE,
            owner_id=actor.user_id,
            private_metadata=FormContext(channel_id=actor.channel_id).dumps(),
        ),
    )


def open_override_form(svc: Services, actor: Actor, token: str, trigger_id: str | None) -> None:
    rollout_id, _where = advance.Where.parse(token)
    rollout = lookup.load_for(svc, actor, rollout_id)
    access.check_allowed(svc, actor, rollout, "override the gate of")
    preview = advance.override_preview(svc, rollout)
    open_form(
        svc,
        trigger_id,
        reason_modal(
            callback_id=View.OVERRIDE,
            title="Advance anyway",
            submit="Advance",
            intro=override_intro(
                feature=preview.feature,
                from_step=preview.from_step,
                to_step=preview.to_step,
                to_phase=preview.to_phase,
                leaves_phase=preview.leaves_phase,
                blockers=preview.blockers,
            ),
            label="Why advance anyway?",
            private_metadata=FormContext(channel_id=actor.channel_id, token=token).dumps(),
            required=True,
        ),
    )


def _flag_words(svc: Services, rollout: Rollout) -> str:
    if svc.flags is not None and rollout.flag_key and rollout.flag_seen_at is not None:
        return f"first, I set flag `{escape(rollout.flag_key)}` to 0% in {escape(svc.flags.name)}."
    return "the flag should go back to 0%."


def open_rollback_form(svc: Services, actor: Actor, rollout_id: int, trigger_id: str | None) -> None:
    rollout = lookup.load_for(svc, actor, rollout_id)
    access.check_allowed(svc, actor, rollout, "roll back")
    open_form(
        svc,
        trigger_id,
        reason_modal(
            callback_id=View.ROLLBACK,
            title="Roll back",
            submit="Roll back",
            intro=f"Roll back *{escape(rollout.feature)}*? This ends the rollout; {_flag_words(svc, rollout)}",
            label="Reason",
            private_metadata=FormContext(channel_id=actor.channel_id, token=str(rollout_id)).dumps(),
            required=False,
        ),
    )
