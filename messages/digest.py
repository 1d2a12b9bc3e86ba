"""The digest, the reminders to the owner and the rollback-trigger alert: data in, messages out.
Every text comes from a template a team may override (digest.j2, reminder.j2, trigger_alert.j2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from slack_sdk.models.blocks import ActionsBlock, ButtonElement

from bot.ids import Action
from messages.blocks import Message, advance_value, text_message
from messages.push import PUSH_LIMIT, plain_words
from messages.render import render
from messages.text import slack_day, slack_time, truncate

if TYPE_CHECKING:
    from messages.views import EventView, RolloutView, SnapshotView

# Stands for the status thread's permalink until the outbox posts the message (the same token
# as messages.announcements.STATUS_LINK, which imports this module).
STATUS_LINK = "%%ROLLOUT_STATUS_LINK%%"
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
        "flag_set",
        "flag_write_failed",
        "flag_drift",
        "flag_adopted",
    }
)
_TICKS = {"item_checked": "ticks", "item_unchecked": "unticks"}


def short(moment: datetime, tz: str) -> str:
    """A time in each reader's own zone (Slack's date token; "Tue 12 Mar 10:00 PDT" where it
    cannot show)."""
    return slack_time(moment, tz)


def when(moment: datetime, tz: str) -> str:
    """The same as `short`: one time format in every message (messages/STYLE.md)."""
    return slack_time(moment, tz)


def about(rollout: RolloutView) -> dict[str, Any]:
    """What every one of these messages says about the rollout."""
    step = rollout.current_step
    return {
        "feature": rollout.feature,
        "owner": rollout.owner_id,
        "channel": rollout.channel_id,
        "step": step.title,
        "phase": rollout.current_phase.name,
        "users": step.desired_users,
        "paused": rollout.paused,
    }


def timeline(events: Sequence[EventView], tz: str) -> list[dict[str, Any]]:
    """Digest entries, oldest first; one person's consecutive checklist ticks are one entry."""
    out: list[dict[str, Any]] = []
    for event in events:
        kind = event.kind
        if kind not in SHOWN:
            continue
        entry = {"kind": _TICKS.get(kind, kind), "actor": event.actor_id, "at": short(event.at, tz)}
        if kind not in _TICKS:
            out.append({**entry, "data": dict(event.data)})
        elif out and (out[-1]["kind"], out[-1]["actor"]) == (entry["kind"], entry["actor"]):
            out[-1]["items"].append(str(event.data.get("text", "")))
        else:
            out.append({**entry, "items": [str(event.data.get("text", ""))]})
    return out


def has_news(events: Sequence[EventView]) -> bool:
    """Whether a digest would tell anything: a digest that says "nothing happened" is not sent."""
    return any(e.kind in SHOWN for e in events)


def digest(
    rollout: RolloutView,
    *,
    scheduled: datetime,
    events: Sequence[EventView],
    check: SnapshotView | None,
    soak: str,
    unchecked: Sequence[str],
) -> tuple[Message, Message]:
    """(status-thread digest, stakeholder digest). `check` is the last gate verdict taken at
    the current step, if any. The progress chart follows on its own (bot.delivery.charts)."""
    tz = rollout.timezone
    entries = timeline(events, tz)
    context = {
        **about(rollout),
        "cadence": rollout.digest,
        "date": slack_day(scheduled, tz),
        "since": when(rollout.step_started_at, tz),
        "soak": soak,
        "unchecked": list(unchecked),
        "gate": None
        if check is None
        else {
            "passed": bool(check.passed),
            "at": when(check.taken_at, tz),
            "blockers": list(check.blockers),
        },
        "timeline": entries[-MAX_TIMELINE:],
        "more": max(0, len(entries) - MAX_TIMELINE),
        "link": STATUS_LINK,
    }
    thread = render("digest", audience="thread", **context)
    line = render("digest", audience="stakeholders", **context)
    return text_message(thread), text_message(line)


def reminder(kind: str, rollout: RolloutView, *, advance: bool = False, **extra: Any) -> Message:
    """A reminder to the owner (kind: ready | overdue | stale); with `advance`, an Advance
    button under it (the status message's own action, so the existing listener runs the gate)."""
    message = text_message(render("reminder", kind=kind, **about(rollout), **extra))
    if not advance:
        return message
    button = ButtonElement(
        text="Advance", action_id=Action.ADVANCE, value=advance_value(rollout), style="primary"
    )
    return Message(text=message.text, blocks=[*message.blocks, ActionsBlock(elements=[button]).to_dict()])


def trigger_undecided(rollout: RolloutView, **trigger: Any) -> Message:
    """A rollback trigger that cannot be judged (its change cannot be computed) is not fired:
    the owner is told, in the status thread. `trigger`: trigger (its name), reason, rule."""
    return text_message(render("trigger_undecided", **about(rollout), **trigger))


def trigger_alert(
    rollout: RolloutView,
    fired: Sequence[dict[str, str]],
    *,
    paused: bool,
    rolled_back: bool = False,
    links: Sequence[tuple[str, str]] = (),
) -> Message:
    """One alert for the triggers that fired at one check: the causes, what the bot did, the
    owner and approvers mentioned, and buttons: Resume (when it paused), Roll back (while it is
    open), "Open in Datadog" per query (`links`: (name, url)). `fired`: trigger (its name),
    reason, rule each. Posted in the status thread with reply_broadcast by the caller."""
    context = {
        **about(rollout),
        "fired": list(fired),
        "approvers": [a for a in rollout.approvers if a != rollout.owner_id],
        "paused": paused,
        "rolled_back": rolled_back,
    }
    body = text_message(render("trigger_alert", **context))
    names = ", ".join(plain_words(t["trigger"]) for t in fired)
    did = "rolled back" if rolled_back else ("paused" if paused else "still running")
    push = truncate(f"Rollback trigger fired: {names} on {plain_words(rollout.feature)}, {did}", PUSH_LIMIT)
    value = str(rollout.id)
    buttons: list[ButtonElement] = []
    if paused and not rolled_back:
        buttons.append(ButtonElement(text="Resume", action_id=Action.RESUME, value=value))
    if not rolled_back:
        buttons.append(
            ButtonElement(text="Roll back…", action_id=Action.ROLLBACK, value=value, style="danger")
        )
    for number, (name, url) in enumerate(links[:3]):
        buttons.append(
            ButtonElement(
                text=truncate(f"Open {name.replace('<', '').replace('>', '')} in Datadog", 75),
                action_id=f"{Action.OPEN_DATADOG}:{number}",
                url=url,
            )
        )
    blocks = [*body.blocks, ActionsBlock(elements=buttons).to_dict()] if buttons else body.blocks
    return Message(text=push, blocks=blocks)
