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
        """E.g. "25% is on day 2 of 3 business days; ready Thu 3 Dec 09:00 PST", "25% has
        soaked its 1 business day; ready since Tue 16 Jan 18:00 PST"."""
        if self.required_days <= 0:
            return f"{step_title} has no minimum soak time"
        when = format_local(self.earliest, tz)
        if self.met:
            return (
                f"{step_title} has soaked its {format_business_days(self.required_days)}; ready since {when}"
            )
        progress = self.progress()
        ran = f"is on {progress}" if progress.startswith("day ") else f"has run {progress}"
        return f"{step_title} {ran}; ready {when}"

    def progress(self) -> str:
        """How far the soak is, in the words people count it in: "day 2 of 3 business days";
        a soak shorter than a day, or not in whole days, in hours: "6 h of 0.5 business days".
        Day N is the business day under way, so it never reads as further on than it is."""
        required = format_business_days(self.required_days)
        if self.required_days >= 1 and float(self.required_days).is_integer():
            day = min(math.floor(self.elapsed_days) + 1, int(self.required_days))
            return f"day {day} of {required}"
        return f"{format_elapsed(self.elapsed_days)} of {required}"


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
