"""Plans as documents in Slack: `/rollout import` (a form to paste Markdown) and
`/rollout export` (the filled document as a file in the rollout's thread)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.domain.plans.catalog import plan_problems
from bot.domain.plans.markdown import DocumentTooLarge, Problem, parse_plans
from bot.services import Actor, Services
from bot.usecases import exporting, lookup, plan_store
from messages import confirmations as confirm
from messages.blocks import Message, text_message
from messages.text import escape
from storage import queries

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_name(raw: str) -> str | None:
    """None if the name is fine, else what is wrong with it (shown on the form)."""
    if not NAME_RE.match(raw.strip().lower()):
        return "Lower-case letters, digits, - and _ (up to 64), like backend-2"
    return None


def _line_problems(problems: Sequence[Problem]) -> list[tuple[int, str]]:
    return [(problem.line, problem.reason) for problem in problems]


def import_text(svc: Services, actor: Actor, name: str, text: str) -> Message:
    try:
        results = parse_plans(text, name=name.strip().lower())
    except DocumentTooLarge as error:  # the form's 3,000 characters are far below the limit
        return text_message(f":no_entry_sign: {escape(error)}")
    # Refused before anything is stored: one unusable plan in the document stores none of it.
    for result in results:
        if unusable := plan_problems(result.plan):
            return confirm.import_refused(result.plan.name, unusable, _line_problems(result.problems))
    stored = []
    for result in results:
        replaced = plan_store.save(svc, actor, result.plan, source=text)
        plan = result.plan
        steps = " → ".join(s.title for p in plan.phases for s in p.steps)
        stored.append((replaced, plan.name, len(plan.phases), steps, _line_problems(result.problems)))
    return confirm.imported(stored)


def export_to_thread(svc: Services, actor: Actor, rollout_id: int) -> Message:
    rollout = lookup.load_for(svc, actor, rollout_id)
    charts, missing = exporting.export_charts(svc, rollout_id)
    rollout, document = exporting.export(svc, rollout_id, charts)
    with svc.db.reading() as session:
        status = queries.status_message(session=session, rollout_id=rollout_id)
    filename = re.sub(r"[^A-Za-z0-9._-]+", "-", rollout.feature).strip("-") or "rollout"
    # One message with every file; the document last, the charts it shows before it.
    files = [{"content": c.png, "filename": c.filename, "title": c.title} for c in charts]
    files.append(
        {
            "content": document,
            "filename": f"{filename}-rollout-plan.md",
            "title": f"Rollout plan: {rollout.feature}",
        }
    )
    svc.client.files_upload_v2(
        channel=rollout.channel_id,
        thread_ts=status.ts if status is not None else None,
        file_uploads=files,
        initial_comment=f"The plan for {escape(rollout.feature)} with its results so far.",
    )
    return confirm.exported(rollout.feature, len(charts), missing or "")
