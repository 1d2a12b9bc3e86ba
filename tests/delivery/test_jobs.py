"""Due work (bot/jobs.py) on SQLite and Postgres: digests, reminders, the trigger watch, and the
tick that claims them. Time is a settable clock: a test moves it and runs the tick, as the
scheduler would, then delivers the outbox to a local Slack stand-in and reads what was posted."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, insert, select, text, update

from bot.delivery import jobs, status_board
from bot.delivery.scheduler import drain_outbox
from bot.devtools.local_slack import LocalSlack
from bot.domain import schedule as due_times
from bot.domain.plans.model import Metric, Phase, Plan, Rule, Step
from bot.domain.rollouts import event as make_event
from bot.domain.rollouts import new_rollout
from bot.errors import NotAllowed
from bot.ids import Action
from bot.metrics import StaticMetricsSource
from bot.services import Actor, Services
from bot.usecases import controls, measure, schedule
from storage.db import Database
from storage.enums import EventKind, RolloutStatus, SnapshotKind
from storage.models import DueJob, Event, MetricSnapshot, OutboxMessage, Rollout
from storage.models import Step as StepRow
from tests.support import Clock, body, make_services

TEAM = "T111"
OWNER = "WOWNER0001"
STAKE = "CSTAKE0001"
LA = "America/Los_Angeles"

PLAN = Plan(
    name="test",
    title="Test plan",
    phases=(Phase("Gradual Rollout", steps=(Step(25, 1000, 1), Step(50, None, 1), Step(100, None, 1))),),
    metrics=(
        Metric("error_rate", "Error rate", "errors{service:{service}}", Rule.UPPER, threshold=1.0, unit="%"),
    ),
    triggers=(
        Metric(
            "error_spike", "Error spike", "spike{service:{service}}", Rule.ABSOLUTE, threshold=0.5, unit="%"
        ),
    ),
)
QUIET = {"error_rate": 0.5, "error_spike": 0.2}  # green against a baseline of QUIET
RED = {"error_rate": 2.0, "error_spike": 0.2}  # error rate above its upper bound
FIRING = {"error_rate": 0.5, "error_spike": 0.9}  # +0.7 pp over the baseline: the trigger fires


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)  # type: ignore[misc]


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    """A Slack of this test's own, so its calls are only this test's."""
    with LocalSlack() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(local(LA, 2024, 3, 11, 10, 0))  # Monday


@pytest.fixture
def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


def services(
    db: Database, slack: LocalSlack, clock: Clock, values: dict[str, float] | None = None
) -> Services:
    return make_services(db, slack, clock, StaticMetricsSource(values if values is not None else QUIET))


@pytest.fixture
def svc(db: Database, slack: LocalSlack, clock: Clock) -> Services:
    return services(db, slack, clock)


def start(
    svc: Services,
    channel: str,
    *,
    feature: str = "checkout-v2",
    tz: str = LA,
    watch_pauses: bool = True,
    baseline: bool = True,
) -> int:
    """A rollout of PLAN, started as flows.start does (event, due work in the same
    transaction), with its status message posted and, unless told otherwise, a baseline."""
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = new_rollout(
            PLAN,
            team_id=TEAM,
            channel_id=channel,
            feature=feature,
            owner_id=OWNER,
            created_by=OWNER,
            flag_key=None,
            service=None,
            stakeholders=[STAKE],
            timezone=tz,
            country="US",
            now=now,
        )
        rollout.watch_pauses = watch_pauses
        session.add(rollout)
        session.flush()
        session.add(make_event(rollout, EventKind.STARTED, OWNER, now))
        schedule.reschedule(session, rollout, now)
        rollout_id = rollout.id
    status_board.post(svc, rollout_id)
    if baseline:
        measure.capture_baseline(svc, rollout_id)
    return rollout_id


def actor(channel: str, user: str = OWNER) -> Actor:
    return Actor(team_id=TEAM, user_id=user, channel_id=channel)


def tick(svc: Services, clock: Clock, at: datetime) -> int:
    """The scheduler's two jobs at `at`: due work, then the outbox."""
    clock.now = at
    ran = jobs.run_due(svc)
    drain_outbox(svc)
    return ran


def due(svc: Services, rollout_id: int) -> dict[str, datetime]:
    with svc.db.reading() as session:
        rows = session.scalars(select(DueJob).where(DueJob.rollout_id == rollout_id)).all()
        return {r.kind: r.due_at for r in rows}


def posts(slack: LocalSlack, channel: str, milestone: str = "") -> list[dict[str, Any]]:
    """chat.postMessage calls to `channel` whose outbox key holds `milestone`."""
    out = []
    for call in slack.calls("chat.postMessage"):
        key = ((call.params.get("metadata") or {}).get("event_payload") or {}).get("key", "")
        if call.params.get("channel") == channel and key and milestone in key:
            out.append(call.params)
    return out


def events(svc: Services, rollout_id: int, *kinds: EventKind) -> list[Event]:
    with svc.db.reading() as session:
        rows = session.scalars(select(Event).where(Event.rollout_id == rollout_id).order_by(Event.id)).all()
        return [e for e in rows if not kinds or e.kind in kinds]


def rollout_row(svc: Services, rollout_id: int) -> Rollout:
    with svc.db.reading() as session:
        return session.get_one(Rollout, rollout_id)


def buttons(params: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["action_id"], e.get("value", ""))
        for b in params.get("blocks") or []
        if b.get("type") == "actions"
        for e in b.get("elements", [])
    ]


# --- the digest ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("started", "first", "second"),
    [
        # Spring forward on Sun 10 Mar 2024: 09:00 is 17:00 UTC on Friday, 16:00 UTC on Monday.
        (local(LA, 2024, 3, 7, 10, 0), utc(2024, 3, 8, 17, 0), utc(2024, 3, 11, 16, 0)),
        # Fall back on Sun 3 Nov 2024: 09:00 is 16:00 UTC on Friday, 17:00 UTC on Monday.
        (local(LA, 2024, 10, 31, 10, 0), utc(2024, 11, 1, 16, 0), utc(2024, 11, 4, 17, 0)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_daily_digest_goes_out_at_nine_local_on_business_days_across_dst(
    svc: Services,
    clock: Clock,
    slack: LocalSlack,
    channel: str,
    started: datetime,
    first: datetime,
    second: datetime,
) -> None:
    clock.now = started
    rollout_id = start(svc, channel)
    assert due(svc, rollout_id)["digest"] == first

    tick(svc, clock, first - timedelta(minutes=1))
    assert posts(slack, channel, "digest") == []

    tick(svc, clock, first)
    day1 = f"digest:{first.astimezone(ZoneInfo(LA)).date().isoformat()}"
    [thread] = posts(slack, channel, day1)
    assert thread["thread_ts"] == slack.messages(channel)[0]["ts"]  # in the status thread
    assert "Daily digest: checkout-v2" in body(thread) and "started the rollout" in body(thread)
    [line] = posts(slack, STAKE, day1)
    permalink = (
        f"https://example.slack.com/archives/{channel}/p{slack.messages(channel)[0]['ts'].replace('.', '')}"
    )
    assert f"Details: <{permalink}|status thread>" in body(line)

    # Saturday and Sunday are skipped; Monday is 09:00 on the new side of the change.
    assert due(svc, rollout_id)["digest"] == second
    assert abs((second - first) - timedelta(days=3)) == timedelta(hours=1)
    assert first.astimezone(ZoneInfo(LA)).hour == second.astimezone(ZoneInfo(LA)).hour == 9

    tick(svc, clock, first + timedelta(hours=6))
    tick(svc, clock, second - timedelta(seconds=1))
    assert len(posts(slack, channel, "digest")) == 1

    # Nothing happened since Friday's digest: Monday's is not sent at all, and the next is due.
    tick(svc, clock, second)
    assert posts(slack, channel, "digest") != [] and len(posts(slack, channel, "digest")) == 1
    assert posts(slack, STAKE, f"digest:{second.astimezone(ZoneInfo(LA)).date().isoformat()}") == []
    assert due(svc, rollout_id)["digest"] == second + timedelta(days=1)


def test_a_replayed_digest_tick_never_posts_twice(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    clock.now = local(LA, 2024, 3, 7, 10, 0)
    rollout_id = start(svc, channel)
    friday = utc(2024, 3, 8, 17, 0)
    tick(svc, clock, friday)
    # The run's result was lost (say the process died before recording it): the row is due again.
    with svc.db.transaction() as session:
        session.execute(
            update(DueJob)
            .where(DueJob.rollout_id == rollout_id, DueJob.kind == "digest")
            .values(due_at=friday)
        )
    assert tick(svc, clock, friday + timedelta(minutes=1)) >= 1
    assert len(posts(slack, channel, "digest:2024-03-08")) == 1
    assert len(posts(slack, STAKE, "digest:2024-03-08")) == 1


def test_a_change_between_digest_time_and_the_tick_does_not_skip_the_digest(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    clock.now = local(LA, 2024, 3, 7, 10, 0)
    rollout_id = start(svc, channel)
    friday = utc(2024, 3, 8, 17, 0)
    clock.now = friday + timedelta(seconds=10)  # 09:00:10, the tick comes at 09:00:30
    controls.pause(svc, actor(channel), rollout_id, "lunch")
    assert due(svc, rollout_id)["digest"] == friday
    tick(svc, clock, friday + timedelta(seconds=30))
    assert len(posts(slack, channel, "digest:2024-03-08")) == 1


def test_digest_tells_what_happened_since_the_last_one(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    clock.now = local(LA, 2024, 3, 7, 10, 0)
    rollout_id = start(svc, channel)
    tick(svc, clock, utc(2024, 3, 8, 17, 0))
    clock.now = utc(2024, 3, 8, 20, 0)
    controls.pause(svc, actor(channel), rollout_id, "waiting for <!channel> sign-off & QA")
    clock.now = utc(2024, 3, 11, 15, 0)
    controls.resume(svc, actor(channel), rollout_id)

    tick(svc, clock, utc(2024, 3, 11, 16, 0))
    [monday] = posts(slack, channel, "digest:2024-03-11")
    said = body(monday)
    assert f"<@{OWNER}> paused it. Reason: waiting for &lt;!channel&gt; sign-off &amp; QA" in said
    assert f"<@{OWNER}> resumed it" in said
    assert "started the rollout" not in said  # told in Friday's digest
    assert "Gradual Rollout, step 25% (1,000 users)" in said
    assert "*Soak:* 25% has soaked its 1 business day" in said


def test_digest_skips_a_us_holiday_and_weekly_goes_out_on_monday(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    clock.now = local(LA, 2024, 5, 24, 10, 0)  # Friday before Memorial Day (Mon 27 May)
    rollout_id = start(svc, channel)
    assert due(svc, rollout_id)["digest"] == local(LA, 2024, 5, 28, 9, 0)
    rollout = schedule.set_digest(svc, actor(channel), rollout_id, "weekly", None)
    assert due_times.describe_digest(rollout) == f"weekly on Monday at 09:00 {LA}"
    assert due(svc, rollout_id)["digest"] == local(LA, 2024, 5, 28, 9, 0)  # Monday's holiday: Tuesday

    clock.now = local("Europe/Berlin", 2024, 3, 13, 12, 0)  # a Wednesday
    berlin = start(svc, channel + "B", feature="search-v3", tz="Europe/Berlin")
    rollout = schedule.set_digest(svc, actor(channel + "B"), berlin, "weekly", "9:30")
    assert due_times.describe_digest(rollout) == "weekly on Monday at 09:30 Europe/Berlin"
    monday = local("Europe/Berlin", 2024, 3, 18, 9, 30)
    assert due(svc, berlin)["digest"] == monday

    tick(svc, clock, monday - timedelta(minutes=1))
    assert posts(slack, channel + "B", "digest") == []
    tick(svc, clock, monday)
    [weekly] = posts(slack, channel + "B", "digest:2024-03-18")
    assert "Weekly digest: search-v3" in body(weekly)
    assert due(svc, berlin)["digest"] == local("Europe/Berlin", 2024, 3, 25, 9, 30)


def test_set_digest_off_removes_it_and_is_for_owners_only(svc: Services, clock: Clock, channel: str) -> None:
    rollout_id = start(svc, channel)
    assert due_times.describe_digest(rollout_row(svc, rollout_id)) == f"every business day at 09:00 {LA}"
    with pytest.raises(NotAllowed):
        schedule.set_digest(svc, actor(channel, "WSTRANGER1"), rollout_id, "off", None)
    assert "digest" in due(svc, rollout_id)

    rollout = schedule.set_digest(svc, actor(channel), rollout_id, "off", None)
    assert due_times.describe_digest(rollout) == "off"
    assert "digest" not in due(svc, rollout_id)
    [changed] = events(svc, rollout_id, EventKind.DIGEST_CHANGED)
    assert changed.actor_id == OWNER and changed.data["cadence"] == "off"

    schedule.set_digest(svc, actor(channel), rollout_id, "daily", "07:15")
    assert due(svc, rollout_id)["digest"] == local(LA, 2024, 3, 12, 7, 15)


def test_a_change_made_while_a_job_runs_wins_over_the_jobs_next_time(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.now = local(LA, 2024, 3, 7, 10, 0)
    rollout_id = start(svc, channel)
    digest = jobs.JOBS["digest"]

    def digest_while_the_owner_moves_it(svc: Services, job: jobs.Claimed) -> due_times.Due | None:
        nxt = digest(svc, job)  # planned from the rollout as the job read it: 09:00
        schedule.set_digest(svc, actor(channel), rollout_id, "daily", "07:15")
        return nxt

    monkeypatch.setitem(jobs.JOBS, "digest", digest_while_the_owner_moves_it)
    tick(svc, clock, utc(2024, 3, 8, 17, 0))
    assert len(posts(slack, channel, "digest:2024-03-08")) == 1
    assert due(svc, rollout_id)["digest"] == local(LA, 2024, 3, 11, 7, 15)


def test_rows_follow_the_rollout_state(svc: Services, clock: Clock, channel: str) -> None:
    rollout_id = start(svc, channel)
    started = clock.now
    assert due(svc, rollout_id) == {
        "digest": local(LA, 2024, 3, 12, 9, 0),
        "ready": local(LA, 2024, 3, 12, 10, 0),  # 1 business day of soak
        "overdue": local(LA, 2024, 3, 13, 10, 0),  # soak + 1 business day of grace
        "stale": local(LA, 2024, 3, 14, 10, 0),  # 3 business days without activity
        "watch": started + timedelta(minutes=10),
    }
    for _ in range(2):
        controls.pause(svc, actor(channel), rollout_id, "")
        assert set(due(svc, rollout_id)) == {"digest", "stale"}
        controls.resume(svc, actor(channel), rollout_id)
    with svc.db.reading() as session:
        kinds = session.scalars(select(DueJob.kind).where(DueJob.rollout_id == rollout_id)).all()
    assert sorted(kinds) == ["digest", "overdue", "ready", "stale", "watch"]  # one row per kind
    controls.roll_back(svc, actor(channel), rollout_id, "enough")
    assert due(svc, rollout_id) == {}


# --- reminders -------------------------------------------------------------------------------


def test_ready_reminder_only_when_green_with_an_advance_button(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel)
    svc.metrics = StaticMetricsSource(RED)
    soaked = local(LA, 2024, 3, 12, 10, 0)

    tick(svc, clock, soaked - timedelta(minutes=1))
    with svc.db.reading() as session:
        assert (
            session.scalars(select(MetricSnapshot).where(MetricSnapshot.kind == SnapshotKind.CHECK)).all()
            == []
        )

    tick(svc, clock, soaked)  # soak met, gate closed: no reminder, look again in an hour
    with svc.db.reading() as session:
        [check] = session.scalars(
            select(MetricSnapshot).where(MetricSnapshot.kind == SnapshotKind.CHECK)
        ).all()
    assert check.passed is False
    assert posts(slack, channel, "ready") == []
    assert due(svc, rollout_id)["ready"] == soaked + timedelta(hours=1)

    svc.metrics = StaticMetricsSource(QUIET)
    tick(svc, clock, soaked + timedelta(minutes=30))
    assert posts(slack, channel, "ready") == []
    tick(svc, clock, soaked + timedelta(hours=1))
    [reminder] = posts(slack, channel, "ready:0:0")
    assert body(reminder).startswith(
        f":bell: *checkout-v2* is ready to advance from 25%: soak met, gate passed. <@{OWNER}>"
    )
    assert reminder["thread_ts"] == slack.messages(channel)[0]["ts"]
    assert buttons(reminder) == [(Action.ADVANCE.value, f"{rollout_id}:0:0")]  # the step it is for
    assert "ready" not in due(svc, rollout_id)

    # Later ticks, and a change that plans the reminder again, do not repeat it.
    tick(svc, clock, soaked + timedelta(hours=3))
    schedule.set_digest(svc, actor(channel), rollout_id, "daily", "08:00")
    tick(svc, clock, soaked + timedelta(hours=4))
    assert len(posts(slack, channel, "ready")) == 1


def test_overdue_reminder_once_per_step_at_the_planned_end(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    start(svc, channel)
    svc.metrics = StaticMetricsSource(RED)
    end = local(LA, 2024, 3, 13, 10, 0)
    tick(svc, clock, end - timedelta(minutes=1))
    assert posts(slack, channel, "overdue") == []
    tick(svc, clock, end)
    [overdue] = posts(slack, channel, "overdue:0:0")
    assert body(overdue) == (
        ":alarm_clock: *checkout-v2* is past the planned end of 25% "
        "(<!date^1710349200^{date_short_pretty} {time}|Wed 13 Mar 10:00 PDT>). "
        f"<@{OWNER}>, "
        "advance it when the gate allows, or post an update saying why it waits."
    )
    tick(svc, clock, end + timedelta(days=1))
    assert len(posts(slack, channel, "overdue")) == 1


def test_a_step_with_a_planned_end_is_overdue_then(svc: Services, clock: Clock, channel: str) -> None:
    rollout_id = start(svc, channel)
    planned = utc(2024, 3, 11, 23, 0)
    with svc.db.transaction() as session:
        rollout = session.get_one(Rollout, rollout_id)
        session.execute(
            update(StepRow).where(StepRow.id == rollout.current_step.id).values(planned_end=planned)
        )
        session.expire_all()
        schedule.reschedule(session, session.get_one(Rollout, rollout_id), clock.now)
    assert due(svc, rollout_id)["overdue"] == planned


def test_stale_reminder_once_per_quiet_spell(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel)
    svc.metrics = StaticMetricsSource(RED)
    clock.now = local(LA, 2024, 3, 12, 11, 0)
    controls.pause(svc, actor(channel), rollout_id, "")  # activity: the quiet spell starts here
    quiet = local(LA, 2024, 3, 15, 11, 0)
    assert due(svc, rollout_id)["stale"] == quiet

    tick(svc, clock, quiet - timedelta(minutes=1))
    assert posts(slack, channel, "stale") == []
    tick(svc, clock, quiet)
    [stale] = posts(slack, channel, "stale")
    assert "*checkout-v2* has had no activity for 3 business days" in body(stale)
    assert "it is paused at 25%" in body(stale)
    tick(svc, clock, quiet + timedelta(days=7))
    assert len(posts(slack, channel, "stale")) == 1


def test_stale_waits_again_after_activity_it_was_not_told_of(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel)
    svc.metrics = StaticMetricsSource(RED)
    touched = local(LA, 2024, 3, 13, 12, 0)
    with svc.db.transaction() as session:  # a change that does not reschedule (a checklist tick)
        session.get_one(Rollout, rollout_id).touch(touched)
    tick(svc, clock, local(LA, 2024, 3, 14, 10, 0))
    assert posts(slack, channel, "stale") == []
    assert due(svc, rollout_id)["stale"] == local(LA, 2024, 3, 18, 12, 0)
    tick(svc, clock, local(LA, 2024, 3, 18, 12, 0))
    assert len(posts(slack, channel, "stale")) == 1


# --- the trigger watch -----------------------------------------------------------------------


def test_a_fired_trigger_pauses_the_rollout_and_alerts(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel)
    tick(svc, clock, clock.now + timedelta(minutes=10))
    assert rollout_row(svc, rollout_id).status is RolloutStatus.ACTIVE  # quiet: nothing fired

    svc.metrics = StaticMetricsSource(FIRING)
    tick(svc, clock, clock.now + timedelta(minutes=10))
    assert rollout_row(svc, rollout_id).status is RolloutStatus.PAUSED
    [fired] = events(svc, rollout_id, EventKind.TRIGGER_FIRED)
    assert fired.actor_id is None
    assert fired.data["trigger"] == "error_spike" and fired.data["value"] == pytest.approx(0.9)
    assert fired.data["rule"] == "fires when error spike rises more than 0.5 pp (absolute)"
    [paused] = events(svc, rollout_id, EventKind.PAUSED)
    assert paused.actor_id is None and paused.data["reason"].startswith("rollback trigger fired: Error spike")
    assert set(due(svc, rollout_id)) == {"digest", "stale"}

    # One alert: in the status thread, broadcast to the channel, with what to do about it.
    [alert] = posts(slack, channel, "trigger:error_spike:0:0")
    assert alert["thread_ts"] == slack.messages(channel)[0]["ts"] and alert["reply_broadcast"] is True
    assert alert["text"] == "Rollback trigger fired: Error spike on checkout-v2, paused"
    shown = alert["blocks"][0]["text"]["text"]
    assert shown.startswith(":rotating_light: Rollback trigger fired on *checkout-v2* at 25%")
    assert "I paused the rollout" in shown and shown.endswith(f"<@{OWNER}>")
    assert [a for a, _ in buttons(alert)] == ["resume", "rollback", "open_datadog:0"]
    # The thread hears of the pause from the alert only; the stakeholders get the pause, with its cause.
    assert posts(slack, channel, "paused") == []
    [line] = posts(slack, STAKE, "paused")
    shown = line["blocks"][0]["text"]["text"]
    assert "paused at 25% (1,000 users) by Rollout Bot. Why: rollback trigger fired: Error spike" in shown
    assert line["text"].startswith("Paused: checkout-v2 at 25%: rollback trigger fired: Error spike")
    status = slack.message(channel, slack.messages(channel)[0]["ts"])
    assert "Paused" in str(status["blocks"])  # refreshed after the commit

    tick(svc, clock, local(LA, 2024, 3, 12, 9, 0))
    [digest] = posts(slack, channel, "digest:2024-03-12")
    assert (
        "*Gate:* :no_entry: closed when last checked (<!date^1710177600^{date_short_pretty} {time}|Mon 11 Mar "
        "10:20 PDT>):\n• Rollback trigger Error spike fired" in body(digest)
    )
    assert "Rollout Bot paused it. Reason: rollback trigger fired: Error spike" in body(digest)


def test_a_trigger_only_alerts_when_the_rollout_does_not_pause_on_it(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel, watch_pauses=False)
    svc.metrics = StaticMetricsSource(FIRING)
    tick(svc, clock, clock.now + timedelta(minutes=10))
    tick(svc, clock, clock.now + timedelta(minutes=10))  # still firing: told once per step
    assert rollout_row(svc, rollout_id).status is RolloutStatus.ACTIVE
    assert len(events(svc, rollout_id, EventKind.TRIGGER_FIRED)) == 1
    assert events(svc, rollout_id, EventKind.PAUSED) == []
    [alert] = posts(slack, channel, "trigger:error_spike")
    assert alert["reply_broadcast"] is True and "keeps running" in alert["blocks"][0]["text"]["text"]
    assert [a for a, _ in buttons(alert)] == ["rollback", "open_datadog:0"]
    assert "watch" in due(svc, rollout_id)


# --- the tick --------------------------------------------------------------------------------


def bulk_rollouts(db: Database, count: int, now: datetime) -> list[int]:
    """Bare rollout rows for tests of the tick alone (the jobs there are stand-ins)."""
    tag = uuid.uuid4().hex[:6]
    rows = [
        {
            "team_id": TEAM,
            "channel_id": "CBULK",
            "feature": f"f{tag}{i}",
            "feature_key": f"f{tag}{i}",
            "template": "test",
            "plan_title": "Test plan",
            "owner_id": OWNER,
            "created_by": OWNER,
            "timezone": LA,
            "country": "US",
            "step_started_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    with db.transaction() as session:
        session.execute(insert(Rollout), rows)
        return list(
            session.scalars(select(Rollout.id).where(Rollout.feature.like(f"f{tag}%")).order_by(Rollout.id))
        )


def test_ten_thousand_rows_the_tick_runs_only_the_due_ones_through_the_index(
    db: Database, svc: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = bulk_rollouts(db, 10_000, clock.now)
    due_ids = set(ids[1000:10_000:2000])
    with db.transaction() as session:
        session.execute(
            insert(DueJob),
            [
                {
                    "rollout_id": i,
                    "kind": "digest",
                    "data": {},
                    "due_at": clock.now - timedelta(minutes=1)
                    if i in due_ids
                    else clock.now + timedelta(hours=1 + i % 50),
                }
                for i in ids
            ],
        )
        if db.dialect == "postgresql":
            session.execute(text("ANALYZE due_job"))
    ran: list[int] = []
    monkeypatch.setitem(
        jobs.JOBS,
        "digest",
        lambda _svc, job: ran.append(job.rollout_id) or due_times.Due(job.now + timedelta(days=1), {}),
    )
    statements: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM due_job" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        assert jobs.run_due(svc) == 5
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert sorted(ran) == sorted(due_ids)
    assert jobs.run_due(svc) == 0 and len(ran) == 5

    [(statement, parameters)] = statements
    with db.engine.connect() as conn:
        explain = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
        plan = " ".join(str(row) for row in conn.exec_driver_sql(explain + statement, parameters))
    assert "ix_due_job_due_at" in plan, plan


def test_two_ticks_at_once_run_each_due_job_once(
    db: Database, slack: LocalSlack, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas, each with its own engine, tick at the same moment. The claim's select is
    slowed down so that, without row locks, both would pick the same rows."""
    ids = bulk_rollouts(db, 30, clock.now)
    with db.transaction() as session:
        session.execute(
            insert(DueJob),
            [{"rollout_id": i, "kind": "digest", "data": {}, "due_at": clock.now} for i in ids],
        )
    ran: Counter[int] = Counter()
    lock = threading.Lock()

    def job(_svc: Services, claimed: jobs.Claimed) -> due_times.Due:
        with lock:
            ran[claimed.rollout_id] += 1
        return due_times.Due(claimed.now + timedelta(days=1), {})

    monkeypatch.setitem(jobs.JOBS, "digest", job)

    def slow_claim(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM due_job" in statement:
            time.sleep(0.3)

    replicas = [services(Database(db.url), slack, clock) for _ in range(2)]
    for replica in replicas:
        event.listen(replica.db.engine, "after_cursor_execute", slow_claim)
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def run(replica: Services) -> None:
        barrier.wait()
        counts.append(jobs.run_due(replica))

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for replica in replicas:
        replica.db.dispose()
    assert sum(counts) == 30
    assert set(ran) == set(ids) and set(ran.values()) == {1}


def test_a_job_that_fails_for_one_rollout_does_not_stop_the_others(
    svc: Services, clock: Clock, slack: LocalSlack, caplog: pytest.LogCaptureFixture
) -> None:
    clock.now = local(LA, 2024, 3, 7, 10, 0)
    channels = ["CGOOD00001", "CBAD000001", "CGOOD00002"]
    ids = [start(svc, c, feature=f"feature-{n}", baseline=False) for n, c in enumerate(channels)]
    with svc.db.transaction() as session:  # a row that cannot be read back sensibly
        session.execute(update(Rollout).where(Rollout.id == ids[1]).values(timezone="Mars/Olympus_Mons"))
    friday = utc(2024, 3, 8, 17, 0)
    with caplog.at_level(logging.ERROR, logger="bot.delivery.jobs"):
        tick(svc, clock, friday)
    assert len(posts(slack, channels[0], "digest")) == 1
    assert len(posts(slack, channels[2], "digest")) == 1
    assert posts(slack, channels[1], "digest") == []
    [failure] = [r for r in caplog.records if r.exc_info]
    assert f"digest job of rollout {ids[1]} failed" in failure.getMessage()
    assert due(svc, ids[1])["digest"] == friday + jobs.LEASE  # retried once the lease runs out


def test_due_work_survives_a_restart_and_a_crash_mid_run(
    db: Database, slack: LocalSlack, clock: Clock, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.now = local(LA, 2024, 3, 7, 10, 0)
    rollout_id = start(services(db, slack, clock), channel)
    friday = utc(2024, 3, 8, 17, 0)

    # A process dies in the middle of the digest: nothing is recorded, the row stays leased.
    crashed = services(Database(db.url), slack, clock)

    def die(_svc: Services, _job: jobs.Claimed) -> None:
        raise KeyboardInterrupt

    monkeypatch.setitem(jobs.JOBS, "digest", die)
    clock.now = friday
    with pytest.raises(KeyboardInterrupt):
        jobs.run_due(crashed)
    crashed.db.dispose()
    monkeypatch.undo()

    # A new process on the same database: the lease holds for a while, then the work is done.
    restarted = services(Database(db.url), slack, clock)
    try:
        tick(restarted, clock, friday + timedelta(minutes=1))
        assert posts(slack, channel, "digest") == []
        tick(restarted, clock, friday + jobs.LEASE)
        assert len(posts(slack, channel, "digest:2024-03-08")) == 1
        assert due(restarted, rollout_id)["digest"] == utc(2024, 3, 11, 16, 0)
    finally:
        restarted.db.dispose()
    with db.reading() as session:
        assert (
            session.scalar(
                select(OutboxMessage.id).where(OutboxMessage.dedupe_key.like("%digest:2024-03-08%"))
            )
            is not None
        )
