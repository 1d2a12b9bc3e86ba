"""What the auto-advance, hours, freeze and checkpoints subcommands do at the edge: call the
use case, refresh the status message, answer in words (`bot.edge.dispatch` routes to them)."""

from __future__ import annotations

from bot.delivery import status_board
from bot.domain import windows
from bot.edge.answers import Replier
from bot.edge.parsing_auto import AdvanceHours, Auto, Checkpoints, Freezes
from bot.services import Actor, Services
from bot.usecases import autopilot, lookup
from messages import confirmations as confirm


def _note(svc: Services, rollout_id: int) -> str:
    error = status_board.refresh(svc, rollout_id)
    return f"\n_The status message could not be updated ({error})._" if error else ""


def auto(svc: Services, actor: Actor, cmd: Auto, reply: Replier) -> None:
    auto_for(svc, actor, lookup.resolve(svc, actor, cmd.feature, "auto"), cmd.on, reply)


def auto_for(svc: Services, actor: Actor, rollout_id: int, on: bool, reply: Replier) -> None:
    """`/rollout auto on|off`, or the status message's button."""
    rollout = autopilot.set_auto(svc, actor, rollout_id, on)
    state = ""
    if on:
        with svc.db.reading() as session:
            state = autopilot.describe(session, autopilot.reload(session, rollout_id), svc.clock())
    reply(confirm.auto_set(rollout.feature, on=on, state=state, note=_note(svc, rollout_id)))


def hours(svc: Services, actor: Actor, cmd: AdvanceHours, reply: Replier) -> None:
    said = f"{cmd.hours.describe()}, not on public holidays" if cmd.hours else "any time"
    if cmd.team:
        if cmd.change:
            autopilot.set_team_hours(svc, actor, cmd.hours)
            reply(confirm.team_hours(said))
            return
        with svc.db.reading() as session:
            rules = autopilot.team_rules(session, actor.team_id)
            raw = rules.advance_hours if rules else None
        shown = windows.Hours.from_dict(raw).describe() if raw else "any time"
        reply(confirm.team_hours(shown))
        return
    rollout_id = lookup.resolve(svc, actor, cmd.feature, "hours")
    if cmd.change:
        rollout = autopilot.set_rollout_hours(svc, actor, rollout_id, cmd.hours)
        described = cmd.hours.describe() if cmd.hours else None
        answer = confirm.rollout_hours(
            rollout.feature,
            described,
            tz=rollout.timezone,
            now=svc.clock(),
            inherited=cmd.hours is None,
            note=_note(svc, rollout_id),
        )
        reply(answer)
        return
    with svc.db.reading() as session:
        rollout = autopilot.reload(session, rollout_id)
        cal = autopilot.calendar_for(session, rollout, svc.clock())
    described = cal.hours.describe() if cal.hours else None
    reply(confirm.rollout_hours(rollout.feature, described, tz=cal.tz, now=svc.clock()))


def freeze(svc: Services, actor: Actor, cmd: Freezes, reply: Replier) -> None:
    if cmd.action == "add" and cmd.freeze is not None:
        f = cmd.freeze
        rollout_id = lookup.resolve(svc, actor, cmd.feature, "freeze") if cmd.feature else None
        freeze_id = autopilot.add_freeze(svc, actor, f, rollout_id)
        reply(confirm.freeze_added(freeze_id, f.name, f.first, f.last, cmd.feature))
        return
    if cmd.action == "remove" and cmd.freeze_id is not None:
        autopilot.remove_freeze(svc, actor, cmd.freeze_id)
        reply(confirm.freeze_removed(cmd.freeze_id))
        return
    rows = autopilot.list_freezes(svc, actor)
    reply(confirm.freezes([(i, f.name, f.first, f.last, feature) for i, f, feature in rows]))


def checkpoints(svc: Services, actor: Actor, cmd: Checkpoints, reply: Replier) -> None:
    autopilot.set_phase_checkpoints(svc, actor, cmd.phases)
    reply(confirm.checkpoints_set(cmd.phases))
