"""The one line the status message and App Home show about auto-advance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from messages.text import local_time

if TYPE_CHECKING:
    from messages.views import RolloutView

# Reasons that hold the tick until a time of the calendar, not until a gate turns green.
_CALENDAR = ("freeze", "allowed hours", "holiday")


def auto_words(rollout: RolloutView) -> str:
    """ "auto: next check at Tue 08 Dec 09:00 America/Los_Angeles", "waiting: freeze “x”
    until …", "auto: waits for a person"; "" when auto-advance is off or the rollout is not
    active."""
    if not rollout.auto_on or rollout.status != "active":
        return ""
    if rollout.auto_due is None:
        return "auto: waits for a person (a checkpoint, or the owner's advance)"
    if rollout.auto_why and any(word in rollout.auto_why for word in _CALENDAR):
        return f"waiting: {rollout.auto_why}"
    at = local_time(rollout.auto_due, rollout.timezone, with_zone=True)
    return f"auto: next check at {at}" + (f" ({rollout.auto_why})" if rollout.auto_why else "")
