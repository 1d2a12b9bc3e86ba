"""A digest's progress chart (bot/delivery/charts.py) on SQLite and Postgres: the due-work tick
only queues it; the charts run draws it after the digest's text is out and posts it into the
status thread once, retrying a refused upload, never posting a second copy."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.delivery import charts, jobs
from bot.delivery.scheduler import drain_outbox
from bot.devtools.local_slack import LocalSlack
from bot.domain.schedule import CHART_ATTEMPTS, CHART_TEXT_RECHECK, chart_retry
from bot.services import Services
from storage.db import Database
from storage.models import DueJob
from tests.delivery.test_jobs import LA, local, posts, services, start, utc
from tests.support import Clock, body

FRIDAY = utc(2024, 3, 8, 17, 0)  # 09:00 in Los Angeles: the first daily digest
DAY = "digest:2024-03-08"


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(local(LA, 2024, 3, 7, 10, 0))  # Thursday


@pytest.fixture
def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


@pytest.fixture
def svc(db: Database, slack: LocalSlack, clock: Clock) -> Services:
    return services(db, slack, clock)


def uploads(slack: LocalSlack, channel: str) -> list[dict[str, Any]]:
    """files.completeUploadExternal calls into `channel` (answered or refused)."""
    return [
        c.params for c in slack.calls("files.completeUploadExternal") if c.params["channel_id"] == channel
    ]


def chart_row(svc: Services, rollout_id: int) -> DueJob | None:
    with svc.db.reading() as session:
        return session.scalars(
            select(DueJob).where(DueJob.rollout_id == rollout_id, DueJob.kind == "chart")
        ).first()


def charts_at(svc: Services, clock: Clock, at: Any) -> int:
    """The scheduler's charts run at `at`, then the outbox."""
    clock.now = at
    done = charts.run_due(svc)
    drain_outbox(svc)
    return done


def test_the_tick_posts_the_digest_without_drawing_and_the_chart_follows_once(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel)
    clock.now = FRIDAY
    assert jobs.run_due(svc) >= 1

    # The tick drew and uploaded nothing; the chart waits for the digest's text to be out.
    assert slack.calls("files.getUploadURLExternal") == [] and uploads(slack, channel) == []
    row = chart_row(svc, rollout_id)
    assert row is not None and row.data["digest"] == "2024-03-08"
    assert charts.run_due(svc) == 1
    assert uploads(slack, channel) == []

    drain_outbox(svc)
    [thread] = posts(slack, channel, DAY)
    assert "progress chart" not in body(thread)  # the digest promises nothing it may not keep
    charts_at(svc, clock, FRIDAY + CHART_TEXT_RECHECK)

    [chart] = uploads(slack, channel)
    assert chart["thread_ts"] == slack.messages(channel)[0]["ts"]  # in the status thread
    assert chart["initial_comment"] == "Progress so far, with the digest of 2024-03-08"
    assert [f["title"] for f in chart["files"]] == ["Progress: checkout-v2"]
    assert chart_row(svc, rollout_id) is None

    # Later runs, and a replayed digest tick, post neither text nor chart again.
    charts_at(svc, clock, FRIDAY + timedelta(minutes=5))
    with svc.db.transaction() as session:
        session.execute(
            update(DueJob)
            .where(DueJob.rollout_id == rollout_id, DueJob.kind == "digest")
            .values(due_at=FRIDAY)
        )
    clock.now = FRIDAY + timedelta(minutes=6)
    jobs.run_due(svc)
    charts_at(svc, clock, FRIDAY + timedelta(minutes=7))
    assert len(posts(slack, channel, DAY)) == 1
    assert len(uploads(slack, channel)) == 1


def test_a_refused_upload_is_retried_with_backoff_and_posted_once(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel)
    clock.now = FRIDAY
    jobs.run_due(svc)
    drain_outbox(svc)
    slack.fail_next("files.completeUploadExternal", error="fatal_error")

    charts_at(svc, clock, FRIDAY + timedelta(seconds=1))
    assert len(uploads(slack, channel)) == 1  # refused
    row = chart_row(svc, rollout_id)
    assert row is not None and row.data["tries"] == 1 and not row.data.get("uploading")

    charts_at(svc, clock, FRIDAY + timedelta(seconds=2))  # not yet: it backs off
    assert len(uploads(slack, channel)) == 1
    charts_at(svc, clock, FRIDAY + timedelta(seconds=1) + chart_retry(0))
    assert len(uploads(slack, channel)) == 2  # the refused one and the one that landed
    charts_at(svc, clock, FRIDAY + timedelta(hours=1))
    assert len(uploads(slack, channel)) == 2
    assert chart_row(svc, rollout_id) is None
    assert posts(slack, channel, "chart:") == []  # nobody is told of a chart that arrived


def test_a_chart_slack_keeps_refusing_is_given_up_and_the_owner_told_once(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel)
    clock.now = FRIDAY
    jobs.run_due(svc)
    drain_outbox(svc)
    slack.fail_next("files.completeUploadExternal", times=CHART_ATTEMPTS + 2, error="fatal_error")

    at = FRIDAY
    for _ in range(CHART_ATTEMPTS + 2):
        at += timedelta(hours=1)
        charts_at(svc, clock, at)

    assert len(uploads(slack, channel)) == CHART_ATTEMPTS
    [note] = posts(slack, channel, "chart:2024-03-08")
    assert note["thread_ts"] == slack.messages(channel)[0]["ts"]
    assert "The progress chart of the 2024-03-08 digest is missing" in body(note)
    assert "fatal_error" in body(note)
    assert chart_row(svc, rollout_id) is None


def test_a_channel_slack_will_not_upload_to_is_reported_at_once(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    start(svc, channel)
    clock.now = FRIDAY
    jobs.run_due(svc)
    drain_outbox(svc)
    slack.fail_next("files.completeUploadExternal", error="is_archived")

    charts_at(svc, clock, FRIDAY + timedelta(seconds=1))
    charts_at(svc, clock, FRIDAY + timedelta(hours=2))

    assert len(uploads(slack, channel)) == 1
    [note] = posts(slack, channel, "chart:")
    assert "is_archived" in body(note)


def test_an_upload_whose_outcome_was_never_recorded_is_not_posted_again(
    db: Database, slack: LocalSlack, clock: Clock, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    svc = services(db, slack, clock)
    rollout_id = start(svc, channel)
    clock.now = FRIDAY
    jobs.run_due(svc)
    drain_outbox(svc)
    # A process marked the row and began the upload, then died: its lease runs out.
    with svc.db.transaction() as session:
        row = session.scalars(
            select(DueJob).where(DueJob.rollout_id == rollout_id, DueJob.kind == "chart")
        ).one()
        row.data = {**row.data, "uploading": True}
        row.due_at = FRIDAY + jobs.LEASE

    restarted = services(Database(db.url), slack, clock)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.delivery.charts"):
            charts_at(restarted, clock, FRIDAY + jobs.LEASE + timedelta(seconds=1))
    finally:
        restarted.db.dispose()

    assert uploads(slack, channel) == []  # Slack may have it: never a second copy
    assert chart_row(svc, rollout_id) is None
    assert any("never recorded" in r.getMessage() for r in caplog.records)
    # Nor is it only logged: the owner reads in the thread that it may be missing, and where to get it.
    drain_outbox(svc)
    [note] = posts(slack, channel, "chart:")
    assert "may be missing" in body(note) and "/rollout export" in body(note)
