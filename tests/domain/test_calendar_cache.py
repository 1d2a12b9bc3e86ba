"""The cached day spans of bot.domain.calendar give exactly what walking the calendar day by day
gave before they were cached: the same business days, the same instants, to the microsecond,
across DST changes, holidays and countries with other weekends; and a cached day is not
confused with the same date in another zone or country."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import calendar

PLACES = [
    ("America/Los_Angeles", "US"),
    ("Europe/Berlin", "DE"),
    ("Europe/London", "GB"),
    ("Africa/Cairo", "EG"),  # works Sun-Thu; 25 h days at its DST end
    ("Australia/Sydney", "AU"),
    ("Asia/Kolkata", "IN"),
]


# --- the walk as it was before the cache: every day's midnights and holiday look-up afresh ----
def _reference_days(start_utc: datetime, zone: ZoneInfo, country: str) -> Iterator[tuple[datetime, datetime]]:
    day = start_utc.astimezone(zone).date() - timedelta(days=1)
    for _ in range(3660):
        begin = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        working = holidays.country_holidays(country, years=day.year, expand=False).is_working_day(day)
        if end > start_utc and working:
            yield begin, end
        day += timedelta(days=1)


def _reference_elapsed(start: datetime, end: datetime, tz: str, country: str) -> float:
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    if end_utc <= start_utc:
        return 0.0
    total = 0.0
    for day_start, day_end in _reference_days(start_utc, ZoneInfo(tz), country):
        if day_start >= end_utc:
            break
        total += (min(end_utc, day_end) - max(start_utc, day_start)) / (day_end - day_start)
    return total


def _reference_earliest(start: datetime, business_days: float, tz: str, country: str) -> datetime:
    start_utc = start.astimezone(UTC)
    if business_days <= 0:
        return start_utc
    accumulated, candidate = 0.0, None
    for day_start, day_end in _reference_days(start_utc, ZoneInfo(tz), country):
        part_start = max(start_utc, day_start)
        length = day_end - day_start
        share = (day_end - part_start) / length
        if accumulated + share >= business_days:
            candidate = part_start + (business_days - accumulated) * length
            break
        accumulated += share
    assert candidate is not None
    one = timedelta(microseconds=1)
    for _ in range(16):
        if _reference_elapsed(start, candidate, tz, country) < business_days:
            candidate += one
        elif (
            candidate > start_utc and _reference_elapsed(start, candidate - one, tz, country) >= business_days
        ):
            candidate -= one
        else:
            return candidate
    raise AssertionError("the reference walk did not settle")


moments = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(
    place=st.sampled_from(PLACES),
    start=moments,
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    days=st.floats(min_value=0.0, max_value=12.0, allow_nan=False),
)
def test_the_cached_walk_answers_as_the_day_by_day_walk(
    place: tuple[str, str], start: datetime, length: timedelta, days: float
) -> None:
    tz, country = place
    end = start + length
    assert calendar.business_days_elapsed(start, end, tz=tz, country=country) == _reference_elapsed(
        start, end, tz, country
    )
    assert calendar.earliest_time(start, days, tz=tz, country=country) == _reference_earliest(
        start, days, tz, country
    )


def test_a_date_is_a_business_day_or_not_for_its_own_country_and_zone() -> None:
    # Fri 2024-12-06 is a working day in the US and a weekend day in Egypt; Thu 2024-12-05 the
    # other way round for a Sunday start. The same date, asked for both, keeps both answers.
    friday = date(2024, 12, 6)
    assert calendar.is_business_day(friday, "US")
    assert not calendar.is_business_day(friday, "EG")
    assert calendar.is_business_day(friday, "US")
    # The same local date in two zones is two different spans of time.
    start = datetime(2024, 12, 6, 12, tzinfo=UTC)
    la = calendar.earliest_time(start, 0.5, tz="America/Los_Angeles", country="US")
    berlin = calendar.earliest_time(start, 0.5, tz="Europe/Berlin", country="DE")
    assert la != berlin
    assert la == _reference_earliest(start, 0.5, "America/Los_Angeles", "US")
    assert berlin == _reference_earliest(start, 0.5, "Europe/Berlin", "DE")
    assert math.isclose(
        calendar.business_days_elapsed(start, la, tz="America/Los_Angeles", country="US"), 0.5
    )
