"""What each /rollout subcommand does, shared by the slash command, the buttons, and the
terminal shell. A handler answers through a Replier: `progress` for the "Checking…" line,
`__call__` for the answer (which replaces the progress line where Slack allows)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Protocol

from slack_sdk.errors import SlackApiError

from bot.delivery import jobs, status_board
from bot.edge import plan_slack
from bot.edge.answers import help_message
from bot.edge.parsing import (
    Approvers,
    Command,
    Digest,
    Help,
    Import,
    ListRollouts,
    OnRollout,
    Start,
    Status,
    UsageError,
    WithReason,
)
from bot.errors import NotInChannel
from bot.ids import View
from bot.services import Actor, Services
from bot.slackweb.client import error_code
from bot.usecases import advancing, controls, flows, plan_store
from messages import render
from messages.blocks import Message, status_message, text_message
from messages.gate import checking, gate_report
from messages.modals import import_modal, reason_modal, start_modal
from messages.text import escape
from storage.models import Rollout

log = logging.getLogger(__name__)


class Replier(Protocol):
    def __call__(self, message: Message) -> None: ...

    def progress(self, message: Message) -> None: ...


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


def quick_reply(cmd: Command) -> Message | None:
    """What the ack itself can say, touching neither the database nor Slack."""
    if isinstance(cmd, Help):
        return help_message()
    if isinstance(cmd, Start) and cmd.feature is not None:
        return text_message(f":hourglass_flowing_sand: Starting *{escape(cmd.feature)}*…")
    return None


def run(svc: Services, actor: Actor, cmd: Command, reply: Replier, *, trigger_id: str | None = None) -> None:
    if isinstance(cmd, Help):
        return  # answered by the ack
    if isinstance(cmd, Start):
        if cmd.feature is None:
            open_start_form(svc, actor, trigger_id)
        else:
            start(svc, actor, cmd)
    elif isinstance(cmd, Status):
        reply(status(svc, actor, flows.resolve(svc, actor, cmd.feature, "status")))
    elif isinstance(cmd, ListRollouts):
        reply(list_rollouts(svc, actor))
    elif isinstance(cmd, OnRollout):
        run_for(
            svc,
            actor,
            cmd.subcommand,
            flows.resolve(svc, actor, cmd.feature, cmd.subcommand),
            reply,
            trigger_id=trigger_id,
        )
    elif isinstance(cmd, WithReason):
        rollout_id, reason = flows.resolve_words(svc, actor, list(cmd.words), cmd.subcommand)
        run_for(svc, actor, cmd.subcommand, rollout_id, reply, reason=reason)
    elif isinstance(cmd, Approvers):
        approvers(svc, actor, cmd, reply)
    elif isinstance(cmd, Import):
        _open(
            svc, trigger_id, import_modal(private_metadata=FormContext(channel_id=actor.channel_id).dumps())
        )
    elif isinstance(cmd, Digest):
        rollout = jobs.set_digest(
            svc, actor, flows.resolve(svc, actor, cmd.feature, "digest"), cmd.cadence, cmd.at
        )
        reply(
            text_message(
                f":calendar: Digest for *{escape(rollout.feature)}*: {jobs.describe_digest(rollout)}."
            )
        )
    else:
        raise AssertionError(f"no handler for {cmd!r}")


def run_for(
    svc: Services,
    actor: Actor,
    subcommand: str,
    rollout_id: int,
    reply: Replier,
    *,
    reason: str = "",
    trigger_id: str | None = None,
) -> None:
    """A subcommand for a known rollout: typed, picked from the "which one?" buttons, or
    clicked on the status message."""
    if subcommand == "status":
        reply(status(svc, actor, rollout_id))
    elif subcommand in ("advance", "snapshot"):
        check(svc, actor, rollout_id, reply, advance=subcommand == "advance")
    elif subcommand == "pause":
        _done(svc, reply, controls.pause(svc, actor, rollout_id, reason), "paused", reason)
    elif subcommand == "resume":
        _done(svc, reply, controls.resume(svc, actor, rollout_id), "resumed")
    elif subcommand == "rollback":
        _done(svc, reply, controls.roll_back(svc, actor, rollout_id, reason), "rolled back", reason)
    elif subcommand == "update":
        rollout = flows.send_update(svc, actor, rollout_id, reason)
        reply(
            text_message(f":mega: Update on *{escape(rollout.feature)}* sent to its thread and stakeholders.")
        )
    elif subcommand == "complete":
        _done(svc, reply, controls.complete(svc, actor, rollout_id), "completed")
    elif subcommand == "baseline":
        rollout = advancing.load_for(svc, actor, rollout_id)
        advancing.check_allowed(svc, actor, rollout, "re-measure the baseline of")
        reply.progress(
            text_message(f":hourglass_flowing_sand: Measuring the baseline of *{escape(rollout.feature)}*…")
        )
        advancing.capture_baseline(svc, rollout_id)
        reply(text_message(f":straight_ruler: New baseline stored for *{escape(rollout.feature)}*."))
    elif subcommand == "export":
        reply(plan_slack.export_to_thread(svc, actor, rollout_id))
    elif subcommand == "metrics":
        from bot.edge import metric_forms

        metric_forms.open_editor(svc, actor, rollout_id, trigger_id)
    else:  # a button carrying a subcommand this version does not know
        raise UsageError("that button is not one of mine any more")


def refreshed(svc: Services, rollout_id: int) -> str:
    """Edits the status message; what to add to the reply if Slack refused the edit."""
    error = status_board.refresh(svc, rollout_id)
    if error is None:
        return ""
    return f"\n_The status message could not be updated ({error}); it catches up at the next change._"


def _done(svc: Services, reply: Replier, rollout: Rollout, verb: str, reason: str = "") -> None:
    why = f" Reason: {escape(reason)}" if reason else ""
    note = refreshed(svc, rollout.id)
    reply(text_message(f":white_check_mark: *{escape(rollout.feature)}* {verb}.{why}{note}"))


def check(svc: Services, actor: Actor, rollout_id: int, reply: Replier, *, advance: bool) -> None:
    """Advance (or only look): say at once what is being checked, then the verdict."""
    # An advance is refused before saying "Checking…" about something that will not happen.
    if advance:
        rollout = advancing.may_advance(svc, actor, rollout_id)
    else:
        rollout = advancing.load_for(svc, actor, rollout_id)
    reply.progress(checking(rollout.feature, len(rollout.metrics) + len(rollout.triggers)))
    outcome = advancing.advance(svc, actor, rollout) if advance else advancing.snapshot(svc, actor, rollout)
    note = refreshed(svc, rollout_id) if outcome.moved is not None else ""
    reply(gate_report(outcome, note=note))


def start(svc: Services, actor: Actor, cmd: Start) -> None:
    rollout_id = flows.start(svc, actor, cmd)
    try:
        status_board.post(svc, rollout_id)
    except (NotInChannel, SlackApiError):
        flows.discard(svc, rollout_id)
        raise
    advancing.capture_baseline(svc, rollout_id)


def status(svc: Services, actor: Actor, rollout_id: int) -> Message:
    rollout = flows.load(svc, actor.team_id, rollout_id)
    link = status_board.permalink(svc, rollout_id)
    return status_message(rollout, now=svc.clock(), interactive=False, link=link)


def list_rollouts(svc: Services, actor: Actor) -> Message:
    rows = [
        {
            "feature": r.feature,
            "channel_id": r.channel_id,
            "step_title": r.current_step.label or f"{r.current_step.percent:g}%",
            "phase_name": r.current_phase.name,
            "paused": r.status.value == "paused",
            "owner_id": r.owner_id,
        }
        for r in flows.open_rollouts(svc, actor.team_id)
    ]
    return text_message(render("list", rollouts=rows))


def approvers(svc: Services, actor: Actor, cmd: Approvers, reply: Replier) -> None:
    rollout_id = flows.resolve(svc, actor, cmd.feature, "approvers")
    if cmd.change is None or cmd.user_id is None:
        rollout = flows.load(svc, actor.team_id, rollout_id)
        names = ", ".join(f"<@{a.user_id}>" for a in rollout.approvers) or "none yet"
        reply(text_message(f"*{escape(rollout.feature)}*: owner <@{rollout.owner_id}>, approvers {names}."))
        return
    rollout = controls.set_approver(svc, actor, rollout_id, cmd.user_id, add=cmd.change == "add")
    verb = "is now an approver of" if cmd.change == "add" else "is no longer an approver of"
    reply(text_message(f":white_check_mark: <@{cmd.user_id}> {verb} *{escape(rollout.feature)}*."))


def _open(svc: Services, trigger_id: str | None, view: dict[str, object]) -> None:
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
    _open(
        svc,
        trigger_id,
        start_modal(
            templates=[(name, plan.title) for name, plan in plan_store.available(svc, actor.team_id).items()],
            default_template=flows.DEFAULT_TEMPLATE,
            owner_id=actor.user_id,
            private_metadata=FormContext(channel_id=actor.channel_id).dumps(),
        ),
    )


def open_override_form(svc: Services, actor: Actor, token: str, trigger_id: str | None) -> None:
    rollout_id, _where = advancing.Where.parse(token)
    rollout = advancing.load_for(svc, actor, rollout_id)
    advancing.check_allowed(svc, actor, rollout, "override the gate of")
    _open(
        svc,
        trigger_id,
        reason_modal(
            callback_id=View.OVERRIDE,
            title="Advance anyway",
            submit="Advance",
            intro=f"The gate for *{escape(rollout.feature)}* is closed. Advancing anyway is recorded in the timeline and the announcement, with your reason.",
            label="Why advance anyway?",
            private_metadata=FormContext(channel_id=actor.channel_id, token=token).dumps(),
            required=True,
        ),
    )


def open_rollback_form(svc: Services, actor: Actor, rollout_id: int, trigger_id: str | None) -> None:
    rollout = advancing.load_for(svc, actor, rollout_id)
    advancing.check_allowed(svc, actor, rollout, "roll back")
    _open(
        svc,
        trigger_id,
        reason_modal(
            callback_id=View.ROLLBACK,
            title="Roll back",
            submit="Roll back",
            intro=f"Roll back *{escape(rollout.feature)}*? This ends the rollout; the flag should go back to 0%.",
            label="Reason",
            private_metadata=FormContext(channel_id=actor.channel_id, token=str(rollout_id)).dumps(),
            required=False,
        ),
    )


def override(svc: Services, actor: Actor, token: str, reason: str, reply: Replier) -> None:
    moved = advancing.override(svc, actor, token, reason)
    rollout_id, _ = advancing.Where.parse(token)
    note = refreshed(svc, rollout_id)
    reply(
        text_message(
            f":warning: Advanced anyway from {escape(moved.from_title)} to *{escape(moved.to_title)}*. "
            f"Reason: {escape(reason)}{note}"
        )
    )
