"""Queued work is leased, not deleted, when claimed; a change is committed once per request;
Slack's second delivery of an interaction is recognised. On SQLite and on Postgres."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from bot.edge import health, workqueue
from bot.edge import leases as lease_statements
from bot.edge.work_keys import command_fingerprint, interaction_id, work_key
from bot.edge.workqueue import QueueWrites, Worker, claim, finish, purge, release, renew, seen_before
from bot.usecases import checklist
from bot.usecases.checklist import ItemChange
from storage.db import AlreadyHandled, Database, handling
from storage.enums import EventKind
from storage.models import ChecklistItem, Event, HandledRequest, PendingWork, SeenRequest, WorkLease, utcnow
from tests.storage.test_storage import add_rollout
from tests.support import make_services


def queue(db: Database, n: int = 1, key: str | None = None) -> list[int]:
    rows = [
        {
            "function_name": "toggle",
            "body": "{}",
            "headers": {},
            "created_at": utcnow(),
            "request_key": f"{key}-{i}" if key else None,
        }
        for i in range(n)
    ]
    with db.transaction() as session:
        session.execute(insert(PendingWork), rows)
        return list(session.scalars(select(PendingWork.id).order_by(PendingWork.id)))


def pending(db: Database) -> list[PendingWork]:
    with db.reading() as session:
        return list(session.scalars(select(PendingWork).order_by(PendingWork.id)))


def delete_behind_the_foreign_keys(db: Database, row_id: int) -> None:
    """Deletes a work row as an operator would by hand: the `sqlite3` shell (foreign keys off by
    default), or a Postgres session that fires no foreign key triggers. Its lease stays."""
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.dialect == "sqlite":
            cursor.execute("PRAGMA foreign_keys=OFF")
        else:
            cursor.execute("SET session_replication_role = replica")  # no foreign key triggers
        cursor.execute(f"DELETE FROM pending_work WHERE id = {int(row_id)}")
        raw.commit()
        if db.dialect == "sqlite":
            cursor.execute("PRAGMA foreign_keys=ON")
        else:
            cursor.execute("SET session_replication_role = DEFAULT")
            raw.commit()
        cursor.close()
    finally:
        raw.close()


def leases(db: Database) -> dict[int, WorkLease]:
    """The lease rows, by their work row's id."""
    with db.reading() as session:
        return {row.work_id: row for row in session.scalars(select(WorkLease))}


# -- claiming ------------------------------------------------------------------------------


def test_a_claimed_row_is_leased_not_deleted(db: Database) -> None:
    queue(db, 3)
    claimed = claim(db, 2, lease_s=60, owner="a")
    assert [w.attempts for w in claimed] == [1, 1]
    assert {w.claimed_by for w in claimed} == {"a"}
    assert len(pending(db)) == 3  # still there until done
    assert {i: (w.claimed_by, w.attempts) for i, w in leases(db).items()} == {w.id: ("a", 1) for w in claimed}
    # Another process gets only what nobody holds.
    other = claim(db, 5, lease_s=60, owner="b")
    assert [w.id for w in other] == [max(w.id for w in pending(db))]
    finish(db, claimed[0])
    assert len(pending(db)) == 2
    assert claimed[0].id not in leases(db)  # the lease went with its row


def test_a_lease_that_ran_out_is_claimed_again(db: Database) -> None:
    queue(db, 1)
    [first] = claim(db, 1, lease_s=60, owner="dead")
    assert claim(db, 1, lease_s=60, owner="alive") == []
    with db.transaction() as session:  # the dead process's lease runs out
        session.execute(update(WorkLease).values(claimed_until=utcnow() - timedelta(seconds=1)))
    [again] = claim(db, 1, lease_s=60, owner="alive")
    assert again.id == first.id and again.attempts == 2 and again.claimed_by == "alive"


def test_renewing_keeps_running_work_from_being_claimed(db: Database) -> None:
    queue(db, 1)
    [work] = claim(db, 1, lease_s=0.5, owner="a")
    renew(db, [work.id], lease_s=60, owner="a")
    time.sleep(0.6)
    assert claim(db, 1, lease_s=60, owner="b") == []
    # Only the holder renews: a row another process claimed meanwhile stays theirs.
    renew(db, [work.id], lease_s=0, owner="b")
    assert claim(db, 1, lease_s=60, owner="b") == []


def test_released_work_waits_before_it_is_claimed_again(db: Database) -> None:
    queue(db, 1)
    [work] = claim(db, 1, lease_s=60, owner="a")
    release(db, work, 0.3)
    assert claim(db, 1, lease_s=60, owner="b") == []
    time.sleep(0.4)
    assert [w.attempts for w in claim(db, 1, lease_s=60, owner="b")] == [2]


def test_a_former_holder_neither_releases_nor_finishes_a_row_another_holds(db: Database) -> None:
    """A's lease ran out while its run hung; B claimed the row and runs it. A's run then fails
    (release) or is given up (finish): B's lease stays as it is, so no third process claims the
    row while B runs it, and the row is not deleted under B."""
    queue(db, 1)
    [by_a] = claim(db, 1, lease_s=60, owner="a")
    with db.transaction() as session:
        session.execute(update(WorkLease).values(claimed_until=utcnow() - timedelta(seconds=1)))
    [by_b] = claim(db, 1, lease_s=60, owner="b")
    release(db, by_a, 0)
    assert claim(db, 1, lease_s=60, owner="c") == []
    assert finish(db, by_a) is False
    assert [w.id for w in pending(db)] == [by_b.id]
    assert (leases(db)[by_b.id].claimed_by, leases(db)[by_b.id].attempts) == ("b", 2)
    assert finish(db, by_b) is True and pending(db) == [] and leases(db) == {}


def test_a_row_deleted_by_hand_hands_its_id_and_lease_to_no_new_request(db: Database) -> None:
    """An operator deletes a stuck row with the `sqlite3` shell, whose foreign keys are off, so
    its lease stays. The next request queued gets a new id (SQLite: AUTOINCREMENT), not the
    deleted row's, so it is not born leased to the stuck process, and runs."""
    [stuck] = queue(db, 1)
    claim(db, 1, lease_s=60, owner="stuck")
    delete_behind_the_foreign_keys(db, stuck)
    [new] = queue(db, 1)
    assert new != stuck
    [work] = claim(db, 1, lease_s=60, owner="alive")
    assert (work.id, work.attempts, work.claimed_by) == (new, 1, "alive")


def test_processes_claiming_at_once_never_share_a_row(db: Database) -> None:
    queue(db, 60)
    got: list[list[int]] = []

    def grab(owner: str) -> None:
        mine: list[int] = []
        while batch := claim(db, 3, lease_s=60, owner=owner):
            mine += [w.id for w in batch]
        got.append(mine)

    threads = [threading.Thread(target=grab, args=(f"p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for mine in got for i in mine]
    assert sorted(everything) == sorted(w.id for w in pending(db))
    assert len(set(everything)) == 60


# -- a change commits once -----------------------------------------------------------------


def checked_events(db: Database, rollout_id: int) -> int:
    with db.reading() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.rollout_id == rollout_id, Event.kind == EventKind.ITEM_CHECKED)
            )
            or 0
        )


def items(db: Database, rollout_id: int) -> list[int]:
    with db.reading() as session:
        stmt = select(ChecklistItem.id).where(ChecklistItem.rollout_id == rollout_id)
        return list(session.scalars(stmt.order_by(ChecklistItem.id)))


def test_work_run_again_changes_nothing_twice(db: Database) -> None:
    svc = make_services(db)
    rollout_id = add_rollout(db)
    first, second = items(db, rollout_id)[:2]
    actor = checklist_actor()
    with handling("action:T1:U1:1.0/toggle"):
        assert checklist.set_items(svc, actor, rollout_id, [ItemChange(first, True)]) == 1
    # Unticked meanwhile by someone else: a replay must not tick it again.
    checklist.set_items(svc, actor, rollout_id, [ItemChange(first, False)])
    with handling("action:T1:U1:1.0/toggle"), pytest.raises(AlreadyHandled):
        checklist.set_items(svc, actor, rollout_id, [ItemChange(first, True)])
    assert checked_events(db, rollout_id) == 1
    assert db.was_handled("action:T1:U1:1.0/toggle")
    # Another request is another key.
    with handling("action:T1:U1:2.0/toggle"):
        assert checklist.set_items(svc, actor, rollout_id, [ItemChange(second, True)]) == 1
    assert checked_events(db, rollout_id) == 2


def test_only_transactions_that_change_something_record_the_request(db: Database) -> None:
    svc = make_services(db)
    rollout_id = add_rollout(db)
    first, second = items(db, rollout_id)[:2]
    actor = checklist_actor()
    with handling("r/toggle"):
        with db.transaction() as session:  # bookkeeping, no Event: not the request's change
            session.execute(update(WorkLease).values(attempts=0))
        checklist.set_items(svc, actor, rollout_id, [ItemChange(first, True)])
        checklist.set_items(svc, actor, rollout_id, [ItemChange(second, True)])
    with db.reading() as session:
        keys = sorted(session.scalars(select(HandledRequest.key)))
    assert keys == ["r/toggle", "r/toggle#2"]
    # Run again, it stops at the first change already there.
    with handling("r/toggle"), pytest.raises(AlreadyHandled):
        checklist.set_items(svc, actor, rollout_id, [ItemChange(first, False)])
    assert checked_events(db, rollout_id) == 2


def test_without_a_request_key_nothing_is_recorded(db: Database) -> None:
    svc = make_services(db)
    rollout_id = add_rollout(db)
    checklist.set_items(svc, checklist_actor(), rollout_id, [ItemChange(items(db, rollout_id)[0], True)])
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(HandledRequest)) == 0


def checklist_actor() -> Any:
    from bot.services import Actor

    return Actor(team_id="T1", user_id="U1", channel_id="C1")


# -- Slack's deliveries ----------------------------------------------------------------------


def test_interaction_ids_are_what_slack_sends_again() -> None:
    assert interaction_id({"type": "event_callback", "event_id": "Ev1"}) == "event:Ev1"
    assert interaction_id({"command": "/rollout", "team_id": "T", "trigger_id": "1.2"}) == "command:T:1.2"
    click = {
        "type": "block_actions",
        "team": {"id": "T"},
        "user": {"id": "U"},
        "actions": [{"action_ts": "9.1"}],
    }
    assert interaction_id(click) == "action:T:U:9.1"
    form = {"type": "view_submission", "team": {"id": "T"}, "trigger_id": "3.4"}
    assert interaction_id(form) == "view_submission:T:3.4"
    assert interaction_id({"type": "event_callback"}) is None
    assert interaction_id({"command": "/rollout"}) is None
    assert interaction_id([1]) is None
    assert work_key(form, "rollback") == "view_submission:T:3.4/rollback"
    assert len(work_key({"type": "event_callback", "event_id": "E" * 400}, "x") or "") <= 255
    same = {"command": "/rollout", "team_id": "T", "user_id": "U", "channel_id": "C", "text": "pause x"}
    assert command_fingerprint(same) == command_fingerprint({**same, "trigger_id": "other"})
    assert command_fingerprint(same) != command_fingerprint({**same, "text": "resume x"})


def test_an_interaction_is_remembered_once(db: Database) -> None:
    writes = QueueWrites(db)
    with writes.writer.transaction() as cursor:
        assert writes.remember(cursor, "command:T:1", "f1")
        assert not writes.remember(cursor, "command:T:1", "f1")
    with db.reading() as session:
        assert seen_before(session, "command:T:1", None)
        assert not seen_before(session, "command:T:2", None)
        # A retried command with new ids: the same person typed the same thing moments ago.
        assert seen_before(session, "command:T:2", "f1")
        assert not seen_before(session, "command:T:2", "f2")


def test_old_keys_are_purged(db: Database) -> None:
    long_ago = utcnow() - timedelta(days=8)
    with db.transaction() as session:
        session.add_all(
            [
                SeenRequest(key="old", created_at=long_ago),
                SeenRequest(key="new", created_at=utcnow()),
                HandledRequest(key="old", at=long_ago),
                HandledRequest(key="new", at=utcnow() - timedelta(days=2)),
            ]
        )
    purge(db, db)
    with db.reading() as session:
        assert list(session.scalars(select(SeenRequest.key))) == ["new"]
        assert list(session.scalars(select(HandledRequest.key))) == ["new"]


# -- the worker ------------------------------------------------------------------------------


class FakeApp:
    """Stands in for the Bolt app: records what it is given to run."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.told: list[dict[str, Any]] = []
        app = self

        class Client:
            def chat_postMessage(self, **kwargs: Any) -> None:
                app.told.append(kwargs)

        self.client = Client()

    def dispatch(self, request: Any) -> None:
        self.ran.append(request.headers[workqueue.LAZY_NAME][0])


def run_worker(worker: Worker, until: Any) -> None:
    thread = threading.Thread(target=worker.loop)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not until() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(10)


def test_the_worker_runs_each_row_and_deletes_it(db: Database) -> None:
    app = FakeApp()
    queue(db, 3)
    worker = Worker(app, db, threads=2, main=db)  # type: ignore[arg-type]
    run_worker(worker, lambda: not pending(db))
    assert app.ran == ["toggle"] * 3
    assert pending(db) == []


def test_work_whose_change_is_committed_is_not_run_again(db: Database) -> None:
    app = FakeApp()
    [row] = queue(db, 1, key="done")
    with db.transaction() as session:
        session.add(HandledRequest(key="done-0", at=utcnow()))
        # Its first run died after the commit, and its lease ran out.
        session.add(WorkLease(work_id=row, claimed_until=utcnow(), claimed_by="dead", attempts=1))
    run_worker(Worker(app, db, threads=1, main=db), lambda: not pending(db))  # type: ignore[arg-type]
    assert app.ran == [] and pending(db) == []
    assert row


def test_work_that_keeps_dying_is_given_up_and_the_person_told(db: Database) -> None:
    app = FakeApp()
    body = '{"type": "view_submission", "user": {"id": "U42"}, "team": {"id": "T"}, "trigger_id": "1"}'
    with db.transaction() as session:
        work = PendingWork(
            function_name="rollback",
            body="payload=" + body.replace(" ", "%20").replace('"', "%22").replace(",", "%2C"),
            headers={"content-type": ["application/x-www-form-urlencoded"]},
            created_at=utcnow(),
        )
        session.add(work)
        session.flush()
        session.add(
            WorkLease(
                work_id=work.id, claimed_until=utcnow() - timedelta(seconds=1), claimed_by="dead", attempts=3
            )
        )
    run_worker(Worker(app, db, threads=1, attempts=3), lambda: app.told)  # type: ignore[arg-type]
    assert app.ran == [] and pending(db) == [] and leases(db) == {}
    [told] = app.told
    assert told["channel"] == "U42"
    assert "could not finish your rollback" in told["text"] and "3 times" in told["text"]


def test_a_row_leased_after_the_pick_looked_is_not_leased_again(db: Database) -> None:
    """Postgres: a claim's pick may see a row free in its snapshot and lock it only after
    another process leased it, committed and let go of it; the work row is not written by a
    lease, so Postgres has no newer version of it to check the pick's condition against. The
    lease statement looks at the lease as it is now: what that claim runs next, for that row."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite's claim picks and leases in one statement, under the write lock")
    [row] = queue(db, 1)
    claim(db, 1, lease_s=60, owner="a")
    now = utcnow()
    late = {"now": now, "until": now + timedelta(seconds=60), "owner": "b", "ids": [row]}
    with db.writing() as conn:
        assert conn.execute(lease_statements._LEASE_IDS, late).all() == []
    assert (leases(db)[row].claimed_by, leases(db)[row].attempts) == ("a", 1)
    with db.transaction() as session:  # a's lease runs out: then it is b's to take
        session.execute(update(WorkLease).values(claimed_until=now - timedelta(seconds=1)))
    with db.writing() as conn:
        [again] = conn.execute(lease_statements._LEASE_IDS, late).all()
    assert (again.id, again.claimed_by, again.attempts) == (row, "b", 2)


def test_purge_drops_leases_whose_row_is_gone(db: Database) -> None:
    """Foreign keys delete a lease with its row; a row deleted without them (the `sqlite3`
    shell's default, a Postgres session replicating) leaves its lease, and on SQLite the next
    row queued may get its id. The purge drops such leases."""
    kept, gone = queue(db, 2)
    claim(db, 2, lease_s=60, owner="a")
    delete_behind_the_foreign_keys(db, gone)
    assert sorted(leases(db)) == [kept, gone]
    purge(db, None)
    assert sorted(leases(db)) == [kept]


def test_the_backlogs_oldest_is_of_the_rows_nobody_holds(db: Database) -> None:
    """Readiness (`/readyz`) reads how long the oldest row nobody holds has waited: never
    claimed, or its lease ran out."""
    first, second, _newest = queue(db, 3)
    with db.transaction() as session:
        session.execute(
            update(PendingWork)
            .where(PendingWork.id == first)
            .values(created_at=utcnow() - timedelta(hours=2))
        )
        session.execute(
            update(PendingWork)
            .where(PendingWork.id == second)
            .values(created_at=utcnow() - timedelta(hours=1))
        )
    found = health.backlog(db, db)  # nothing claimed yet: the oldest has waited two hours
    assert found.queue_depth == 3 and found.queue_oldest_s > 7000
    claim(db, 2, lease_s=60, owner="a")  # the two oldest, held
    found = health.backlog(db, db)
    assert found.queue_depth == 3 and found.queue_oldest_s < 60  # the newest's wait
    with db.transaction() as session:  # the oldest's lease runs out
        session.execute(
            update(WorkLease)
            .where(WorkLease.work_id == first)
            .values(claimed_until=utcnow() - timedelta(seconds=1))
        )
    assert health.backlog(db, db).queue_oldest_s > 7000
