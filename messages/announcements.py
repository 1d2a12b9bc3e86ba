"""Announcement texts: the detailed message for the status thread and the one line for
stakeholder channels, both from Jinja templates a team may override, and the push text of each.

Rules for the stakeholder line (the only thing most stakeholders read): it stands alone. It
says what happened, who did it ("Rollout Bot" for the bot itself), why (the reason typed, or
the trigger and its numbers), what comes next, and links to the status thread. The link is
STATUS_LINK here and becomes the status message's permalink when the outbox posts it (only
Slack knows the workspace's address).

Push texts (the `text` Slack shows in a notification) are plain: the event first, the feature,
no mrkdwn, no emoji codes, at most PUSH_LIMIT characters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from messages.blocks import Message, text_blocks
from messages.digest import STATUS_LINK, about
from messages.push import PUSH_LIMIT, plain_words
from messages.render import render
from messages.text import truncate

if TYPE_CHECKING:
    from messages.views import RolloutView

__all__ = ["PUSH_LIMIT", "STATUS_LINK", "milestone", "milestone_push", "milestone_thread"]

_PUSH = {
    "started": "Rollout started: {feature}, first step {step}",
    "advanced": "Advanced: {feature} now at {step} of {phase}",
    "overridden": "Advanced past a closed gate: {feature} now at {step} of {phase}",
    "completed": "Rollout complete: {feature} is fully rolled out",
    "paused": "Paused: {feature} at {step}",
    "resumed": "Resumed: {feature} at {step}",
    "rolled_back": "Rolled back: {feature} from {step}",
    "update": "Update on {feature}: {text}",
}


def milestone_push(kind: str, context: dict[str, Any]) -> str:
    """The notification text of a milestone: event first, plain, at most PUSH_LIMIT characters."""
    key = "overridden" if kind == "advanced" and context.get("override") else kind
    values = {k: plain_words(context.get(k) or "") for k in ("feature", "step", "phase", "text")}
    text = _PUSH.get(key, "{feature}: " + kind.replace("_", " ")).format(**values)
    reason = plain_words(context.get("reason") or "")
    if reason and key in ("paused", "rolled_back", "overridden"):
        text += f": {reason}"
    return truncate(text, PUSH_LIMIT)


def _next_step(rollout: RolloutView) -> str:
    """The step after the current one, as a stakeholder reads it ("25% of Gradual Rollout")."""
    phase = rollout.current_phase
    if rollout.step_index + 1 < len(phase.steps):
        return phase.steps[rollout.step_index + 1].title
    if rollout.phase_index + 1 < len(rollout.phases):
        following = rollout.phases[rollout.phase_index + 1]
        return f"{following.steps[0].title} of {following.name}" if following.steps else following.name
    return ""


def milestone(kind: str, rollout: RolloutView, **extra: Any) -> tuple[Message, Message]:
    """(thread message, stakeholder line) for one milestone; `extra` (actor, reason, ...) is
    what the milestone adds to what every message says about the rollout."""
    context = _context(rollout, extra)
    push = milestone_push(kind, context)
    # Each body's own push text is not made: the milestone's is `push` (a start renders this
    # in its transaction, and the two push texts thrown away were a third of it).
    thread = text_blocks(render("milestone", kind=kind, **context))
    line = text_blocks(render("milestone_line", kind=kind, **context))
    return Message(text=push, blocks=thread), Message(text=push, blocks=line)


def milestone_thread(kind: str, rollout: RolloutView, **extra: Any) -> Message:
    """`milestone(...)[0]` alone, for a rollout no stakeholder channel hears of: its line is
    not rendered (a Jinja render and its blocks, half of a start's `milestone`)."""
    context = _context(rollout, extra)
    return Message(
        text=milestone_push(kind, context), blocks=text_blocks(render("milestone", kind=kind, **context))
    )


def _context(rollout: RolloutView, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        **about(rollout),
        "plan": rollout.plan_title,
        "actor": None,
        "reason": "",
        "next": _next_step(rollout) if rollout.is_open else "",
        "link": STATUS_LINK,
        "blockers": [],
        "override": False,
        "phase_done": None,
        **extra,
    }
