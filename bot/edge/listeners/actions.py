"""Buttons and checkboxes on the bot's messages."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, BoltRequest, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.delivery import status_board
from bot.edge import dispatch, forms, home, subcommands
from bot.edge.answers import answering
from bot.edge.listeners import payloads
from bot.edge.listeners.payloads import action, actor_of, dicts, field, rollout_id_of, sent_at_of
from bot.edge.listeners.replies import replier_for
from bot.errors import UsageError
from bot.ids import Action, Block
from bot.services import Services
from bot.usecases import access_requests, checklist, controls
from bot.usecases.advance import Intent, Where
from bot.usecases.checklist import ItemChange
from messages import confirmations as confirm
from messages.access import access_granted
from messages.blocks import behind

log = logging.getLogger(__name__)

CHECKLIST_BLOCK = re.compile(rf"^{Block.CHECKLIST}:([0-9]+):")
PICK = re.compile(rf"^{Action.PICK_ROLLOUT}:\d+$")
DATADOG = re.compile(rf"^{Action.OPEN_DATADOG}(:\d+)?$")
# Buttons on the status message whose value is the rollout id, and the subcommand they run.
CONTROL_BUTTONS = {
    Action.ADVANCE: "advance",
    Action.SNAPSHOT: "snapshot",
    Action.PAUSE: "pause",
    Action.RESUME: "resume",
    Action.AUTO_ON: "auto-on",
    Action.AUTO_OFF: "auto-off",
}


def action_value(body: dict[str, Any]) -> str:
    return field(action(body), "value")


def flag_value(value: str) -> tuple[int, float]:
    """The "adopt the flag's %" button: "<rollout id>:<percent>"."""
    rollout_id, _, raw = value.partition(":")
    try:
        percent = float(raw)
    except ValueError:
        raise UsageError("that button is not one of mine any more") from None
    if not 0 <= percent <= 100:
        raise UsageError("that button is not one of mine any more")
    return rollout_id_of(rollout_id), percent


def advance_value(value: str, request: BoltRequest | None) -> tuple[int, Intent]:
    """The Advance button: "<rollout id>:<phase>:<step>" (the step it was rendered at), or,
    on messages posted before buttons carried it, "<rollout id>": the step current when Slack
    sent the click."""
    if ":" in value:
        rollout_id, where = Where.parse(value)
        return rollout_id, Intent(at=where)
    return rollout_id_of(value), Intent(sent_at=sent_at_of(request))


def approver_value(value: str) -> tuple[int, str]:
    """The "Add as approver" button: "<rollout id>:<user id>"."""
    rollout_id, _, user_id = value.partition(":")
    if not re.fullmatch(r"[UW][A-Z0-9]{2,30}", user_id):
        raise UsageError("that button is not one of mine any more")
    return rollout_id_of(rollout_id), user_id


def timeline_cursor(value: str) -> tuple[int, int, int]:
    """The "Older…" button of a timeline page: "<rollout id>:<last event shown>:<next page>"."""
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and int(p) < 2**31 for p in parts):
        raise UsageError("that button is not one of mine any more")
    rollout_id, before, number = (int(p) for p in parts)
    return rollout_id, before, number


def checklist_changes(body: dict[str, Any]) -> tuple[int, list[ItemChange]]:
    """What the click changed: the clicker's selection against what their message showed.

    Slack sends the element's whole selection, which for two people ticking different boxes
    at once would each undo the other; the difference from the rendered `initial_options`
    names just the box this person clicked."""
    clicked = action(body)
    block_id = field(clicked, "block_id")
    match = CHECKLIST_BLOCK.match(block_id)
    if not match:
        raise UsageError("that checklist message is not one of mine")
    shown: set[str] = set()
    message = body.get("message")
    for block in dicts(message.get("blocks") if isinstance(message, dict) else None):
        if block.get("block_id") == block_id:
            for element in dicts(block.get("elements")):
                shown |= {field(o, "value") for o in dicts(element.get("initial_options"))}
    selected = {field(o, "value") for o in dicts(clicked.get("selected_options"))}
    # item ids are database ids too
    changes = [ItemChange(int(v), True) for v in sorted(selected - shown) if payloads.is_id(v)]
    changes += [ItemChange(int(v), False) for v in sorted(shown - selected) if payloads.is_id(v)]
    return rollout_id_of(match.group(1)), changes


def register(app: App, svc: Services) -> None:
    def ack_now(ack: Ack) -> None:
        ack()

    def toggle(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        reply = replier_for(body, respond, client)
        with answering(reply):
            rollout_id, changes = checklist_changes(body)
            # Even with no change (a crossed double click, a refused tick) the clicker's view is
            # put right; the tick's own transaction asks for the edit when it commits.
            with status_board.refreshing(svc, rollout_id) as refreshing:
                checklist.set_items(svc, actor_of(body), rollout_id, changes, then=refreshing)
            if refreshing.error is not None:  # the box they see may be wrong until a retry lands
                reply(behind(refreshing.error))

    def pick(body: dict[str, Any], respond: Respond, client: WebClient, request: BoltRequest) -> None:
        reply = replier_for(body, respond, client)
        with answering(reply):
            subcommand, _, rollout_id = action_value(body).partition(":")
            dispatch.run_for(
                svc,
                actor_of(body),
                subcommand,
                rollout_id_of(rollout_id),
                reply,
                trigger_id=body.get("trigger_id"),
                intent=Intent(sent_at=sent_at_of(request)),
            )

    def control(body: dict[str, Any], respond: Respond, client: WebClient, request: BoltRequest) -> None:
        reply = replier_for(body, respond, client)
        subcommand = CONTROL_BUTTONS[Action(field(action(body), "action_id"))]
        with answering(reply, subcommand):
            if subcommand == "advance":
                rollout_id, intent = advance_value(action_value(body), request)
                dispatch.run_for(svc, actor_of(body), subcommand, rollout_id, reply, intent=intent)
            else:
                dispatch.run_for(svc, actor_of(body), subcommand, rollout_id_of(action_value(body)), reply)

    def advance_anyway(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        with answering(replier_for(body, respond, client), "advance"):
            forms.open_override_form(svc, actor_of(body), action_value(body), body.get("trigger_id"))

    def rollback(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        with answering(replier_for(body, respond, client), "rollback"):
            forms.open_rollback_form(
                svc, actor_of(body), rollout_id_of(action_value(body)), body.get("trigger_id")
            )

    def apply_flag_plan(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        reply = replier_for(body, respond, client)
        with answering(reply):
            subcommands.apply_flag_plan(svc, actor_of(body), rollout_id_of(action_value(body)), reply)

    def adopt_flag(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        reply = replier_for(body, respond, client)
        with answering(reply):
            rollout_id, percent = flag_value(action_value(body))
            subcommands.adopt_flag(svc, actor_of(body), rollout_id, percent, reply)

    def older(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        reply = replier_for(body, respond, client)
        with answering(reply, "timeline"):
            rollout_id, before, number = timeline_cursor(action_value(body))
            reply(subcommands.timeline(svc, actor_of(body), rollout_id, before, number))

    def request_access(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        reply = replier_for(body, respond, client)
        with answering(reply):
            rollout = access_requests.request_access(svc, actor_of(body), rollout_id_of(action_value(body)))
            reply(confirm.access_requested(rollout.owner_id, rollout.feature))

    def add_approver(body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        with answering(replier_for(body, respond, client)):
            rollout_id, user_id = approver_value(action_value(body))
            actor = actor_of(body)
            rollout = controls.set_approver(svc, actor, rollout_id, user_id, add=True)
            status_board.refresh(svc, rollout_id)
            granted = access_granted(rollout.feature, actor.user_id, user_id)
            # The request becomes its answer: one message for the one event.
            respond(replace_original=True, **granted.as_kwargs())

    def open_from_home(body: dict[str, Any]) -> None:
        actor = actor_of(body)
        try:
            home.open_rollout(svc, actor, rollout_id_of(action_value(body)), body.get("trigger_id", ""))
        except (UsageError, SlackApiError) as exc:
            log.warning("could not open a rollout from the Home tab: %s", exc)

    app.action(Action.CHECKLIST_TOGGLE)(ack=ack_now, lazy=[toggle])
    app.action(Action.OPEN_ROLLOUT)(ack=ack_now, lazy=[open_from_home])
    app.action(PICK)(ack=ack_now, lazy=[pick])
    for action_id in CONTROL_BUTTONS:
        app.action(action_id)(ack=ack_now, lazy=[control])
    app.action(Action.ADVANCE_ANYWAY)(ack=ack_now, lazy=[advance_anyway])
    app.action(Action.ROLLBACK)(ack=ack_now, lazy=[rollback])
    app.action(Action.FLAG_APPLY_PLAN)(ack=ack_now, lazy=[apply_flag_plan])
    app.action(Action.FLAG_ADOPT)(ack=ack_now, lazy=[adopt_flag])
    app.action(Action.TIMELINE_OLDER)(ack=ack_now, lazy=[older])
    app.action(Action.REQUEST_ACCESS)(ack=ack_now, lazy=[request_access])
    app.action(Action.APPROVER_ADD)(ack=ack_now, lazy=[add_approver])
    # A link button: Slack opens the URL and still sends the click, which only needs an ack.
    app.action(DATADOG)(ack_now)
