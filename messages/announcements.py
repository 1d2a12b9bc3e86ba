"""Announcement texts: the detailed line for the status thread and the short one for
stakeholder channels, both from Jinja templates a team may override."""

from __future__ import annotations

from typing import Any

from messages.blocks import Message, text_message
from messages.render import render


def milestone(kind: str, **context: Any) -> tuple[Message, Message]:
    """(thread message, stakeholder line) for one milestone."""
    thread = render("milestone", kind=kind, **context)
    line = render("milestone_line", kind=kind, **context)
    return text_message(thread), text_message(line)
