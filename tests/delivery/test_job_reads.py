"""The due jobs' column reads (storage.job_queries) give what the ORM reads they replace gave:
the digest's events of a span and its step's newest verdict, as views, field by field, on each
backend; and the chart row's upsert makes the row, then moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from bot.delivery import jobs
from bot.domain.plans import get_template
from bot.domain.rollouts import new_rollout
from bot.domain.schedule import Kind
from bot.usecases import views
from storage import job_queries, queries
from storage.db import Database
from storage.enums import EventKind, SnapshotKind
from storage.models import DueJob, Event, MetricSnapshot, OutboxMessage

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)


def _rollout(db: Database) -> int:
    with db.transaction() as session:
        rollout = new_rollout(
            get_template("standard"),
            team_id="TREADS",
            channel_id="CREADS",
            feature="reads",
            owner_id="UOWNER",
            created_by="UOWNER",
            flag_key=None,
            service=None,
            stakeholders=[],
            timezone="America/Los_Angeles",
            country="US",
            now=T0,
        )
        session.add(rollout)
        session.flush()
        rollout_id = rollout.id
        kinds = [EventKind.STARTED, EventKind.ITEM_CHECKED, EventKind.ITEM_CHECKED, EventKind.ADVANCED]
        session.execute(
            insert(Event),
            [
                # Two events at the same instant: the id orders them.
                {
                    "rollout_id": rollout_id,
                    "kind": kind,
                    "actor_id": f"U{n % 2}",
                    "at": T0 + timedelta(hours=n // 2 * 2),
                    "data": {"text": f"item {n}", "n": [n]},
                }
                for n, kind in enumerate(kinds)
            ],
        )
        verdicts = [
            (SnapshotKind.GATE, 0, 0, 1, False, {"blockers": ["soak", 3]}),
            (SnapshotKind.CHECK, 0, 0, 2, True, {}),
            (SnapshotKind.BASELINE, 0, 0, 3, None, {"blockers": ["not a verdict"]}),  # not a check
            (SnapshotKind.WATCH, 0, 1, 1, None, {"blockers": ["error rate"]}),
            (SnapshotKind.CHECK, 0, 1, 1, False, {"blockers": []}),  # same instant: the newer id wins
            (SnapshotKind.GATE, 1, 0, 1, True, {}),
        ]
        session.execute(
            insert(MetricSnapshot),
            [
                {
                    "rollout_id": rollout_id,
                    "kind": kind,
                    "phase_index": p,
                    "step_index": s,
                    "taken_at": T0 + timedelta(hours=h),
                    "readings": {},
                    "verdict": verdict,
                    "passed": passed,
                }
                for kind, p, s, h, passed, verdict in verdicts
            ],
        )
    return rollout_id


def test_the_digest_reads_what_the_orm_reads_did(db: Database) -> None:
    rollout_id = _rollout(db)
    spans = [
        (None, T0 + timedelta(days=1)),
        (None, T0),
        (T0, T0 + timedelta(hours=2)),
        (T0 + timedelta(hours=2), T0 + timedelta(days=1)),
        (T0 + timedelta(days=1), T0 + timedelta(days=2)),
    ]
    with db.reading() as session:
        mine = {"session": session, "rollout_id": rollout_id}
        for after, until in spans:
            before = views.event_views(queries.events_between(**mine, after=after, until=until))
            now = jobs._event_views(job_queries.events_between(**mine, after=after, until=until))
            assert now == before, (after, until)
        assert (
            len(
                jobs._event_views(
                    job_queries.events_between(**mine, after=None, until=T0 + timedelta(days=1))
                )
            )
            == 4
        )
        for phase_index, step_index in [(0, 0), (0, 1), (1, 0), (2, 0)]:
            where = {"phase_index": phase_index, "step_index": step_index}
            before_check = views.snapshot_view(queries.latest_check(**mine, **where))
            assert jobs._check_view(job_queries.latest_check(**mine, **where)) == before_check, where
        assert jobs._check_view(job_queries.latest_check(**mine, phase_index=0, step_index=0)) is not None
        assert jobs._check_view(job_queries.latest_check(**mine, phase_index=2, step_index=0)) is None


def test_the_chart_row_is_made_then_moved(db: Database) -> None:
    rollout_id = _rollout(db)
    for at, data in [(T0, {"digest": "2025-03-03"}), (T0 + timedelta(days=1), {"digest": "2025-03-04"})]:
        with db.transaction() as session:
            job_queries.put_due_row(
                session=session, rollout_id=rollout_id, kind=Kind.CHART, due_at=at, data=data
            )
        with db.reading() as session:
            rows = session.execute(
                select(DueJob.due_at, DueJob.data).where(
                    DueJob.rollout_id == rollout_id, DueJob.kind == Kind.CHART
                )
            ).all()
        assert [(due_at.replace(tzinfo=due_at.tzinfo or UTC), row_data) for due_at, row_data in rows] == [
            (at, data)
        ]


def test_the_overdue_reminders_one_read_answers_as_its_two_did(db: Database) -> None:
    rollout_id = _rollout(db)
    due = T0 + timedelta(days=2)
    with db.transaction() as session:
        job_queries.put_due_row(session=session, rollout_id=rollout_id, kind=Kind.READY, due_at=due, data={})
        session.execute(
            insert(OutboxMessage),
            [{"rollout_id": rollout_id, "dedupe_key": "queued-key", "channel_id": "CREADS", "payload": {}}],
        )
    with db.reading() as session:
        for key, kind in [("queued-key", Kind.READY), ("other-key", Kind.READY), ("queued-key", Kind.STALE)]:
            queued, due_at = job_queries.key_queued_and_due_at(
                session=session, dedupe_key=key, rollout_id=rollout_id, kind=kind
            )
            assert queued is job_queries.key_queued(session=session, dedupe_key=key)
            before = session.scalar(
                select(DueJob.due_at).where(DueJob.rollout_id == rollout_id, DueJob.kind == kind)
            )
            assert due_at == before
        queued, due_at = job_queries.key_queued_and_due_at(
            session=session, dedupe_key="queued-key", rollout_id=rollout_id, kind=Kind.READY
        )
        assert queued is True
        assert due_at is not None and due_at.replace(tzinfo=due_at.tzinfo or UTC) == due
