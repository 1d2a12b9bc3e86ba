"""What each subcommand does at the edge: call its use case, refresh the status message, and
answer in words. `bot.edge.dispatch` says which subcommand runs which of these."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from bot.delivery import charts, status_board, status_link
from bot.domain import rights, rollouts
from bot.domain.plans.catalog import builtin_templates
from bot.domain.schedule import describe_digest
from bot.edge import forms, metric_forms, plan_slack
from bot.edge.answers import Replier
from bot.edge.parsing import Access, Approvers, Digest, Templates
from bot.errors import NotInChannel
from bot.services import Actor, Services
from bot.usecases import (
    access,
    advance,
    controls,
    flagging,
    lookup,
    measure,
    plan_store,
    schedule,
    updates,
)
from bot.usecases import start as starting
from bot.usecases import timeline as audit
from bot.usecases.start import Start
from messages import confirmations as confirm
from messages import render
from messages.blocks import Message, status_message, text_message
from messages.gate import checking, gate_report
from messages.modals import import_modal
from messages.text import escape
from messages.timeline import timeline_message
from storage.models import Rollout

# The forms a subcommand opens, named here so the dispatch table reads in one place.
open_start_form = forms.open_start_form
open_metrics_form = metric_forms.open_editor


def refreshed(svc: Services, rollout_id: int) -> str:
    """Edits the status message; what to add to the reply if Slack refused the edit."""
    error = status_board.refresh(svc, rollout_id)
    if error is None:
        return ""
    return f"\n_The status message could not be updated ({error}); it catches up at the next change._"


def _done(svc: Services, reply: Replier, rollout: Rollout, verb: str, reason: str = "") -> None:
    reply(confirm.done(rollout.feature, verb, reason, refreshed(svc, rollout.id)))


def pause(svc: Services, actor: Actor, rollout_id: int, reason: str, reply: Replier) -> None:
    _done(svc, reply, controls.pause(svc, actor, rollout_id, reason), "paused", reason)


def resume(svc: Services, actor: Actor, rollout_id: int, reply: Replier) -> None:
    _done(svc, reply, controls.resume(svc, actor, rollout_id), "resumed")


def roll_back(svc: Services, actor: Actor, rollout_id: int, reason: str, reply: Replier) -> None:
    rollout = controls.roll_back(svc, actor, rollout_id, reason)
    if rollout.flag_pending is None:
        # What happened, in full: from where, the flag, who was told.
        reply(
            confirm.rolled_back(
                rollout.feature,
                rollouts.display_title(rollout.current_step),
                flag_key=rollout.flag_key,
                told_stakeholders=bool(rollout.stakeholder_channels),
                reason=reason,
                note=refreshed(svc, rollout.id),
            )
        )
        return
    # Rolled back, but the flag service did not take the write: say so as loudly as we can.
    note = refreshed(svc, rollout.id)
    provider = svc.flags.name if svc.flags is not None else "the flag service"
    link = svc.flags.link(rollout.flag_key or "") if svc.flags is not None else None
    where = f"<{link}|{escape(provider)}>" if link else escape(provider)
    reply(
        confirm.rolled_back_flag_stuck(
            rollout.feature, rollout.flag_key or "", where, rollout.flag_problem or "", note
        )
    )


def complete(svc: Services, actor: Actor, rollout_id: int, reply: Replier) -> None:
    _done(svc, reply, controls.complete(svc, actor, rollout_id), "completed")


def send_update(svc: Services, actor: Actor, rollout_id: int, text: str, reply: Replier) -> None:
    rollout = updates.send_update(svc, actor, rollout_id, text)
    reply(confirm.update_sent(rollout.feature))


def baseline(svc: Services, actor: Actor, rollout_id: int, reply: Replier) -> None:
    rollout = lookup.load_for(svc, actor, rollout_id)
    access.check_allowed(svc, actor, rollout, "re-measure the baseline of")
    reply.progress(confirm.measuring_baseline(rollout.feature))
    measure.capture_baseline(svc, rollout_id)
    reply(confirm.baseline_stored(rollout.feature))


def export(svc: Services, actor: Actor, rollout_id: int, reply: Replier) -> None:
    reply(plan_slack.export_to_thread(svc, actor, rollout_id))


def timeline(
    svc: Services, actor: Actor, rollout_id: int, before: int | None = None, number: int = 1
) -> Message:
    """A page of the timeline; "Older…" asks for the next one (`before`: the last event shown)."""
    message, _shown = timeline_message(audit.page(svc, actor, rollout_id, before=before, number=number))
    return message


def digest(svc: Services, actor: Actor, cmd: Digest, reply: Replier) -> None:
    rollout_id = lookup.resolve(svc, actor, cmd.feature, "digest")
    rollout = schedule.set_digest(svc, actor, rollout_id, cmd.cadence, cmd.at)
    reply(confirm.digest_set(rollout.feature, describe_digest(rollout)))


def templates(svc: Services, actor: Actor, cmd: Templates, reply: Replier) -> None:
    if cmd.remove is not None:
        plan_store.remove(svc, actor, cmd.remove)
        reply(confirm.template_removed(cmd.remove))
        return
    rows: list[tuple[str, str, str | None, bool]] = [
        (name, plan.title, None, True) for name, plan in builtin_templates().items()
    ]
    rows += [(t.name, t.title, t.imported_by or "", t.usable) for t in plan_store.listing(svc, actor.team_id)]
    reply(confirm.templates_list(rows))


def who_may(svc: Services, actor: Actor, cmd: Access, reply: Replier) -> None:
    rollout_id = lookup.resolve(svc, actor, cmd.feature, "access")
    if cmd.act is None or cmd.who is None:
        rollout = lookup.load(svc, actor.team_id, rollout_id)
        reply(confirm.access_rules(rollout.feature, rights.describe(rollout), changed=False))
        return
    rollout = controls.set_access(svc, actor, rollout_id, rights.Act(cmd.act), cmd.who)
    reply(confirm.access_rules(rollout.feature, rights.describe(rollout), changed=True))


def open_import_form(svc: Services, actor: Actor, trigger_id: str | None) -> None:
    context = forms.FormContext(channel_id=actor.channel_id)
    forms.open_form(svc, trigger_id, import_modal(private_metadata=context.dumps()))


def check(
    svc: Services,
    actor: Actor,
    rollout_id: int,
    reply: Replier,
    *,
    move: bool,
    intent: advance.Intent | None = None,
) -> None:
    """Advance (`move`) or only look: say at once what is being checked, then the verdict.
    `intent`: the step an advance is meant for (see bot.usecases.advance.Intent)."""
    # An advance is refused before saying "Checking…" about something that will not happen.
    if move:
        rollout = advance.may_advance(svc, actor, rollout_id, intent)
    else:
        rollout = lookup.load_for(svc, actor, rollout_id)
    # Each metric once, as the report shows it: a trigger named like a success metric is one.
    names = {str(m.get("name", "")).casefold() for m in (*rollout.metrics, *rollout.triggers)}
    reply.progress(checking(rollout.feature, len(names)))
    outcome = advance.advance(svc, actor, rollout) if move else advance.snapshot(svc, actor, rollout)
    note = refreshed(svc, rollout_id) if outcome.moved is not None or outcome.rolled_back else ""
    if outcome.flag:
        note = f"{escape(outcome.flag)}{note}"
    # Drawn and posted before the answer, so the answer can say where the chart is (or why
    # there is none); this runs in the work process, long after the ack.
    reply(gate_report(outcome, note=note, chart=charts.after_check(svc, rollout_id)))


def start(svc: Services, actor: Actor, cmd: Start) -> None:
    rollout_id, shown = starting.opened(svc, actor, cmd)
    try:
        status_board.post(svc, rollout_id, shown)
    except (NotInChannel, SlackApiError):
        starting.discard(svc, rollout_id)
        raise
    measure.capture_baseline(svc, rollout_id)


def status(svc: Services, actor: Actor, rollout_id: int) -> Message:
    rollout, link = status_link.view_and_link(svc, actor.team_id, rollout_id)
    return status_message(rollout, now=svc.clock(), interactive=False, link=link)


def status_of(svc: Services, actor: Actor, feature: str | None) -> Message:
    """`/rollout status [feature]`: finding the rollout, its view and its message's row take one
    read transaction, on a bare connection; the link is asked of Slack only the first time
    (`status_link`)."""
    with svc.db.connected() as conn:
        rollout_id = lookup.resolve_in(conn, actor, feature, "status")
        rollout, ref = status_link.copy_of(conn, actor.team_id, rollout_id)
    link = status_link.message_link(svc, rollout_id, ref)
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
        for r in lookup.open_rollouts(svc, actor.team_id)
    ]
    return text_message(render("list", rollouts=rows))


def approvers(svc: Services, actor: Actor, cmd: Approvers, reply: Replier) -> None:
    rollout_id = lookup.resolve(svc, actor, cmd.feature, "approvers")
    if cmd.change is None or cmd.user_id is None:
        rollout = lookup.load(svc, actor.team_id, rollout_id)
        reply(
            confirm.approvers_list(rollout.feature, rollout.owner_id, [a.user_id for a in rollout.approvers])
        )
        return
    rollout = controls.set_approver(svc, actor, rollout_id, cmd.user_id, add=cmd.change == "add")
    reply(confirm.approver_changed(rollout.feature, cmd.user_id, added=cmd.change == "add"))


def apply_flag_plan(svc: Services, actor: Actor, rollout_id: int, reply: Replier) -> None:
    written = flagging.apply_plan(svc, actor, rollout_id)
    note = refreshed(svc, rollout_id)
    reply(confirm.flag_applied(written.words(), note))


def adopt_flag(svc: Services, actor: Actor, rollout_id: int, percent: float, reply: Replier) -> None:
    rollout = flagging.adopt(svc, actor, rollout_id, percent)
    note = refreshed(svc, rollout_id)
    reply(confirm.flag_kept(rollout.feature, rollout.flag_key or "", percent, note))


def override(svc: Services, actor: Actor, token: str, reason: str, reply: Replier) -> None:
    moved = advance.override(svc, actor, token, reason)
    rollout_id, _ = advance.Where.parse(token)
    note = refreshed(svc, rollout_id)
    reply(confirm.advanced_anyway(moved.from_title, moved.to_title, reason, note))
