"""The one line the status message and App Home show about auto-advance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from messages.text import escape, slack_time

if TYPE_CHECKING:
    from messages.views import RolloutView

# Reasons that hold the tick until a time of the calendar, not until a gate turns green.
_CALENDAR = ("freeze", "allowed hours", "holiday")


def auto_words(rollout: RolloutView) -> str:
    """The line as mrkdwn: "auto: next check at <each reader's own time>", "waiting: freeze
    “x” until …", "auto: checking now" (while the tick looks: its row's time is only a
    lease), "auto: waits for a person"; "" when auto-advance is off or the rollout is not
    active."""
    if not rollout.auto_on or rollout.status != "active":
        return ""
    if rollout.auto_due is None:
        return "auto: waits for a person (a checkpoint, or the owner's advance)"
    if rollout.auto_checking:
        return "auto: checking now"
    if rollout.auto_why and any(word in rollout.auto_why for word in _CALENDAR):
        return f"waiting: {escape(rollout.auto_why)}"
    at = slack_time(rollout.auto_due, rollout.timezone)
    return f"auto: next check at {at}" + (f" ({escape(rollout.auto_why)})" if rollout.auto_why else "")
