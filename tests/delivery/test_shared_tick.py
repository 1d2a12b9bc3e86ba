"""The due jobs that are database work alone (the digest, the overdue and stale reminders) run a
stretch at a time in one transaction (bot/delivery/tick.py), on SQLite and Postgres: what each
queued lands, each row moves on, and one that fails leaves the others landed and itself leased."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, update

from bot.delivery import jobs
from bot.delivery.scheduler import drain_outbox
from bot.devtools.local_slack import LocalSlack
from bot.services import Services
from storage.models import Rollout
from tests.delivery.test_jobs import LA, channel, clock, due, local, posts, slack, start, svc, tick, utc
from tests.support import Clock, body

__all__ = ["channel", "clock", "slack", "svc"]  # the fixtures of test_jobs, used here by name

FRIDAY_NINE = utc(2024, 3, 8, 17, 0)  # 09:00 in Los Angeles: every digest of these rollouts


@contextmanager
def commits(svc: Services) -> Iterator[list[Any]]:
    counted: list[Any] = []

    def count(conn: Any) -> None:
        counted.append(conn)

    event.listen(svc.db.engine, "commit", count)
    try:
        yield counted
    finally:
        event.remove(svc.db.engine, "commit", count)


def three_rollouts(svc: Services, clock: Clock) -> list[tuple[int, str]]:
    clock.now = local(LA, 2024, 3, 7, 10, 0)
    channels = ["CSHARED001", "CSHARED002", "CSHARED003"]
    return [(start(svc, c, feature=f"shared-{n}", baseline=False), c) for n, c in enumerate(channels)]


def test_three_digests_due_together_commit_once_and_each_goes_out(
    svc: Services, clock: Clock, slack: LocalSlack
) -> None:
    rollouts = three_rollouts(svc, clock)
    clock.now = FRIDAY_NINE
    with commits(svc) as counted:  # the digests alone (the watches are due too)
        assert jobs.run(svc, {"digest": jobs.JOBS["digest"]}, limit=100) == 3
    assert len(counted) == 2  # the claim, then the three digests with their rows' next times
    tick(svc, clock, FRIDAY_NINE)
    for rollout_id, channel_id in rollouts:
        assert len(posts(slack, channel_id, "digest:2024-03-08")) == 1
        assert due(svc, rollout_id)["digest"] == local(LA, 2024, 3, 11, 9, 0)


def test_one_digest_that_fails_leaves_the_others_of_its_transaction_landed(
    svc: Services, clock: Clock, slack: LocalSlack, caplog: pytest.LogCaptureFixture
) -> None:
    rollouts = three_rollouts(svc, clock)
    bad_id, bad_channel = rollouts[1]
    with svc.db.transaction() as session:  # a row that cannot be read back sensibly
        session.execute(update(Rollout).where(Rollout.id == bad_id).values(timezone="Mars/Olympus_Mons"))
    with caplog.at_level(logging.INFO, logger="bot.delivery.jobs"):
        tick(svc, clock, FRIDAY_NINE)
    for rollout_id, channel_id in (rollouts[0], rollouts[2]):
        assert len(posts(slack, channel_id, "digest:2024-03-08")) == 1
        assert due(svc, rollout_id)["digest"] == local(LA, 2024, 3, 11, 9, 0)
    assert posts(slack, bad_channel, "digest") == []
    assert due(svc, bad_id)["digest"] == FRIDAY_NINE + jobs.LEASE  # retried once the lease runs out
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == [f"digest job of rollout {bad_id} failed; it is retried after its lease"]

    tick(svc, clock, FRIDAY_NINE + jobs.LEASE)  # still broken: tried again, alone, and nothing doubled
    for _, channel_id in (rollouts[0], rollouts[2]):
        assert len(posts(slack, channel_id, "digest:2024-03-08")) == 1


def test_a_ready_check_decides_in_the_transaction_of_the_digest_due_with_it(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    rollout_id = start(svc, channel)  # Monday 10:00: digest Tuesday 09:00, ready check 10:00
    clock.now = local(LA, 2024, 3, 12, 10, 0)
    table = {"digest": jobs.JOBS["digest"], "ready": jobs.JOBS["ready"]}
    with commits(svc) as counted:
        assert jobs.run(svc, table, limit=100) == 2
    assert len(counted) == 3  # the claim, the ready check's read before Datadog, then both decisions
    drain_outbox(svc)
    assert len(posts(slack, channel, "digest:2024-03-12")) == 1
    [ready] = posts(slack, channel, "ready:0:0")
    assert "ready" in body(ready).lower()
    assert "ready" not in due(svc, rollout_id)
    assert due(svc, rollout_id)["digest"] == local(LA, 2024, 3, 13, 9, 0)
