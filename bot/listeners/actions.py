"""Buttons and checkboxes on the bot's messages."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, Respond

from bot import flows, handlers, status_board
from bot.answers import answering
from bot.flows import Actor, ItemChange
from bot.ids import Action, Block
from bot.listeners.commands import ephemeral
from bot.parsing import UsageError
from bot.services import Services

CHECKLIST_BLOCK = re.compile(rf"^{Block.CHECKLIST}:(\d+):")
PICK = re.compile(rf"^{Action.PICK_ROLLOUT}:\d+$")


def actor_of(body: dict[str, Any]) -> Actor:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
    return Actor(team_id=body["team"]["id"], user_id=body["user"]["id"], channel_id=channel)


def checklist_changes(body: dict[str, Any]) -> tuple[int, list[ItemChange]]:
    """What the click changed: the clicker's selection against what their message showed.

    Slack sends the element's whole selection, which for two people ticking different boxes
    at once would each undo the other; the difference from the rendered `initial_options`
    names just the box this person clicked."""
    action = body["actions"][0]
    match = CHECKLIST_BLOCK.match(str(action.get("block_id", "")))
    if not match:
        raise UsageError("that checklist message is not one of mine")
    shown: set[str] = set()
    for block in (body.get("message") or {}).get("blocks", []):
        if block.get("block_id") == action["block_id"]:
            for element in block.get("elements", []):
                shown |= {o["value"] for o in element.get("initial_options") or []}
    selected = {o["value"] for o in action.get("selected_options") or []}
    changes = [ItemChange(int(v), True) for v in sorted(selected - shown) if v.isdigit()]
    changes += [ItemChange(int(v), False) for v in sorted(shown - selected) if v.isdigit()]
    return int(match.group(1)), changes


def register(app: App, svc: Services) -> None:
    def ack_now(ack: Ack) -> None:
        ack()

    def toggle(body: dict[str, Any], respond: Respond) -> None:
        with answering(ephemeral(respond)):
            rollout_id, changes = checklist_changes(body)
            flows.set_items(svc, actor_of(body), rollout_id, changes)
            # Even with no change (a crossed double click) the clicker's view is put right.
            status_board.refresh(svc, rollout_id)

    def pick(body: dict[str, Any], respond: Respond) -> None:
        reply = ephemeral(respond)
        with answering(reply):
            subcommand, _, rollout_id = str(body["actions"][0].get("value", "")).partition(":")
            answer = handlers.run_for(svc, actor_of(body), subcommand, int(rollout_id))
            if answer is not None:
                respond(replace_original=True, **answer.as_kwargs())

    app.action(Action.CHECKLIST_TOGGLE)(ack=ack_now, lazy=[toggle])
    app.action(PICK)(ack=ack_now, lazy=[pick])
