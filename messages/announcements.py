"""Announcement texts: the detailed line for the status thread and the short one for
stakeholder channels, both from Jinja templates a team may override."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from messages.blocks import Message, text_message
from messages.digest import about
from messages.render import render

if TYPE_CHECKING:
    from messages.views import RolloutView


def milestone(kind: str, rollout: RolloutView, **extra: Any) -> tuple[Message, Message]:
    """(thread message, stakeholder line) for one milestone; `extra` (actor, reason, ...) is
    what the milestone adds to what every message says about the rollout."""
    context = {**about(rollout), "plan": rollout.plan_title, "actor": None, "reason": "", **extra}
    thread = render("milestone", kind=kind, **context)
    line = render("milestone_line", kind=kind, **context)
    return text_message(thread), text_message(line)
