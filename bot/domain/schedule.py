"""When a rollout's due work falls: digests, the ready and overdue reminders, the stale nudge
and the trigger watch. Pure arithmetic over a rollout's state and its calendar; the rows are
written by `bot.usecases.schedule` and run by `bot.delivery.jobs`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.calendar import earliest_time, is_business_day
from storage.enums import RolloutStatus
from storage.models import Rollout, Step

STALE_BUSINESS_DAYS = 3


OVERDUE_GRACE_DAYS = 1  # a step without a planned end is overdue one business day after its soak


WATCH_MINUTES = 10  # the first watch after a change; later ones follow settings.watch_minutes
FLAG_RETRY = timedelta(minutes=1)  # how soon a failed rollback's flag write is tried again


CADENCES = ("off", "daily", "weekly")
DIGEST_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


_SEARCH_DAYS = 400  # a digest day is always found well within a year


class Kind(StrEnum):
    DIGEST = "digest"
    READY = "ready"
    OVERDUE = "overdue"
    STALE = "stale"
    WATCH = "watch"
    FLAG_SYNC = "flag_sync"  # a flag write a rollback still owes, retried until it lands
    REFRESH = "refresh"  # a status-message edit Slack refused, retried until it lands
    AUTO = "auto"  # auto-advance: the step's next look (bot/delivery/autopilot.py)
    CHART = "chart"  # a digest's progress chart, drawn and posted after it (bot/delivery/charts.py)


# Written where they arise (a refused edit), not planned from the rollout's state: a change to
# the rollout leaves them be.
UNPLANNED = frozenset({Kind.REFRESH, Kind.CHART})
REFRESH_FIRST_RETRY = timedelta(seconds=2)
REFRESH_MAX_RETRY = timedelta(minutes=5)
# A digest's chart: drawn apart from the due-work tick (matplotlib takes a tenth of a second
# or more), after its digest's text is out (waiting at most CHART_TEXT_WAIT for it), retried
# when Slack refuses the upload, given up after CHART_ATTEMPTS tries.
CHART_FIRST_RETRY = timedelta(seconds=30)
CHART_MAX_RETRY = timedelta(minutes=30)
CHART_ATTEMPTS = 6
CHART_TEXT_WAIT = timedelta(minutes=10)
CHART_TEXT_RECHECK = timedelta(seconds=5)


def refresh_retry(attempt: int) -> timedelta:
    """2 s, 4 s, 8 s … up to 5 min between tries of a refused status-message edit."""
    return min(REFRESH_FIRST_RETRY * (1 << min(attempt, 20)), REFRESH_MAX_RETRY)


def chart_retry(attempt: int) -> timedelta:
    """30 s, 1 min, 2 min … up to 30 min between tries of a chart Slack would not take."""
    return min(CHART_FIRST_RETRY * (1 << min(attempt, 20)), CHART_MAX_RETRY)


@dataclass(frozen=True)
class Due:
    """When a row is due, and what it was planned from (`data`, kept in the row)."""

    at: datetime
    data: dict[str, Any]


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _is_digest_day(day: date, cadence: str, tz: str, country: str) -> bool:
    if not is_business_day(day, country):
        return False
    if cadence == "daily":
        return True
    # Weekly: Monday, or the first business day after it when Monday is a holiday.
    monday = day - timedelta(days=day.weekday())
    return not any(is_business_day(monday + timedelta(days=i), country) for i in range(day.weekday()))


def next_digest(rollout: Rollout, now: datetime) -> datetime | None:
    """The first digest time after `now`: digest_time on the wall clock of the rollout's time
    zone (so the UTC instant moves with daylight saving), on a digest day of its country."""
    if rollout.digest not in ("daily", "weekly"):
        return None
    zone = ZoneInfo(rollout.timezone)
    hour, minute = (int(p) for p in rollout.digest_time.split(":"))
    day = now.astimezone(zone).date()
    for _ in range(_SEARCH_DAYS):
        if _is_digest_day(day, rollout.digest, rollout.timezone, rollout.country):
            at = datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)
            if at > now:
                return at
        day += timedelta(days=1)
    raise ValueError(f"no digest day within {_SEARCH_DAYS} days for {rollout.timezone}/{rollout.country}")


def planned_end(rollout: Rollout) -> datetime:
    return step_end(
        rollout.current_step, rollout.step_started_at, tz=rollout.timezone, country=rollout.country
    )


def step_end(step: Step, started: datetime, *, tz: str, country: str) -> datetime:
    """When a step started at `started` is overdue: its planned end, else one business day
    after its soak. Given the step alone, so a job that has not loaded the plan can ask."""
    if step.planned_end is not None:
        return step.planned_end
    return earliest_time(started, step.min_business_days + OVERDUE_GRACE_DAYS, tz=tz, country=country)


def planned_digest(rollout: Rollout, now: datetime) -> Due | None:
    """The digest row of an open rollout, as `planned` has it; from the rollout's own columns
    (no plan), so the digest job can plan its next run without loading the plan."""
    digest_at = next_digest(rollout, now)
    if digest_at is None:
        return None
    tz, country = rollout.timezone, rollout.country
    settings = {"cadence": rollout.digest, "time": rollout.digest_time, "tz": tz, "country": country}
    return Due(digest_at, {**settings, "at": iso_utc(digest_at)})


def planned(rollout: Rollout, now: datetime, *, watch_minutes: int = WATCH_MINUTES) -> dict[str, Due]:
    """Every row the rollout should have, by kind. Finished: none, but a flag write still owed.
    Paused: digest, stale, and the watch of a flag the bot runs. Active: all of them; with
    auto-advance on, the `auto` row instead of the "ready to advance" reminder."""
    out: dict[str, Due] = {}
    if rollout.flag_pending is not None:
        out[Kind.FLAG_SYNC] = Due(now + FLAG_RETRY, {"to": rollout.flag_pending})
    if not rollout.status.is_open:
        return out
    tz, country = rollout.timezone, rollout.country
    if (digest := planned_digest(rollout, now)) is not None:
        out[Kind.DIGEST] = digest
    stale_at = earliest_time(rollout.updated_at, STALE_BUSINESS_DAYS, tz=tz, country=country)
    out[Kind.STALE] = Due(stale_at, {"updated_at": iso_utc(rollout.updated_at), "at": iso_utc(stale_at)})
    if rollout.status is RolloutStatus.ACTIVE:
        started, soak = rollout.step_started_at, rollout.current_step.min_business_days
        where = {"phase": rollout.phase_index, "step": rollout.step_index, "started": iso_utc(started)}
        ready_at = earliest_time(started, soak, tz=tz, country=country)
        if not rollout.auto_advance:  # with auto-advance the tick moves it, or asks at a checkpoint
            out[Kind.READY] = Due(ready_at, {**where, "at": iso_utc(ready_at)})
        end = planned_end(rollout)
        out[Kind.OVERDUE] = Due(end, {**where, "at": iso_utc(end)})
        if rollout.auto_advance:  # first looked at when the soak is met
            out[Kind.AUTO] = Due(ready_at, {**where, "at": iso_utc(ready_at)})
    # The watch reads the rollback triggers of an active rollout, and the flag of any open
    # rollout whose flag the bot runs (`flag_seen_at`: read when it started).
    flag_runs = bool(rollout.flag_key) and rollout.flag_seen_at is not None
    if (rollout.status is RolloutStatus.ACTIVE and rollout.triggers) or flag_runs:
        out[Kind.WATCH] = Due(now + timedelta(minutes=watch_minutes), {})
    return out


def planned_inputs(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """What a row was planned from. A digest's "at" moves on as digests go out, so only its
    settings count; the other kinds' times follow from their inputs. Why an auto row waits, and
    when it looks next, are what it found, not what it was planned from."""
    if kind == Kind.AUTO:
        return {k: v for k, v in data.items() if k not in ("at", "why", "next")}
    return {k: v for k, v in data.items() if k != "at"} if kind == Kind.DIGEST else data


def describe_digest(rollout: Rollout) -> str:
    """E.g. "every business day at 09:00 America/Los_Angeles", "weekly on Monday at 09:30
    Europe/Berlin", "off"."""
    if rollout.digest == "daily":
        return f"every business day at {rollout.digest_time} {rollout.timezone}"
    if rollout.digest == "weekly":
        return f"weekly on Monday at {rollout.digest_time} {rollout.timezone}"
    return "off"
