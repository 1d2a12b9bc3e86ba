"""Business time in a rollout's own time zone, skipping weekends and public holidays.

Pure: aware datetimes in, numbers and aware UTC datetimes out. No clock is read here. Each
local day's span and whether it is a working day are cached per (day, zone, country): they never
change in a process, and every soak, overdue and stale time walks the same weeks again.

The rule (one definition, used by both `business_days_elapsed` and `earliest_time`):

- Time is cut into local calendar days of the rollout's time zone (a zoneinfo name such as
  "America/Los_Angeles"). A local day runs from one local midnight to the next, so it may
  last 23 h or 25 h on a daylight-saving change day.
- A local day is a *business day* when it is a working day of the country ("US", "GB",
  "DE", ...): not a weekend day and not a public holiday, as `holidays.country_holidays`
  sees it (observed holidays included, the country's own weekend, e.g. Fri/Sat in "EG").
- Each business day counts as exactly one business day; a part of it counts pro rata by its
  share of that day's real length (6 real hours of a 24 h day = 0.25, of a 25 h day = 0.24).
- Weekends and holidays count nothing.

Naive datetimes are a programming error and raise ValueError, as do unknown time zones and
country codes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

__all__ = [
    "business_days_elapsed",
    "earliest_time",
    "format_business_days",
    "format_day",
    "format_elapsed",
    "format_local",
]

# A generous bound on how far `earliest_time` walks: 30 business days need about six weeks,
# even around Christmas. Past this something is wrong (e.g. a calendar with no working days).
_MAX_CALENDAR_DAYS = 3660
_ONE_MICROSECOND = timedelta(microseconds=1)
_MAX_NUDGES = 16
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def business_days_elapsed(start: datetime, end: datetime, *, tz: str, country: str) -> float:
    """How much business time lies between `start` and `end`, in business days.

    Each local calendar day (in `tz`) that is a working day of `country` counts as one
    business day; a part of such a day counts pro rata by its share of that local day's real
    length, so daylight-saving days of 23 h or 25 h still count as one day. Weekends and
    public holidays count nothing. Returns 0.0 when `end` is not after `start`.
    """
    zone = _zone(tz)
    start_utc, end_utc = _utc(start, "start"), _utc(end, "end")
    _check_country(country)
    if end_utc <= start_utc:
        return 0.0
    total = 0.0
    for day_start, day_end in _business_days(start_utc, zone, country):
        if day_start >= end_utc:
            break
        overlap = min(end_utc, day_end) - max(start_utc, day_start)
        total += overlap / (day_end - day_start)
    return total


def earliest_time(start: datetime, business_days: float, *, tz: str, country: str) -> datetime:
    """The first instant at which `business_days_elapsed(start, t) >= business_days`, in UTC.

    Returns `start` (in UTC) when `business_days <= 0`. The answer is exact to the
    microsecond: elapsed business time at the answer is at least `business_days`, and one
    microsecond earlier it is less. Note that a soak that ends exactly at the end of a
    business day ends at that local midnight, not on the next business morning.
    """
    zone = _zone(tz)
    start_utc = _utc(start, "start")
    _check_country(country)
    if math.isnan(business_days) or math.isinf(business_days):
        raise ValueError(f"business_days must be a finite number, got {business_days!r}")
    if business_days <= 0:
        return start_utc
    walked = _walk_to(start_utc, business_days, zone, country)
    return _settle(start_utc, business_days, walked, tz=tz, country=country)


def _settle(start: datetime, business_days: float, walked: _Walked, *, tz: str, country: str) -> datetime:
    """Move the walked candidate to the first microsecond with enough elapsed business time.

    Float rounding (a microsecond timedelta, summed fractions) may leave the walked answer a
    tick or two off. The nudge is bounded: a walk that is further off is a bug, not noise.

    The elapsed time at an instant inside the candidate's business day is the walk's sum over
    the days before it plus that day's part, the very terms `business_days_elapsed` adds, in
    the same order, so the same float: it is not walked again from `start` (twice or more per
    answer, two thirds of `earliest_time`, which plans every rollout's due rows three times
    over). Any other instant is asked of `business_days_elapsed`.
    """
    candidate, before, day_start, day_end = walked
    first = max(start, day_start)
    length = day_end - day_start

    def enough(t: datetime) -> bool:
        if first < t <= day_end:
            return before + (t - first) / length >= business_days
        return business_days_elapsed(start, t, tz=tz, country=country) >= business_days

    for _ in range(_MAX_NUDGES):
        if not enough(candidate):
            candidate += _ONE_MICROSECOND
        elif candidate > start and enough(candidate - _ONE_MICROSECOND):
            candidate -= _ONE_MICROSECOND
        else:
            return candidate
    raise AssertionError(f"earliest_time missed by more than {_MAX_NUDGES} µs near {candidate}")


def format_local(dt: datetime, tz: str) -> str:
    """`dt` on the wall clock of `tz`, with the zone's abbreviation: "Tue 16 Jan 18:00 PST".

    The one date form of every message ("Fri 4 Dec": weekday, day without a leading zero,
    month). Day and month names are English whatever the process locale, so messages do not
    change with the host. Slack messages show a reader's own zone instead (messages/text.py);
    this is their fallback and the form of the export and the shell.
    """
    local = _utc(dt, "dt").astimezone(_zone(tz))
    return f"{format_day(dt, tz)} {local:%H:%M} {local.tzname() or tz}"


def format_day(dt: datetime, tz: str) -> str:
    """The date of `dt` on the wall clock of `tz`: "Fri 4 Dec"."""
    local = _utc(dt, "dt").astimezone(_zone(tz))
    return f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]}"


def format_business_days(days: float) -> str:
    """A number of business days: "1 business day", "0.5 business days", "2 business days".

    Rounded *down* to two decimals so a soak that has not finished never reads as finished.
    """
    shown = _floor(days, 2)
    return f"{_plain(shown)} business day{'' if shown == 1 else 's'}"


def format_elapsed(days: float) -> str:
    """Elapsed business time for people: hours under one business day ("6 h", "7.5 h"),
    business days from one on ("1.25 business days").

    An hour here is 1/24 of a business day. Rounded down, for the same reason as
    `format_business_days`.
    """
    if days >= 1:
        return format_business_days(days)
    return f"{_plain(_floor(max(days, 0.0) * 24, 1))} h"


# (candidate, business days elapsed before its day, that day's span): `_walk_to`
_Walked = tuple[datetime, float, datetime, datetime]


def _walk_to(start: datetime, business_days: float, zone: ZoneInfo, country: str) -> _Walked:
    """Walk business days from `start` until `business_days` have accumulated."""
    accumulated = 0.0
    for day_start, day_end in _business_days(start, zone, country):
        part_start = max(start, day_start)
        length = day_end - day_start
        share = (day_end - part_start) / length
        if accumulated + share >= business_days:
            return part_start + (business_days - accumulated) * length, accumulated, day_start, day_end
        accumulated += share
    raise ValueError(  # pragma: no cover - only a calendar without working days gets here
        f"no {business_days} business days within {_MAX_CALENDAR_DAYS} days of {start}"
    )


def _business_days(start_utc: datetime, zone: ZoneInfo, country: str) -> Iterator[tuple[datetime, datetime]]:
    """The business days that end after `start_utc`, as [local midnight, next local midnight)
    in UTC, in order, for at most `_MAX_CALENDAR_DAYS` calendar days."""
    # Start a day early: the local date of an instant is not always the day whose
    # midnight-to-midnight span holds it (a midnight that is skipped or repeated by DST).
    day = start_utc.astimezone(zone).date() - timedelta(days=1)
    for _ in range(_MAX_CALENDAR_DAYS):
        span = _business_day_span(day, zone, country)
        if span is not None and span[1] > start_utc:
            yield span
        day += timedelta(days=1)


@lru_cache(maxsize=8192)
def _business_day_span(day: date, zone: ZoneInfo, country: str) -> tuple[datetime, datetime] | None:
    """Local `day` as [its midnight, the next) in UTC when it is a business day, else None.
    Cached: the soak, the overdue and the stale times of every rollout walk the same few weeks
    of days again and again, and a day's span never changes (a zone's rules are fixed for the
    life of the process, as are the holidays of a year)."""
    if not is_business_day(day, country):
        return None
    return _midnight(day, zone), _midnight(day + timedelta(days=1), zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which local `day` begins.

    fold=0 picks the earlier reading of a repeated midnight and, for a midnight skipped by a
    DST jump, the instant of the jump itself, so consecutive days tile time without gaps.
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@lru_cache(maxsize=8192)
def is_business_day(day: date, country: str) -> bool:
    return bool(_country_calendar(country, day.year).is_working_day(day))


@lru_cache(maxsize=256)
def _country_calendar(country: str, year: int) -> holidays.HolidayBase:
    # One object per (country, year), built eagerly and never expanded afterwards, so
    # concurrent readers share it without the library filling in years behind their backs.
    return holidays.country_holidays(country, years=year, expand=False)


def _check_country(country: str) -> None:
    try:
        _country_calendar(country, 2000)
    except NotImplementedError:
        raise ValueError(f"unknown country code {country!r} for public holidays") from None


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


def _utc(dt: datetime, name: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {dt.isoformat()}")
    return dt.astimezone(UTC)


def _floor(x: float, decimals: int) -> float:
    scale = 10.0**decimals
    # The small nudge keeps 0.29 (stored as 0.28999...) from flooring to 0.28.
    return math.floor(x * scale + 1e-9) / scale


def _plain(x: float) -> str:
    """A number without exponent or trailing zeros: 1 -> "1", 1.50 -> "1.5"."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
