"""`/rollout metrics` at the edge: open the editor form, read what Slack sends back, and after
the ack save it (`bot.usecases.metrics_edit`), refresh the status message and confirm."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.delivery import status_board
from bot.domain.plans.model import Direction, Rule
from bot.edge.answers import Replier
from bot.edge.forms import FormContext
from bot.errors import UsageError
from bot.services import Actor, Services
from bot.slackweb.client import error_code
from bot.usecases import access, lookup, measure, metrics_edit
from bot.usecases.metrics_edit import ACTION, Group, form_errors, require_open
from messages.metric_modal import (
    DEFAULT_AGGREGATOR,
    Field,
    FieldId,
    Kind,
    metric_editor,
    metrics_saved,
    nothing_changed,
)
from messages.modals import VALUE

log = logging.getLogger(__name__)


# --- reading and checking the form (pure: the ack runs these) ------------------------------


def _submitted(action: Mapping[str, Any]) -> str:
    option = action.get("selected_option")
    if isinstance(option, Mapping):
        return str(option.get("value") or "")
    return str(action.get("value") or "")


def read_form(values: Mapping[str, Mapping[str, Any]]) -> list[Group]:
    """The groups of a submitted view's `state.values`, in the order the form showed them."""
    fields: dict[int, dict[Field, str]] = {}
    keys: dict[int, str] = {}
    for block_id, actions in values.items():
        field_id = FieldId.parse(block_id)
        if field_id is None:
            continue
        fields.setdefault(field_id.group, {})[field_id.field] = _submitted(actions.get(VALUE) or {}).strip()
        keys[field_id.group] = field_id.key
    groups = []
    for index in sorted(fields):
        typed = fields[index]
        groups.append(
            Group(
                index=index,
                key=keys[index],
                name=" ".join(typed.get(Field.NAME, "").split()),
                query=typed.get(Field.QUERY, ""),
                kind=typed.get(Field.KIND) or Kind.METRIC.value,
                rule=typed.get(Field.RULE) or Rule.RELATIVE.value,
                threshold=typed.get(Field.THRESHOLD, ""),
                bad=typed.get(Field.BAD) or Direction.UP.value,
                unit=typed.get(Field.UNIT, ""),
                aggregator=typed.get(Field.AGGREGATOR) or DEFAULT_AGGREGATOR,
                window=typed.get(Field.WINDOW, ""),
                comparison=typed.get(Field.COMPARISON, ""),
            )
        )
    return groups


# --- turning the form into the rollout's metrics (pure) --------------------------------------


# --- the use cases ---------------------------------------------------------------------------


def check_form(values: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """What the ack says is wrong with the submitted form, by block_id (pure: no database)."""
    return form_errors(read_form(values))


def open_editor(svc: Services, actor: Actor, rollout_id: int, trigger_id: str | None) -> None:
    """Opens the editor prefilled with the rollout's metrics, for someone who may steer it."""
    if not trigger_id:  # the terminal shell has no forms
        raise UsageError("this needs a form, which only Slack can show", "metrics")
    rollout = lookup.load_for(svc, actor, rollout_id)
    require_open(rollout)
    access.check_allowed(svc, actor, rollout, ACTION)
    metrics, triggers = measure.metrics_of(rollout)
    view = metric_editor(
        feature=rollout.feature,
        metrics=metrics,
        triggers=triggers,
        private_metadata=FormContext(channel_id=actor.channel_id, token=str(rollout_id)).dumps(),
    )
    try:
        svc.client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        log.warning("views.open of the metrics editor failed: %s", error_code(exc))
        raise


def submit(
    svc: Services, actor: Actor, rollout_id: int, values: Mapping[str, Mapping[str, Any]], reply: Replier
) -> None:
    """The work after the ack: save, refresh the status message, confirm to the person."""
    groups = read_form(values)
    if form_errors(groups):
        # Bolt runs the lazy listener even when the ack answered `response_action: errors`;
        # the modal is still open and shows what to fix, so there is nothing to do or say.
        return
    saved = metrics_edit.save(svc, actor, rollout_id, groups)
    if not saved.changed:
        reply(nothing_changed(saved.feature))
        return
    # logged by status_board; the change itself is committed either way
    refreshed = status_board.refresh(svc, rollout_id) is None
    reply(
        metrics_saved(
            feature=saved.feature,
            metrics=saved.edit.metrics,
            triggers=saved.edit.triggers,
            removed=saved.edit.removed,
            need_baseline=saved.edit.need_baseline,
            board_refreshed=refreshed,
        )
    )
