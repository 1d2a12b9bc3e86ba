"""Plans as documents in Slack: `/rollout import` (a form to paste Markdown) and
`/rollout export` (the filled document as a file in the rollout's thread)."""

from __future__ import annotations

import re

from bot.domain.plans.markdown import DocumentTooLarge, parse_plans
from bot.services import Actor, Services
from bot.usecases import exporting, plan_store
from messages.blocks import Message, text_message
from messages.text import escape
from storage import queries

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_PROBLEMS_SHOWN = 15


def check_name(raw: str) -> str | None:
    """None if the name is fine, else what is wrong with it (shown on the form)."""
    if not NAME_RE.match(raw.strip().lower()):
        return "Lower-case letters, digits, - and _ (up to 64), like backend-2"
    return None


def import_text(svc: Services, actor: Actor, name: str, text: str) -> Message:
    try:
        results = parse_plans(text, name=name.strip().lower())
    except DocumentTooLarge as error:  # the form's 3,000 characters are far below the limit
        return text_message(f":no_entry_sign: {escape(error)}")
    lines = []
    for result in results:
        try:
            replaced = plan_store.save(svc, actor.team_id, result.plan, source=text, user_id=actor.user_id)
        except ValueError as error:
            return text_message(f":no_entry_sign: {escape(error)}")
        plan = result.plan
        steps = " → ".join(s.title for p in plan.phases for s in p.steps)
        verb = "Replaced" if replaced else "Imported"
        lines.append(
            f":page_facing_up: {verb} template `{escape(plan.name)}`: {len(plan.phases)} phases, {escape(steps)}."
        )
        for problem in result.problems[:MAX_PROBLEMS_SHOWN]:
            lines.append(f"• line {problem.line}: {escape(problem.reason)}")
        if len(result.problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"• … and {len(result.problems) - MAX_PROBLEMS_SHOWN} more")
    lines.append("Start a rollout with it: `/rollout start <feature> <template>`.")
    return text_message("\n".join(lines))


def export_to_thread(svc: Services, actor: Actor, rollout_id: int) -> Message:
    rollout, document = exporting.export(svc, rollout_id)
    if rollout.team_id != actor.team_id:
        return text_message(":no_entry_sign: That rollout does not exist any more.")
    with svc.db.reading() as session:
        status = queries.status_message(session=session, rollout_id=rollout_id)
    filename = re.sub(r"[^A-Za-z0-9._-]+", "-", rollout.feature).strip("-") or "rollout"
    svc.client.files_upload_v2(
        channel=rollout.channel_id,
        thread_ts=status.ts if status is not None else None,
        content=document,
        filename=f"{filename}-rollout-plan.md",
        title=f"Rollout plan: {rollout.feature}",
        initial_comment=f"The plan for {rollout.feature} with its results so far.",
    )
    return text_message(f":page_facing_up: Exported *{escape(rollout.feature)}* into its thread.")
