"""The digest, the reminders to the owner and the rollback-trigger alert: data in, messages out.
Every text comes from a template a team may override (digest.j2, reminder.j2, trigger_alert.j2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from slack_sdk.models.blocks import ActionsBlock, ButtonElement

from bot.ids import Action
from messages.blocks import Message, text_message
from messages.render import render
from messages.text import local_time

if TYPE_CHECKING:
    from storage.models import Event

# The digest tells the story since the last one; a long story is cut here, the timeline
# (and the Markdown export) keeps all of it.
MAX_TIMELINE = 15
# What a digest reader cares about; snapshots, refusals and delivery problems stay in the timeline.
SHOWN = frozenset(
    {
        "started",
        "advanced",
        "overridden",
        "advance_blocked",
        "phase_completed",
        "paused",
        "resumed",
        "rolled_back",
        "completed",
        "trigger_fired",
        "update_sent",
        "approver_added",
        "approver_removed",
        "metrics_edited",
        "item_checked",
        "item_unchecked",
    }
)
_TICKS = {"item_checked": "ticks", "item_unchecked": "unticks"}


@dataclass(frozen=True)
class GateSeen:
    """The last gate verdict at the current step, as the digest shows it."""

    passed: bool
    at: str
    blockers: tuple[str, ...]


def timeline(events: Sequence[Event], tz: str) -> list[dict[str, Any]]:
    """Digest entries, oldest first; one person's consecutive checklist ticks are one entry."""
    out: list[dict[str, Any]] = []
    for event in events:
        kind = event.kind.value
        if kind not in SHOWN:
            continue
        if kind in _TICKS:
            run = _TICKS[kind]
            last = out[-1] if out else None
            if last is not None and last["kind"] == run and last["actor"] == event.actor_id:
                last["items"].append(str(event.data.get("text", "")))
                continue
            out.append(
                {
                    "kind": run,
                    "actor": event.actor_id,
                    "at": local_time(event.at, tz),
                    "items": [str(event.data.get("text", ""))],
                }
            )
            continue
        out.append(
            {"kind": kind, "actor": event.actor_id, "at": local_time(event.at, tz), "data": dict(event.data)}
        )
    return out


def digest(*, events: Sequence[Event], tz: str, **context: Any) -> tuple[Message, Message]:
    """(status-thread digest, stakeholder digest)."""
    entries = timeline(events, tz)
    shown, more = entries[-MAX_TIMELINE:], max(0, len(entries) - MAX_TIMELINE)
    thread = render("digest", audience="thread", timeline=shown, more=more, **context)
    line = render("digest", audience="stakeholders", timeline=shown, more=more, **context)
    return text_message(thread), text_message(line)


def reminder(kind: str, *, advance_rollout_id: int | None = None, **context: Any) -> Message:
    """A reminder to the owner; with `advance_rollout_id`, an Advance button under it (the same
    action as the status message's, so the existing listener runs the gate)."""
    message = text_message(render("reminder", kind=kind, **context))
    if advance_rollout_id is None:
        return message
    button = ButtonElement(
        text="Advance", action_id=Action.ADVANCE, value=str(advance_rollout_id), style="primary"
    )
    return Message(text=message.text, blocks=[*message.blocks, ActionsBlock(elements=[button]).to_dict()])


def trigger_alert(**context: Any) -> tuple[Message, Message]:
    """(status-thread alert, top-level alert in the rollout's channel)."""
    return (
        text_message(render("trigger_alert", where="thread", **context)),
        text_message(render("trigger_alert", where="channel", **context)),
    )


def when(moment: datetime, tz: str) -> str:
    """A local time with its zone, e.g. "Tue 12 Mar 10:00 America/Los_Angeles"."""
    return local_time(moment, tz, with_zone=True)
