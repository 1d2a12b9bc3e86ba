"""Announcements of one rollout reach each channel in the order they happened (SQLite and
Postgres): a row that has to wait (for the status message, after a failure) holds back the
later rows of its rollout and channel, and only those."""

from __future__ import annotations

import threading

import pytest

from bot.delivery import outbox, outbox_queries
from bot.devtools.local_slack import LocalSlack
from bot.services import Services
from bot.usecases import announcing
from storage.db import Database
from storage.enums import OutboxState
from tests.delivery.test_outbox import (  # the fixtures clock, slack and svc too
    MAIN,
    STAKE,
    START,
    clock,
    make_rollout,
    post_status,
    posted,
    posts,
    queue,
    rows,
    services,
    slack,
    svc,
)
from tests.support import Clock

__all__ = ["clock", "slack", "svc"]


def order(slack: LocalSlack, channel: str, rollout_id: int) -> list[str]:
    """The milestones as they were posted to `channel`, failed attempts left out."""
    prefix = f"{rollout_id}:"
    messages = [m for m in slack.messages(channel) if (m.get("metadata") or {}).get("event_payload")]
    keys = [m["metadata"]["event_payload"]["key"] for m in messages]
    return [k.removeprefix(prefix).rsplit(":", 1)[0] for k in keys if k.startswith(prefix)]


def test_a_step_queued_while_started_waits_for_the_status_message_goes_after_it(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    """What once happened: "started" waited a second for the status message (THREAD_RECHECK),
    the step announced meanwhile was due at once, and was posted first."""
    rollout_id = make_rollout(svc, status=False)
    queue(svc, rollout_id, "started")
    assert outbox.deliver_due(svc) == 0  # no status message yet: "started" waits a second
    post_status(svc, rollout_id)
    clock.move(0.2)
    queue(svc, rollout_id, "step:1:0")

    assert outbox.deliver_due(svc) == 0  # the step is due, but "started" is not yet
    assert posts(slack) == []

    clock.move(1)
    assert outbox.deliver_due(svc) == 4
    assert order(slack, MAIN, rollout_id) == ["started", "step:1:0"]
    assert order(slack, STAKE, rollout_id) == ["started", "step:1:0"]


def test_a_failed_post_holds_back_its_channel_only_and_then_goes_first(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    rollout_id = make_rollout(svc)
    queue(svc, rollout_id, "started", "step:1:0", "step:1:1")
    slack.fail_next("chat.postMessage", status=500)  # the first post: "started" in MAIN

    assert outbox.deliver_due(svc) == 3  # the stakeholder channel goes on, in order

    assert order(slack, STAKE, rollout_id) == ["started", "step:1:0", "step:1:1"]
    assert order(slack, MAIN, rollout_id) == []
    clock.move(2)
    assert outbox.deliver_due(svc) == 3
    assert order(slack, MAIN, rollout_id) == ["started", "step:1:0", "step:1:1"]
    assert all(r.state == OutboxState.SENT for r in rows(svc))


def test_a_permanent_failure_does_not_hold_back_the_rest(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    rollout_id = make_rollout(svc, stakeholders=("CGONE",))
    queue(svc, rollout_id, "started", "step:1:0")
    slack.fail_next("chat.postMessage", error="channel_not_found", times=1)  # "started" in MAIN

    outbox.deliver_due(svc)

    assert order(slack, MAIN, rollout_id) == ["step:1:0"]
    assert order(slack, "CGONE", rollout_id) == ["started", "step:1:0"]


def test_two_workers_keep_each_channels_order(db: Database, slack: LocalSlack, clock: Clock) -> None:
    """Two replicas drain many rollouts at once: every row once, every channel in order."""
    svc = services(db, slack, clock)
    rollouts = [make_rollout(svc, feature=f"f{n}") for n in range(4)]
    for n in range(15):
        for rollout_id in rollouts:
            queue(svc, rollout_id, f"update:{n:02d}")
    workers = [services(Database(db.url), slack, clock) for _ in range(2)]
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            start.wait()
            while outbox.deliver_due(workers[i], limit=3) > 0:
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.db.dispose()

    assert not errors
    # Whatever a worker left waiting its turn: pushed back THREAD_RECHECK by the time the test
    # says it is (a worker stops when a round of its sends nothing, which under load can be
    # while the other still held the rows before those).
    clock.move(outbox.THREAD_RECHECK.total_seconds())
    while outbox.deliver_due(svc, limit=1000) > 0:
        pass
    expected = [f"update:{n:02d}" for n in range(15)]
    for rollout_id in rollouts:
        assert order(slack, MAIN, rollout_id) == expected
        assert order(slack, STAKE, rollout_id) == expected
        for channel in (MAIN, STAKE):
            key = announcing.dedupe_key(rollout_id, "update:00", channel)
            assert len(posted(slack, channel, key)) == 1


def test_the_claim_finds_earlier_rows_of_a_queue_by_index(db: Database) -> None:
    """Whether an earlier row of the same rollout and channel waits is a seek in the queue's
    index (migration 0009): reading every pending row for each candidate made a claim take
    ~300 ms with 1,500 rows pending after a burst of starts, and every status message wakes one."""
    if db.dialect != "sqlite":
        pytest.skip("the plan of SQLite's planner is fixed by its indexes; Postgres's by its statistics")
    compiled = outbox_queries._HEAD.compile(dialect=db.engine.dialect)
    params = compiled.construct_params({"now": START})
    with db.connected() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(compiled), tuple(params[k] for k in compiled.positiontup or ())
        ).all()
    searches = [str(row[-1]) for row in plan]
    assert any("earlier USING INDEX ix_outbox_queue" in s for s in searches), searches
