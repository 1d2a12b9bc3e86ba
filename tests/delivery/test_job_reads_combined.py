"""The due jobs' combined reads (storage.job_queries: a rollout's row with its current step, the
digest's row with the step's newest verdict, the overdue reminder's step with its two questions
about the ready check) answer as the separate reads they replace, on each backend, at every
step of the plan and at a step the plan does not have."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, update

from bot.delivery import jobs
from bot.domain.schedule import Kind
from storage import job_queries
from storage.db import Database
from storage.models import OutboxMessage, Rollout, Step
from tests.delivery.test_job_reads import T0, _rollout

PLACES = [(0, 0), (0, 1), (1, 0), (2, 0), (9, 9)]  # (9, 9): no such step


def _move(db: Database, rollout_id: int, phase_index: int, step_index: int) -> None:
    with db.transaction() as session:
        session.execute(
            update(Rollout)
            .where(Rollout.id == rollout_id)
            .values(phase_index=phase_index, step_index=step_index)
        )


def _fields(step: Step | None) -> dict[str, Any] | None:
    names = ("position", "percent", "label", "min_business_days", "planned_end")
    return None if step is None else {name: getattr(step, name) for name in names}


def _columns(rollout: Rollout) -> dict[str, Any]:
    return {name: getattr(rollout, name) for name in job_queries._JOB_COLUMNS.split()}


def test_a_rollouts_row_with_its_step_is_the_row_and_the_step(db: Database) -> None:
    rollout_id = _rollout(db)
    for phase_index, step_index in PLACES:
        _move(db, rollout_id, phase_index, step_index)
        with db.transaction() as session:
            row = job_queries.job_rollout_row(session=session, rollout_id=rollout_id)
            assert row is not None
            where = {"phase_index": phase_index, "step_index": step_index}
            step = job_queries.step_at(session=session, rollout_id=rollout_id, **where)
            check = job_queries.latest_check(session=session, rollout_id=rollout_id, **where)
            for lock in (False, True):
                found = job_queries.rollout_and_step(session=session, rollout_id=rollout_id, lock=lock)
                assert found is not None
                assert _columns(found[0]) == _columns(row) and _fields(found[1]) == _fields(step)
            digest = job_queries.digest_row(session=session, rollout_id=rollout_id)
            assert digest is not None
            assert _columns(digest[0]) == _columns(row) and _fields(digest[1]) == _fields(step)
            assert jobs._check_view(digest[2]) == jobs._check_view(check), where
    assert step is None  # the last place has no step
    with db.reading() as session:
        assert job_queries.rollout_and_step(session=session, rollout_id=rollout_id + 1000) is None
        assert job_queries.digest_row(session=session, rollout_id=rollout_id + 1000) is None


def test_the_overdue_reminders_step_and_questions_in_one_read(db: Database) -> None:
    rollout_id = _rollout(db)
    with db.transaction() as session:
        job_queries.put_due_row(session=session, rollout_id=rollout_id, kind=Kind.READY, due_at=T0, data={})
        session.execute(
            insert(OutboxMessage),
            [{"rollout_id": rollout_id, "dedupe_key": "queued-key", "channel_id": "CREADS", "payload": {}}],
        )
    with db.reading() as session:
        for phase_index, step_index in PLACES:
            where = {"phase_index": phase_index, "step_index": step_index}
            step = job_queries.step_at(session=session, rollout_id=rollout_id, **where)
            for key, kind in [
                ("queued-key", Kind.READY),
                ("other-key", Kind.READY),
                ("queued-key", Kind.STALE),
            ]:
                found = job_queries.step_key_queued_and_due_at(
                    session=session, rollout_id=rollout_id, **where, dedupe_key=key, kind=kind
                )
                if step is None:
                    assert found is None
                    continue
                assert found is not None
                answers = job_queries.key_queued_and_due_at(
                    session=session, dedupe_key=key, rollout_id=rollout_id, kind=kind
                )
                assert (_fields(found[0]), *found[1:]) == (_fields(step), *answers), (where, key, kind)
