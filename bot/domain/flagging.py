"""What the feature flag should say by the plan, and what the bot remembers of what it says.

Plain rules over the rollout's row: no flag service, no session. The bot's percentage on the
flag follows the rollout: the current step's percentage while it runs (a 0 % step, such as
internal testing, keeps it at 0), 100 % once completed, 0 % once rolled back.
"""

from __future__ import annotations

from datetime import datetime

from storage.enums import RolloutStatus
from storage.models import Rollout

PAUSE = "pause"
ROLLBACK = "rollback"
ON_TRIGGER = (PAUSE, ROLLBACK)


def plan_percent(rollout: Rollout) -> float:
    """The percentage the flag should expose now."""
    return percent_at(rollout.status, rollout.current_step.percent)


def percent_at(status: RolloutStatus, step_percent: float) -> float:
    """`plan_percent` from the rollout's status and its current step's percentage."""
    if status is RolloutStatus.COMPLETED:
        return 100.0
    if status is RolloutStatus.ROLLED_BACK:
        return 0.0
    return float(step_percent)


def exposed(enabled: bool, percent: float | None) -> float:
    """The share of users the bot's rollout reaches: nothing while the flag is off, or while
    the bot has no rollout of its own on it."""
    return float(percent) if enabled and percent is not None else 0.0


def managed(rollout: Rollout) -> bool:
    """Whether a flag service runs this rollout's flag: its flag was read when it started."""
    return is_managed(rollout.flag_key, rollout.flag_seen_at)


def is_managed(flag_key: str | None, flag_seen_at: datetime | None) -> bool:
    """`managed` from the rollout's flag key and when its flag was last read."""
    return bool(flag_key) and flag_seen_at is not None


def see(rollout: Rollout, *, percent: float, enabled: bool, strategy_id: str | None, now: datetime) -> bool:
    """Remembers what the flag says; True when that differs from what was remembered."""
    before = (rollout.flag_percent, rollout.flag_enabled, rollout.flag_strategy_id, rollout.flag_problem)
    rollout.flag_percent = percent
    rollout.flag_enabled = enabled
    rollout.flag_strategy_id = strategy_id or rollout.flag_strategy_id
    rollout.flag_problem = None
    rollout.flag_seen_at = now
    return before != (percent, enabled, rollout.flag_strategy_id, None)


def drift(rollout: Rollout) -> float | None:
    """The flag's percentage when it differs from the plan's and people have not accepted it;
    None when the flag follows the plan (or a write to it is still being retried)."""
    if not managed(rollout) or rollout.flag_percent is None or rollout.flag_pending is not None:
        return None
    seen = rollout.flag_percent
    if seen == plan_percent(rollout) or seen == rollout.flag_adopted_percent:
        return None
    return seen


def new_drift(rollout: Rollout, previous: float | None) -> bool:
    """A drift to tell people about: the flag says something else than the plan, and it did
    not already say so at the last look (that drift was told then)."""
    return drift(rollout) is not None and rollout.flag_percent != previous


def on_trigger(rollout: Rollout) -> str:
    """What a fired rollback trigger does, as the plan says: pause (the default) or roll back."""
    value = str((rollout.plan_doc or {}).get("on_trigger") or PAUSE).lower()
    return value if value in ON_TRIGGER else PAUSE


def percent_words(percent: float | None) -> str:
    return "unknown" if percent is None else f"{percent:g}%"
