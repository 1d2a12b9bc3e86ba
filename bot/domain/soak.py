"""How long a step has soaked against the business days its plan asks for: a pure rule over the
step's start, now, and the rollout's calendar (`bot.domain.calendar`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from bot.domain.calendar import (
    business_days_elapsed,
    earliest_time,
    format_business_days,
    format_elapsed,
    format_local,
)


@dataclass(frozen=True)
class Soak:
    """How long the current step has run against the business days it must run."""

    required_days: float
    elapsed_days: float
    earliest: datetime
    met: bool

    def describe(self, step_title: str, tz: str) -> str:
        """E.g. "25% has run 6 h of the required 1 business day, 0.75 business days left;
        earliest advance Tue 16 Jan 18:00 America/Los_Angeles"."""
        if self.required_days <= 0:
            return f"{step_title} has no minimum soak time"
        ran = (
            f"{step_title} has run {format_elapsed(self.elapsed_days)} "
            f"of the required {format_business_days(self.required_days)}"
        )
        when = format_local(self.earliest, tz)
        if self.met:
            return f"{ran}; soak met since {when}"
        # Rounded up: a soak must never read as nearer its end than it is.
        left = math.ceil((self.required_days - self.elapsed_days) * 100) / 100
        return f"{ran}, {format_business_days(max(left, 0.01))} left; earliest advance {when}"


def soak_status(
    started_at: datetime,
    min_business_days: float,
    now: datetime,
    *,
    tz: str,
    country: str,
) -> Soak:
    """How far a step started at `started_at` is through its minimum business days.

    Met means `now` has reached the earliest instant (see `bot.calendar.earliest_time`), so
    the displayed earliest time and the decision never disagree.
    """
    earliest = earliest_time(started_at, min_business_days, tz=tz, country=country)
    elapsed = business_days_elapsed(started_at, now, tz=tz, country=country)
    met = min_business_days <= 0 or now >= earliest
    return Soak(
        required_days=max(min_business_days, 0.0),
        elapsed_days=elapsed,
        earliest=earliest,
        met=met,
    )
