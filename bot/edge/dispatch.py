"""Where each `/rollout` subcommand goes: two tables, read top to bottom.

`COMMANDS` maps a typed command (what `bot.edge.parsing` makes of the text) to its handler;
`ON_ROLLOUT` maps a subcommand about one known rollout (typed, picked from the "which one?"
buttons, or clicked on the status message) to its handler. Both are shared by the slash
command, the buttons and the terminal shell. A handler answers through a Replier: `progress`
for the "Checking…" line, `__call__` for the answer (which replaces the progress line where
Slack allows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.edge import autopilot_commands as auto
from bot.edge import subcommands as sub
from bot.edge.answers import Replier, help_message
from bot.edge.parsing import (
    Access,
    Approvers,
    Command,
    Digest,
    Help,
    Import,
    ListRollouts,
    OnRollout,
    Status,
    Templates,
    WithReason,
)
from bot.edge.parsing_auto import AdvanceHours, Auto, Checkpoints, Freezes
from bot.errors import UsageError
from bot.services import Actor, Services
from bot.usecases import lookup
from bot.usecases.advance import Intent
from bot.usecases.start import Start
from messages.blocks import Message, text_message
from messages.text import escape


@dataclass(frozen=True)
class Request:
    """Who asks, and how to answer them."""

    svc: Services
    actor: Actor
    reply: Replier
    trigger_id: str | None = None
    intent: Intent | None = None  # for an advance: the step it is meant for


def quick_reply(cmd: Command) -> Message | None:
    """What the ack itself can say, touching neither the database nor Slack."""
    if isinstance(cmd, Help):
        return help_message(cmd.topic)
    if isinstance(cmd, Start) and cmd.feature is not None:
        return text_message(f":hourglass_flowing_sand: Starting *{escape(cmd.feature)}*…")
    return None


def _start(req: Request, cmd: Start) -> None:
    if cmd.feature is None:
        sub.open_start_form(req.svc, req.actor, req.trigger_id)
    else:
        sub.start(req.svc, req.actor, cmd)


def _on_rollout(req: Request, cmd: OnRollout) -> None:
    rollout_id = lookup.resolve(req.svc, req.actor, cmd.feature, cmd.subcommand)
    run_for(
        req.svc,
        req.actor,
        cmd.subcommand,
        rollout_id,
        req.reply,
        trigger_id=req.trigger_id,
        intent=req.intent,
    )


def _with_reason(req: Request, cmd: WithReason) -> None:
    rollout_id, reason = lookup.resolve_words(req.svc, req.actor, list(cmd.words), cmd.subcommand)
    run_for(req.svc, req.actor, cmd.subcommand, rollout_id, req.reply, reason=reason)


COMMANDS: dict[type[Any], Callable[[Request, Any], None]] = {
    Help: lambda req, cmd: None,  # answered by the ack
    Start: _start,
    Status: lambda req, cmd: req.reply(sub.status_of(req.svc, req.actor, cmd.feature)),
    ListRollouts: lambda req, cmd: req.reply(sub.list_rollouts(req.svc, req.actor)),
    OnRollout: _on_rollout,
    WithReason: _with_reason,
    Approvers: lambda req, cmd: sub.approvers(req.svc, req.actor, cmd, req.reply),
    Import: lambda req, cmd: sub.open_import_form(req.svc, req.actor, req.trigger_id),
    Digest: lambda req, cmd: sub.digest(req.svc, req.actor, cmd, req.reply),
    Templates: lambda req, cmd: sub.templates(req.svc, req.actor, cmd, req.reply),
    Access: lambda req, cmd: sub.who_may(req.svc, req.actor, cmd, req.reply),
    Auto: lambda req, cmd: auto.auto(req.svc, req.actor, cmd, req.reply),
    AdvanceHours: lambda req, cmd: auto.hours(req.svc, req.actor, cmd, req.reply),
    Freezes: lambda req, cmd: auto.freeze(req.svc, req.actor, cmd, req.reply),
    Checkpoints: lambda req, cmd: auto.checkpoints(req.svc, req.actor, cmd, req.reply),
}


def run(
    svc: Services,
    actor: Actor,
    cmd: Command,
    reply: Replier,
    *,
    trigger_id: str | None = None,
    sent_at: datetime | None = None,
) -> None:
    """A typed command; `sent_at`: when Slack sent it (a typed advance means the step current
    then)."""
    handler = COMMANDS.get(type(cmd))
    if handler is None:
        raise AssertionError(f"no handler for {cmd!r}")
    handler(Request(svc, actor, reply, trigger_id, Intent(sent_at=sent_at)), cmd)


# A subcommand about one rollout: (request, rollout id, reason) -> None.
OnRolloutHandler = Callable[[Request, int, str], None]

ON_ROLLOUT: dict[str, OnRolloutHandler] = {
    "status": lambda req, rid, reason: req.reply(sub.status(req.svc, req.actor, rid)),
    "advance": lambda req, rid, reason: sub.check(
        req.svc, req.actor, rid, req.reply, move=True, intent=req.intent
    ),
    "snapshot": lambda req, rid, reason: sub.check(req.svc, req.actor, rid, req.reply, move=False),
    "pause": lambda req, rid, reason: sub.pause(req.svc, req.actor, rid, reason, req.reply),
    "resume": lambda req, rid, reason: sub.resume(req.svc, req.actor, rid, req.reply),
    "rollback": lambda req, rid, reason: sub.roll_back(req.svc, req.actor, rid, reason, req.reply),
    "complete": lambda req, rid, reason: sub.complete(req.svc, req.actor, rid, req.reply),
    "update": lambda req, rid, reason: sub.send_update(req.svc, req.actor, rid, reason, req.reply),
    "baseline": lambda req, rid, reason: sub.baseline(req.svc, req.actor, rid, req.reply),
    "export": lambda req, rid, reason: sub.export(req.svc, req.actor, rid, req.reply),
    "timeline": lambda req, rid, reason: req.reply(sub.timeline(req.svc, req.actor, rid)),
    "metrics": lambda req, rid, reason: sub.open_metrics_form(req.svc, req.actor, rid, req.trigger_id),
    "auto-on": lambda req, rid, reason: auto.auto_for(req.svc, req.actor, rid, True, req.reply),
    "auto-off": lambda req, rid, reason: auto.auto_for(req.svc, req.actor, rid, False, req.reply),
}


def run_for(
    svc: Services,
    actor: Actor,
    subcommand: str,
    rollout_id: int,
    reply: Replier,
    *,
    reason: str = "",
    trigger_id: str | None = None,
    intent: Intent | None = None,
) -> None:
    """A subcommand for a known rollout."""
    handler = ON_ROLLOUT.get(subcommand)
    if handler is None:  # a button carrying a subcommand this version does not know
        raise UsageError("that button is not one of mine any more")
    handler(Request(svc, actor, reply, trigger_id, intent), rollout_id, reason)
