"""`/rollout timeline`: a rollout's audit trail as one compact message a page at a time, newest
first: who did what when, gate verdicts, overrides with their reasons, flag changes.

Slack refuses a message of more than 50 blocks or a section of more than 3,000 characters; a
page packs one line per event into sections up to that length and stops before the blocks
run out, and its "Older…" button carries where the next page starts (the last event shown)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.ids import Action
from messages.blocks import Message, _dicts
from messages.text import MAX_BLOCKS, MAX_SECTION_TEXT, escape, slack_time, truncate
from messages.views import EventView, TimelineView

MAX_LINE = 500  # one event's line; a long reason is cut here, the export keeps all of it
RESERVED_BLOCKS = 3  # the heading, the page note and the button


def _who(actor: str | None) -> str:
    return f"<@{escape(actor)}>" if actor else "Rollout Bot"


def _pct(value: Any) -> str:
    if value is None:
        return "unknown"
    try:
        return f"{float(value):g}%"
    except (TypeError, ValueError):
        return escape(value)


def _why(data: Mapping[str, Any]) -> str:
    reason = str(data.get("reason") or "")
    return f" Reason: _{escape(truncate(reason, 300))}_" if reason else ""


def _steps(data: Mapping[str, Any]) -> str:
    return f"{escape(data.get('from_step', ''))} → *{escape(data.get('to_step', ''))}*"


def _flag(data: Mapping[str, Any]) -> str:
    return f"`{escape(data.get('flag', ''))}`"


def _blocked(e: EventView) -> str:
    blockers = [str(b) for b in e.data.get("blockers") or []]
    shown = "; ".join(escape(truncate(b, 160)) for b in blockers[:3])
    more = f" (+{len(blockers) - 3} more)" if len(blockers) > 3 else ""
    said = f": {shown}{more}" if shown else ""
    return f":no_entry: the gate refused an advance by {_who(e.actor_id)}{said}"


def _item(mark: str, verb: str) -> Callable[[EventView], str]:
    return lambda e: (
        f"{mark} {_who(e.actor_id)} {verb} _{escape(truncate(str(e.data.get('text', '')), 200))}_"
    )


LINES: dict[str, Callable[[EventView], str]] = {
    "started": lambda e: f":rocket: {_who(e.actor_id)} started the rollout",
    "advanced": lambda e: (
        f":arrow_up: advanced automatically {_steps(e.data)} (gate green)"
        if e.data.get("auto")
        else f":arrow_up: {_who(e.actor_id)} advanced {_steps(e.data)} (gate passed)"
    ),
    "overridden": lambda e: (
        f":warning: {_who(e.actor_id)} advanced {_steps(e.data)} *past a closed gate*.{_why(e.data)}"
    ),
    "advance_blocked": _blocked,
    "snapshot": lambda e: (
        f":bar_chart: {_who(e.actor_id)} checked the gate: "
        + ("it would pass" if e.data.get("passed") else "it would not pass")
    ),
    "phase_completed": lambda e: f":heavy_check_mark: phase {escape(e.data.get('phase', ''))} completed",
    "paused": lambda e: f":double_vertical_bar: {_who(e.actor_id)} paused it.{_why(e.data)}",
    "resumed": lambda e: f":arrow_forward: {_who(e.actor_id)} resumed it",
    "rolled_back": lambda e: f":rewind: {_who(e.actor_id)} rolled it back.{_why(e.data)}",
    "completed": lambda e: f":tada: {_who(e.actor_id)} completed the rollout",
    "trigger_fired": lambda e: (
        f":rotating_light: rollback trigger {escape(e.data.get('name', ''))} fired: "
        f"{escape(truncate(str(e.data.get('reason', '')), 300))}"
    ),
    "item_checked": _item(":ballot_box_with_check:", "ticked"),
    "item_unchecked": _item(":white_large_square:", "unticked"),
    "approver_added": lambda e: (
        f"{_who(e.actor_id)} added {_who(str(e.data.get('user', '')))} as an approver"
    ),
    "approver_removed": lambda e: (
        f"{_who(e.actor_id)} removed {_who(str(e.data.get('user', '')))} as an approver"
    ),
    "metrics_edited": lambda e: f":straight_ruler: {_who(e.actor_id)} edited the metrics",
    "refused": lambda e: (
        f":no_entry_sign: {_who(e.actor_id)} was refused: {escape(e.data.get('action', ''))}"
    ),
    "update_sent": lambda e: (
        f":mega: {_who(e.actor_id)} sent an update: {escape(truncate(str(e.data.get('text', '')), 200))}"
    ),
    "digest_changed": lambda e: (
        f":calendar: {_who(e.actor_id)} set the digest to {escape(e.data.get('cadence', ''))} "
        f"{escape(e.data.get('at', ''))}"
    ),
    "delivery_failed": lambda e: (
        f":warning: an announcement to <#{escape(e.data.get('channel', ''))}> failed "
        f"({escape(e.data.get('error', ''))})"
    ),
    "flag_set": lambda e: (
        f":triangular_flag_on_post: {_who(e.actor_id)} set flag {_flag(e.data)} "
        f"{_pct(e.data.get('before'))} → {_pct(e.data.get('after'))}"
    ),
    "flag_write_failed": lambda e: (
        f":x: {escape(e.data.get('provider', 'the flag service'))} refused flag {_flag(e.data)} "
        f"{_pct(e.data.get('before'))} → {_pct(e.data.get('wanted'))}: "
        f"{escape(truncate(str(e.data.get('reason', '')), 300))}"
    ),
    "flag_drift": lambda e: (
        f":warning: flag {_flag(e.data)} found at {_pct(e.data.get('flag_says'))} while the plan "
        f"says {_pct(e.data.get('plan_says'))}"
    ),
    "flag_adopted": lambda e: (
        f"{_who(e.actor_id)} kept flag {_flag(e.data)} at {_pct(e.data.get('percent'))} "
        f"(the plan says {_pct(e.data.get('plan_says'))})"
    ),
    "access_changed": lambda e: (
        f":key: {_who(e.actor_id)} set who may {escape(e.data.get('act', ''))}: {escape(e.data.get('who', ''))}"
    ),
}


def line(event: EventView, tz: str) -> str:
    """One event as one line: `when` who did what."""
    words = LINES.get(event.kind)
    text = words(event) if words else f"{_who(event.actor_id)}: {escape(event.kind.replace('_', ' '))}"
    # A date token is never cut: the line's words are, when the line is long.
    when = slack_time(event.at, tz)
    return f"{when} {truncate(text, max(MAX_LINE - len(when) - 1, 40))}"


def timeline_message(view: TimelineView) -> tuple[Message, int]:
    """A page of the timeline, and how many of `view.events` it shows (all, unless Slack's
    limits stopped it sooner: the rest start the next page)."""
    sections: list[str] = []
    shown = 0
    for event in view.events:
        text = line(event, view.tz)
        if sections and len(sections[-1]) + 1 + len(text) <= MAX_SECTION_TEXT:
            sections[-1] += "\n" + text
        elif len(sections) < MAX_BLOCKS - RESERVED_BLOCKS:
            sections.append(text)
        else:
            break
        shown += 1
    older = view.older or shown < len(view.events)
    heading = f":scroll: *Timeline of {escape(view.feature)}*, newest first"
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=heading))]
    blocks += [SectionBlock(text=MarkdownTextObject(text=s)) for s in sections]
    if not sections:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="_Nothing recorded yet._")))
    page = f"Page {view.page}: {shown} of {view.total} events" + (
        ", older ones on the next page." if older else "."
    )
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=page)]))
    if older and shown:
        cursor = f"{view.rollout_id}:{view.events[shown - 1].id}:{view.page + 1}"
        blocks.append(
            ActionsBlock(
                elements=[ButtonElement(text="Older…", action_id=Action.TIMELINE_OLDER, value=cursor)]
            )
        )
    fallback = f"Timeline of {escape(view.feature)}: page {view.page}, {shown} of {view.total} events"
    return Message(text=fallback, blocks=_dicts(blocks)), shown
