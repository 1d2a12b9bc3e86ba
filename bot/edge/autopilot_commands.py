"""What the auto-advance, hours, freeze and checkpoints subcommands do at the edge: call the
use case, refresh the status message, answer in words (`bot.edge.dispatch` routes to them)."""

from __future__ import annotations

from bot.delivery import status_board
from bot.domain import windows
from bot.edge.answers import Replier
from bot.edge.parsing_auto import AdvanceHours, Auto, Checkpoints, Freezes
from bot.services import Actor, Services
from bot.usecases import autopilot, lookup
from messages.blocks import text_message
from messages.text import escape


def _note(svc: Services, rollout_id: int) -> str:
    error = status_board.refresh(svc, rollout_id)
    return f"\n_The status message could not be updated ({error})._" if error else ""


def auto(svc: Services, actor: Actor, cmd: Auto, reply: Replier) -> None:
    auto_for(svc, actor, lookup.resolve(svc, actor, cmd.feature, "auto"), cmd.on, reply)


def auto_for(svc: Services, actor: Actor, rollout_id: int, on: bool, reply: Replier) -> None:
    """`/rollout auto on|off`, or the status message's button."""
    rollout = autopilot.set_auto(svc, actor, rollout_id, on)
    if on:
        with svc.db.reading() as session:
            state = autopilot.describe(session, autopilot.reload(session, rollout_id), svc.clock())
        words = f"auto-advance is on: it moves by itself when the soak is met and the gate is fully green ({state})"
    else:
        words = "auto-advance is off: people advance it"
    reply(text_message(f":robot_face: *{escape(rollout.feature)}*: {escape(words)}.{_note(svc, rollout_id)}"))


def hours(svc: Services, actor: Actor, cmd: AdvanceHours, reply: Replier) -> None:
    said = f"{cmd.hours.describe()}, not on public holidays" if cmd.hours else "any time"
    if cmd.team:
        if cmd.change:
            autopilot.set_team_hours(svc, actor, cmd.hours)
            reply(text_message(f":clock9: Advances in this workspace may happen: {escape(said)}."))
            return
        with svc.db.reading() as session:
            rules = autopilot.team_rules(session, actor.team_id)
            raw = rules.advance_hours if rules else None
        shown = windows.Hours.from_dict(raw).describe() if raw else "any time"
        reply(text_message(f":clock9: Advances in this workspace may happen: {escape(shown)}."))
        return
    rollout_id = lookup.resolve(svc, actor, cmd.feature, "hours")
    if cmd.change:
        rollout = autopilot.set_rollout_hours(svc, actor, rollout_id, cmd.hours)
        where = f"{said} {rollout.timezone}" if cmd.hours else "its workspace's hours"
        reply(
            text_message(
                f":clock9: *{escape(rollout.feature)}* advances: {escape(where)}.{_note(svc, rollout_id)}"
            )
        )
        return
    with svc.db.reading() as session:
        rollout = autopilot.reload(session, rollout_id)
        cal = autopilot.calendar_for(session, rollout, svc.clock())
    shown = f"{cal.hours.describe()} {cal.tz}, not on public holidays" if cal.hours else "any time"
    reply(text_message(f":clock9: *{escape(rollout.feature)}* advances: {escape(shown)}."))


def freeze(svc: Services, actor: Actor, cmd: Freezes, reply: Replier) -> None:
    if cmd.action == "add" and cmd.freeze is not None:
        f = cmd.freeze
        rollout_id = lookup.resolve(svc, actor, cmd.feature, "freeze") if cmd.feature else None
        freeze_id = autopilot.add_freeze(svc, actor, f, rollout_id)
        whom = f" of *{escape(cmd.feature)}*" if cmd.feature else ""
        reply(
            text_message(
                f":snowflake: Freeze {freeze_id} “{escape(f.name)}”: no advance{whom} from {f.first} to "
                f"{f.last} (whole days, in each rollout's time zone)."
            )
        )
        return
    if cmd.action == "remove" and cmd.freeze_id is not None:
        autopilot.remove_freeze(svc, actor, cmd.freeze_id)
        reply(text_message(f":wastebasket: Freeze {cmd.freeze_id} removed."))
        return
    rows = autopilot.list_freezes(svc, actor)
    lines = [
        f"• {i}: “{escape(f.name)}” {f.first} → {f.last}"
        + (f" (only *{escape(feature)}*)" if feature else "")
        for i, f, feature in rows
    ] or ["none"]
    reply(text_message("*Freezes*\n" + "\n".join(lines)))


def checkpoints(svc: Services, actor: Actor, cmd: Checkpoints, reply: Replier) -> None:
    autopilot.set_phase_checkpoints(svc, actor, cmd.phases)
    words = (
        "auto-advance stops for a person at every phase boundary"
        if cmd.phases
        else "auto-advance stops only at steps the plan marks `manual`"
    )
    reply(text_message(f":raised_hand: In this workspace {words}."))
