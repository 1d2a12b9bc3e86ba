"""Business time: weekends and public holidays skipped, local days counted whole across DST."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.calendar import (
    business_days_elapsed,
    earliest_time,
    format_business_days,
    format_elapsed,
    format_local,
)

LA = "America/Los_Angeles"
BERLIN = "Europe/Berlin"
LONDON = "Europe/London"
CAIRO = "Africa/Cairo"  # Thu 2024-10-31 lasts 25 h there, and Egypt works Sun-Thu


def at(tz: str, *args: int) -> datetime:
    """A wall-clock time in `tz`."""
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- business_days_elapsed ------------------------------------------------------------

ELAPSED = [
    # id, start, end, tz, country, expected business days
    ("one-whole-weekday", at(LA, 2024, 1, 9), at(LA, 2024, 1, 10), LA, "US", 1.0),
    ("six-hours-is-a-quarter", at(LA, 2024, 1, 9, 10), at(LA, 2024, 1, 9, 16), LA, "US", 0.25),
    ("weekend-counts-nothing", at(LA, 2024, 1, 6), at(LA, 2024, 1, 8), LA, "US", 0.0),
    ("holiday-counts-nothing-mlk", at(LA, 2024, 1, 15), at(LA, 2024, 1, 16), LA, "US", 0.0),
    (
        "fri-evening-over-weekend-and-mlk",
        at(LA, 2024, 1, 12, 18),
        at(LA, 2024, 1, 16, 18),
        LA,
        "US",
        1.0,
    ),
    ("end-before-start-is-zero", at(LA, 2024, 1, 10), at(LA, 2024, 1, 9), LA, "US", 0.0),
    ("start-equals-end-is-zero", at(LA, 2024, 1, 9, 10), at(LA, 2024, 1, 9, 10), LA, "US", 0.0),
    (
        # 2024-03-10 is a 23 h Sunday: skipped, and Monday still starts at local midnight.
        "dst-spring-forward-weekend-la",
        at(LA, 2024, 3, 8, 12),
        at(LA, 2024, 3, 11, 12),
        LA,
        "US",
        1.0,
    ),
    (
        # Good Friday, the DST Sunday (2024-03-31) and Easter Monday all count nothing in DE.
        "dst-and-easter-berlin-de",
        at(BERLIN, 2024, 3, 28, 12),
        at(BERLIN, 2024, 4, 2, 12),
        BERLIN,
        "DE",
        1.0,
    ),
    (
        "good-friday-is-a-holiday-in-de",
        at(BERLIN, 2024, 3, 29),
        at(BERLIN, 2024, 3, 30),
        BERLIN,
        "DE",
        0.0,
    ),
    (
        "good-friday-is-a-workday-in-us",
        at(LA, 2024, 3, 29),
        at(LA, 2024, 3, 30),
        LA,
        "US",
        1.0,
    ),
    ("christmas-gb", at(LONDON, 2024, 12, 24), at(LONDON, 2024, 12, 28), LONDON, "GB", 2.0),
    ("25-hour-weekday-counts-one", at(CAIRO, 2024, 10, 31), at(CAIRO, 2024, 11, 1), CAIRO, "EG", 1.0),
    (
        # Half of that 25 h day is 12.5 real hours: 21:00 UTC the day before + 12.5 h.
        "25-hour-weekday-pro-rata-by-real-length",
        utc(2024, 10, 30, 21),
        utc(2024, 10, 31, 9, 30),
        CAIRO,
        "EG",
        0.5,
    ),
    ("country-weekend-sunday-works-in-eg", at(CAIRO, 2024, 11, 3), at(CAIRO, 2024, 11, 4), CAIRO, "EG", 1.0),
    ("country-weekend-friday-rests-in-eg", at(CAIRO, 2024, 11, 1), at(CAIRO, 2024, 11, 2), CAIRO, "EG", 0.0),
    (
        # The same instants written in UTC: the rollout's tz decides, not the inputs' tzinfo.
        "inputs-in-utc-counted-in-rollout-tz",
        utc(2024, 1, 13, 2),
        utc(2024, 1, 17, 2),
        LA,
        "US",
        1.0,
    ),
]


@pytest.mark.parametrize(
    ("start", "end", "tz", "country", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in ELAPSED],
)
def test_business_days_elapsed(
    start: datetime, end: datetime, tz: str, country: str, expected: float
) -> None:
    assert business_days_elapsed(start, end, tz=tz, country=country) == pytest.approx(expected, abs=1e-12)


# --- earliest_time --------------------------------------------------------------------

EARLIEST = [
    # id, start, business days, tz, country, expected instant
    (
        "fri-1800-before-mlk-met-tue-1800",
        at(LA, 2024, 1, 12, 18),
        1,
        LA,
        "US",
        at(LA, 2024, 1, 16, 18),
    ),
    ("plain-weekday-one-day", at(LA, 2024, 1, 9, 10), 1, LA, "US", at(LA, 2024, 1, 10, 10)),
    ("saturday-start-counts-from-monday", at(LA, 2024, 1, 6, 10), 1, LA, "US", at(LA, 2024, 1, 9)),
    ("sunday-start-counts-from-monday", at(LA, 2024, 1, 7, 23), 0.5, LA, "US", at(LA, 2024, 1, 8, 12)),
    ("half-day-same-day", at(LA, 2024, 1, 9, 10), 0.5, LA, "US", at(LA, 2024, 1, 9, 22)),
    ("half-day-across-weekend", at(LA, 2024, 1, 19, 18), 0.5, LA, "US", at(LA, 2024, 1, 22, 6)),
    ("zero-days-is-start", at(LA, 2024, 1, 13, 9), 0, LA, "US", at(LA, 2024, 1, 13, 9)),
    ("negative-days-is-start", at(LA, 2024, 1, 9, 9), -1, LA, "US", at(LA, 2024, 1, 9, 9)),
    (
        # Ends exactly at the end of Friday: that local midnight, not Monday morning.
        "five-days-end-at-friday-midnight",
        at(LA, 2024, 1, 8),
        5,
        LA,
        "US",
        at(LA, 2024, 1, 13),
    ),
    (
        # Fri 10:00 PST + 1 business day = Mon 10:00 PDT, i.e. 17:00 UTC (not 18:00).
        "dst-la-same-wall-clock-after-spring-forward",
        at(LA, 2024, 3, 8, 10),
        1,
        LA,
        "US",
        utc(2024, 3, 11, 17),
    ),
    (
        "dst-berlin-over-easter-and-clock-change",
        at(BERLIN, 2024, 3, 28, 12),
        1,
        BERLIN,
        "DE",
        utc(2024, 4, 2, 10),
    ),
    ("christmas-gb", at(LONDON, 2024, 12, 24, 9), 1, LONDON, "GB", at(LONDON, 2024, 12, 27, 9)),
    (
        # Wed noon gives 0.5; the other half of 25 h Thursday is 12.5 h, so 12:30 local.
        "25-hour-day-pro-rata",
        at(CAIRO, 2024, 10, 30, 12),
        1,
        CAIRO,
        "EG",
        at(CAIRO, 2024, 10, 31, 12, 30),
    ),
    (
        # Passing the whole 25 h Thursday counts exactly one day: Wed 0.5 + Thu 1 + Sun 0.5.
        "whole-25-hour-day-counts-one",
        at(CAIRO, 2024, 10, 30, 12),
        2,
        CAIRO,
        "EG",
        at(CAIRO, 2024, 11, 3, 12),
    ),
]


@pytest.mark.parametrize(
    ("start", "days", "tz", "country", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in EARLIEST],
)
def test_earliest_time(start: datetime, days: float, tz: str, country: str, expected: datetime) -> None:
    got = earliest_time(start, days, tz=tz, country=country)
    assert got == expected
    assert got.tzinfo is UTC


AGREEMENT = [
    ("fri-evening-1", at(LA, 2024, 1, 12, 18), 1.0, LA, "US"),
    ("tue-morning-0.5", at(LA, 2024, 1, 9, 10, 17), 0.5, LA, "US"),
    ("odd-fraction", at(LA, 2024, 1, 9, 10, 17, 33), 1.37, LA, "US"),
    ("a-third", at(LA, 2024, 2, 1, 3), 1 / 3, LA, "US"),
    ("dst-week-la", at(LA, 2024, 3, 6, 23, 59), 3.3, LA, "US"),
    ("dst-easter-de", at(BERLIN, 2024, 3, 27, 7, 45), 2.75, BERLIN, "DE"),
    ("25-hour-day-eg", at(CAIRO, 2024, 10, 29, 1), 2.2, CAIRO, "EG"),
    ("thirty-days-over-christmas", at(LA, 2024, 12, 13, 16, 20), 30.0, LA, "US"),
]


@pytest.mark.parametrize(
    ("start", "days", "tz", "country"),
    [pytest.param(*row[1:], id=row[0]) for row in AGREEMENT],
)
def test_elapsed_at_earliest_is_required(start: datetime, days: float, tz: str, country: str) -> None:
    earliest = earliest_time(start, days, tz=tz, country=country)
    elapsed = business_days_elapsed(start, earliest, tz=tz, country=country)
    assert elapsed >= days
    assert elapsed == pytest.approx(days, abs=1e-9)
    # ...and it is the first such instant, to the microsecond.
    just_before = earliest - timedelta(microseconds=1)
    assert business_days_elapsed(start, just_before, tz=tz, country=country) < days


def test_thirty_business_days_is_quick() -> None:
    began = time.perf_counter()
    earliest_time(at(LA, 2024, 12, 13, 16), 30, tz=LA, country="US")
    assert time.perf_counter() - began < 2.0


# --- bad input ------------------------------------------------------------------------

NAIVE = datetime(2024, 1, 9, 10)
AWARE = at(LA, 2024, 1, 9, 10)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            lambda: business_days_elapsed(NAIVE, AWARE, tz=LA, country="US"), id="elapsed-naive-start"
        ),
        pytest.param(
            lambda: business_days_elapsed(AWARE, NAIVE, tz=LA, country="US"), id="elapsed-naive-end"
        ),
        pytest.param(lambda: earliest_time(NAIVE, 1, tz=LA, country="US"), id="earliest-naive-start"),
        pytest.param(lambda: earliest_time(NAIVE, 0, tz=LA, country="US"), id="earliest-naive-zero-days"),
        pytest.param(lambda: format_local(NAIVE, LA), id="format-naive"),
        pytest.param(lambda: earliest_time(AWARE, 1, tz="Mars/Olympus", country="US"), id="unknown-tz"),
        pytest.param(lambda: business_days_elapsed(AWARE, AWARE, tz=LA, country="XX"), id="unknown-country"),
        pytest.param(lambda: earliest_time(AWARE, float("nan"), tz=LA, country="US"), id="nan-days"),
        pytest.param(lambda: earliest_time(AWARE, float("inf"), tz=LA, country="US"), id="infinite-days"),
    ],
)
def test_bad_input_raises_value_error(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


# --- formatting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dt", "tz", "expected"),
    [
        pytest.param(utc(2024, 1, 17, 2), LA, "Tue 16 Jan 18:00 PST", id="utc-shown-in-la"),
        pytest.param(utc(2024, 4, 2, 10), BERLIN, "Tue 2 Apr 12:00 CEST", id="summer-time-berlin"),
        pytest.param(at(BERLIN, 2024, 3, 12, 10, 5), LA, "Tue 12 Mar 02:05 PDT", id="other-zone-input"),
    ],
)
def test_format_local(dt: datetime, tz: str, expected: str) -> None:
    assert format_local(dt, tz) == expected


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        pytest.param(1, "1 business day", id="singular"),
        pytest.param(2, "2 business days", id="plural"),
        pytest.param(0.5, "0.5 business days", id="fraction"),
        pytest.param(0.29, "0.29 business days", id="float-noise-not-floored-away"),
        pytest.param(0.999, "0.99 business days", id="never-rounds-up-to-done"),
    ],
)
def test_format_business_days(days: float, expected: str) -> None:
    assert format_business_days(days) == expected


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        pytest.param(0.0, "0 h", id="nothing"),
        pytest.param(0.25, "6 h", id="quarter-day-is-6-h"),
        pytest.param(0.3125, "7.5 h", id="half-hours"),
        pytest.param(0.99999, "23.9 h", id="never-rounds-up-to-a-day"),
        pytest.param(1.0, "1 business day", id="one-day"),
        pytest.param(1.25, "1.25 business days", id="days-from-one-on"),
    ],
)
def test_format_elapsed(days: float, expected: str) -> None:
    assert format_elapsed(days) == expected
