"""The outbox (bot/outbox.py) on SQLite and Postgres, against the local Slack stand-in.

Time is a settable clock: backoff and leases are checked by moving it, never by sleeping.
The WebClient has no retries of its own (max_retries=0), so every 429/5xx reaches the outbox.
Each test has a Slack fake of its own, so failures it injects are not taken by a bot that
another test module left running.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.delivery import outbox, status_board
from bot.devtools.local_slack import LocalSlack
from bot.domain.plans import get_template
from bot.domain.rollouts import new_rollout
from bot.services import Services
from bot.slackweb.client import make_client
from bot.usecases import announcing
from messages.blocks import Message
from storage import queries
from storage.db import Database
from storage.enums import EventKind, OutboxState
from storage.models import Event, OutboxMessage, Rollout, SlackMessage
from tests.support import Clock, make_services

MAIN = "CMAIN00001"
STAKE = "CSTAKE0001"
OWNER = "WOWNER0001"
START = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    """A Slack of this test's own (overrides the session-wide one)."""
    with LocalSlack() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


services = make_services


@pytest.fixture
def svc(db: Database, slack: LocalSlack, clock: Clock) -> Services:
    return services(db, slack, clock)


def make_rollout(
    svc: Services,
    *,
    stakeholders: tuple[str, ...] = (STAKE,),
    status: bool = True,
    feature: str = "checkout-v2",
) -> int:
    """A rollout in MAIN, with its status message posted and recorded unless status=False."""
    with svc.db.transaction() as session:
        rollout = new_rollout(
            get_template("aggressive"),
            team_id="T111",
            channel_id=MAIN,
            feature=feature,
            owner_id=OWNER,
            created_by=OWNER,
            flag_key=None,
            service=None,
            stakeholders=list(stakeholders),
            timezone="UTC",
            country="US",
            now=svc.clock(),
        )
        session.add(rollout)
        session.flush()
        rollout_id = rollout.id
    if status:
        post_status(svc, rollout_id)
    return rollout_id


def post_status(svc: Services, rollout_id: int) -> str:
    ts = str(svc.client.chat_postMessage(channel=MAIN, text="status message")["ts"])
    with svc.db.transaction() as session:
        session.add(
            SlackMessage(rollout_id=rollout_id, purpose=queries.STATUS_PURPOSE, channel_id=MAIN, ts=ts)
        )
    return ts


def status_ts(svc: Services, rollout_id: int) -> str:
    with svc.db.reading() as session:
        ref = queries.status_message(session=session, rollout_id=rollout_id)
        assert ref is not None
        return ref.ts


def queue(svc: Services, rollout_id: int, *milestones: str) -> int:
    """Queues each milestone (thread + stakeholder line) in one transaction; rows added."""
    added = 0
    with svc.db.transaction() as session:
        rollout = session.get_one(Rollout, rollout_id)
        for milestone in milestones:
            announcement = announcing.Announcement(
                milestone, Message(text=f"thread: {milestone}"), Message(text=f"line: {milestone}")
            )
            added += announcing.queue(session, rollout, announcement, svc.clock())
    return added


def rows(svc: Services) -> list[OutboxMessage]:
    with svc.db.reading() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def row(svc: Services, key: str) -> OutboxMessage:
    with svc.db.reading() as session:
        return session.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key == key)).one()


def key_of(message: dict[str, Any]) -> str | None:
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("key")


def posts(slack: LocalSlack, key: str | None = None) -> list[dict[str, Any]]:
    """chat.postMessage calls carrying an outbox key (`key`, if given), failed ones too."""
    calls = [c.params for c in slack.calls("chat.postMessage") if key_of(c.params)]
    return [p for p in calls if key is None or key_of(p) == key]


def posted(slack: LocalSlack, channel: str, key: str) -> list[dict[str, Any]]:
    """Messages that exist in `channel` with the outbox key `key`."""
    return [m for m in slack.messages(channel) if key_of(m) == key]


# --- queueing ---------------------------------------------------------------------------------


def test_announcing_the_same_milestone_twice_queues_one_row_per_channel(svc: Services) -> None:
    rollout_id = make_rollout(svc)

    assert queue(svc, rollout_id, "started") == 2
    assert queue(svc, rollout_id, "started") == 0
    with svc.db.transaction() as session:  # the flow's own entry point, replayed
        rollout = session.get_one(Rollout, rollout_id)
        announcing.announce(session, rollout, "started", "started", svc.clock(), actor=OWNER)
        assert not session.info.get(announcing.QUEUED)

    keys = sorted(r.dedupe_key for r in rows(svc))
    assert keys == sorted(
        [
            announcing.dedupe_key(rollout_id, "started", MAIN),
            announcing.dedupe_key(rollout_id, "started", STAKE),
        ]
    )


# --- retries ----------------------------------------------------------------------------------


def test_server_errors_are_retried_with_doubling_backoff_and_posted_once(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    rollout_id = make_rollout(svc, stakeholders=())
    queue(svc, rollout_id, "started")
    key = announcing.dedupe_key(rollout_id, "started", MAIN)
    slack.fail_next("chat.postMessage", times=3, status=500)

    waits = []
    for attempt in range(1, 4):
        assert outbox.deliver_due(svc) == 0
        r = row(svc, key)
        assert (r.state, r.attempts, r.locked_until) == (OutboxState.PENDING, attempt, None)
        wait = (r.next_attempt_at - clock()).total_seconds()
        waits.append(wait)
        clock.move(wait - 0.5)  # not due yet: nothing is tried
        assert outbox.deliver_due(svc) == 0
        assert len(posts(slack, key)) == attempt
        clock.move(0.5)

    assert outbox.deliver_due(svc) == 1
    assert waits[0] >= 2 and waits[1] >= 4 and waits[2] >= 8
    assert waits[0] < waits[1] < waits[2]
    assert len(posts(slack, key)) == 4  # three 500s, one success
    assert len(posted(slack, MAIN, key)) == 1
    r = row(svc, key)
    assert (r.state, r.sent_ts) == (OutboxState.SENT, posted(slack, MAIN, key)[0]["ts"])

    clock.move(3600)
    assert outbox.deliver_due(svc) == 0
    assert len(posts(slack, key)) == 4


def test_rate_limit_waits_at_least_retry_after(svc: Services, slack: LocalSlack, clock: Clock) -> None:
    rollout_id = make_rollout(svc, stakeholders=())
    queue(svc, rollout_id, "started")
    key = announcing.dedupe_key(rollout_id, "started", MAIN)
    slack.fail_next("chat.postMessage", times=1, status=429, retry_after=30)

    assert outbox.deliver_due(svc) == 0
    r = row(svc, key)
    assert r.next_attempt_at >= START + timedelta(seconds=30)
    assert r.last_error == "ratelimited"

    clock.move(29)
    assert outbox.deliver_due(svc) == 0
    assert len(posts(slack, key)) == 1
    clock.move(1)
    assert outbox.deliver_due(svc) == 1
    assert len(posted(slack, MAIN, key)) == 1


# --- permanent errors -------------------------------------------------------------------------


def _make_stakeholder_post_fail(slack: LocalSlack, failure: str) -> None:
    """The next post fails for good: the fake fails a method, not a channel, so the test
    delivers one row at a time and arms the failure just before the stakeholder row's turn."""
    if failure == "private":
        slack.set_not_in_channel(STAKE, private=True)
    else:
        slack.fail_next("chat.postMessage", error=failure)


@pytest.mark.parametrize("failure", ["channel_not_found", "is_archived", "private"])
def test_permanent_error_fails_the_row_and_tells_the_owner_once(
    svc: Services, slack: LocalSlack, clock: Clock, failure: str
) -> None:
    rollout_id = make_rollout(svc)
    code = "not_in_channel" if failure == "private" else failure
    for milestone in ("started", "step:1:0"):
        queue(svc, rollout_id, milestone)
        assert outbox.deliver_due(svc, limit=1) == 1  # the thread row
        if milestone != "started":
            assert outbox.deliver_due(svc, limit=1) == 1  # the other one: the report queued before it
        _make_stakeholder_post_fail(slack, failure)
        assert outbox.deliver_due(svc, limit=1) == 0
        r = row(svc, announcing.dedupe_key(rollout_id, milestone, STAKE))
        assert (r.state, r.last_error, r.locked_until) == (OutboxState.FAILED, code, None)

    # Nothing failed is tried again, however long we wait; the report goes out once.
    for _ in range(5):
        clock.move(3600)
        outbox.deliver_due(svc)
    stake_posts = [p for p in posts(slack) if p["channel"] == STAKE]
    assert len(stake_posts) == 2  # one try per row
    reports = [m for m in slack.messages(MAIN) if "could not post" in m["text"]]
    assert len(reports) == 1, reports
    assert reports[0]["thread_ts"] == status_ts(svc, rollout_id)
    assert f"<@{OWNER}>" in reports[0]["text"] and f"<#{STAKE}>" in reports[0]["text"]
    assert code.replace("_", " ") in reports[0]["text"]
    with svc.db.reading() as session:
        failed_events = session.scalars(select(Event).where(Event.kind == EventKind.DELIVERY_FAILED)).all()
    assert len(failed_events) == 2  # the timeline has each failure


def test_not_in_a_public_channel_joins_and_posts(svc: Services, slack: LocalSlack) -> None:
    rollout_id = make_rollout(svc)
    slack.set_not_in_channel(STAKE)
    queue(svc, rollout_id, "started")

    assert outbox.deliver_due(svc) == 2
    key = announcing.dedupe_key(rollout_id, "started", STAKE)
    assert [c.params["channel"] for c in slack.calls("conversations.join")] == [STAKE]
    assert len(posted(slack, STAKE, key)) == 1
    assert row(svc, key).state == OutboxState.SENT


# --- a process that died between posting and recording -------------------------------------


def _as_if_the_process_died(svc: Services, key: str, clock: Clock) -> None:
    """The post went out, then the process died before it recorded the result: the row is
    pending with one attempt and a lease that has run out."""
    with svc.db.transaction() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.dedupe_key == key)
            .values(
                state=OutboxState.PENDING,
                sent_ts=None,
                sent_at=None,
                attempts=1,
                locked_until=clock() - timedelta(seconds=1),
            )
        )


@pytest.mark.parametrize("channel", [MAIN, STAKE], ids=["status-thread", "stakeholder-channel"])
def test_a_post_that_reached_slack_before_the_process_died_is_not_posted_again(
    svc: Services, slack: LocalSlack, clock: Clock, channel: str
) -> None:
    rollout_id = make_rollout(svc)
    queue(svc, rollout_id, "started")
    assert outbox.deliver_due(svc) == 2
    key = announcing.dedupe_key(rollout_id, "started", channel)
    first_ts = row(svc, key).sent_ts
    clock.move(120)
    _as_if_the_process_died(svc, key, clock)

    assert outbox.deliver_due(svc) == 1
    assert len(posts(slack, key)) == 1
    r = row(svc, key)
    assert (r.state, r.sent_ts, r.locked_until) == (OutboxState.SENT, first_ts, None)
    looked_in = "conversations.replies" if channel == MAIN else "conversations.history"
    assert [c.params["channel"] for c in slack.calls(looked_in)] == [channel]


def test_an_attempt_that_never_reached_slack_is_posted_after_its_lease(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    rollout_id = make_rollout(svc)
    queue(svc, rollout_id, "started")
    key = announcing.dedupe_key(rollout_id, "started", STAKE)
    with svc.db.transaction() as session:  # claimed and marked, then the process died
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.dedupe_key == key)
            .values(attempts=1, locked_until=clock() + outbox.LEASE)
        )

    assert outbox.deliver_due(svc) == 1  # only the thread row: the other is leased
    assert posts(slack, key) == []
    clock.move(outbox.LEASE.total_seconds())
    assert outbox.deliver_due(svc) == 1
    assert len(posted(slack, STAKE, key)) == 1
    assert row(svc, key).state == OutboxState.SENT


def test_a_lost_connection_is_retried_with_backoff_and_looked_for_before_posting_again(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    """No answer at all (the post may or may not have reached Slack): try again later, and
    look first. A lookup Slack cannot answer (500) does not post blind either."""
    rollout_id = make_rollout(svc, stakeholders=())
    queue(svc, rollout_id, "started")
    key = announcing.dedupe_key(rollout_id, "started", MAIN)
    working = svc.client
    svc.client = make_client("xoxb-test", "http://127.0.0.1:9/api/", max_retries=0)  # nothing listens

    assert outbox.deliver_due(svc) == 0
    r = row(svc, key)
    assert (r.state, r.attempts, r.locked_until) == (OutboxState.PENDING, 1, None)
    assert (r.next_attempt_at - clock()).total_seconds() >= 2

    svc.client = working
    clock.move(2)
    slack.fail_next("conversations.replies", times=1, status=500)
    assert outbox.deliver_due(svc) == 0
    assert posts(slack, key) == []
    assert (row(svc, key).next_attempt_at - clock()).total_seconds() >= 2

    clock.move(2)
    assert outbox.deliver_due(svc) == 1
    assert len(slack.calls("conversations.replies")) == 2
    assert len(posted(slack, MAIN, key)) == 1


def test_a_worker_whose_lease_ran_out_does_not_post(svc: Services, slack: LocalSlack, clock: Clock) -> None:
    """A slow worker (its lease ran out before it got to the row) leaves the row to the worker
    that took it over, instead of posting it a second time."""
    rollout_id = make_rollout(svc, stakeholders=())
    queue(svc, rollout_id, "started")
    key = announcing.dedupe_key(rollout_id, "started", MAIN)
    [(row_id, slow_lease)] = outbox._claim(svc, clock(), 10)
    clock.move(outbox.LEASE.total_seconds() + 1)
    [(_, new_lease)] = outbox._claim(svc, clock(), 10)

    assert outbox._deliver(svc, row_id, slow_lease) is False
    assert posts(slack, key) == []
    assert outbox._deliver(svc, row_id, new_lease) is True
    assert len(posts(slack, key)) == 1
    r = row(svc, key)
    assert (r.state, r.attempts) == (OutboxState.SENT, 1)


# --- the status thread ------------------------------------------------------------------------


def test_announcements_wait_for_the_status_message_and_go_into_its_thread(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    rollout_id = make_rollout(svc, status=False)
    queue(svc, rollout_id, "started")

    for _ in range(3):
        assert outbox.deliver_due(svc) == 0
        clock.move(outbox.THREAD_RECHECK.total_seconds())
    assert posts(slack) == []
    assert all(r.state == OutboxState.PENDING and r.attempts == 0 for r in rows(svc))

    ts = post_status(svc, rollout_id)
    assert outbox.deliver_due(svc) == 2
    thread_key = announcing.dedupe_key(rollout_id, "started", MAIN)
    [reply] = posted(slack, MAIN, thread_key)
    assert reply["thread_ts"] == ts
    [line] = posted(slack, STAKE, announcing.dedupe_key(rollout_id, "started", STAKE))
    assert "thread_ts" not in line


def test_a_new_rollouts_announcements_are_not_claimed_until_its_status_message_is_posted(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    """A start queues its rows due at the end of the wait, not now: in a burst of starts, whose
    status messages are posted long after their commits, a drain claimed each of them again
    every THREAD_RECHECK until then. The message's commit makes them due."""
    rollout_id = make_rollout(svc, status=False)
    with svc.db.transaction() as session:
        rollout = session.get_one(Rollout, rollout_id)
        announcing.announce(session, rollout, "started", "started", clock(), before_status=True)

    assert outbox._claim(svc, clock(), 10) == []  # nothing due: nothing to claim and push back
    assert {r.next_attempt_at for r in rows(svc)} == {START + announcing.WAIT_FOR_STATUS}

    ts = status_board.post(svc, rollout_id)  # the real one: its commit makes them due
    assert outbox.deliver_due(svc) == 2
    [reply] = posted(slack, MAIN, announcing.dedupe_key(rollout_id, "started", MAIN))
    assert reply["thread_ts"] == ts


def test_a_new_rollouts_announcements_go_without_a_status_message_at_the_end_of_the_wait(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    rollout_id = make_rollout(svc, stakeholders=(), status=False)
    with svc.db.transaction() as session:
        rollout = session.get_one(Rollout, rollout_id)
        announcing.announce(session, rollout, "started", "started", clock(), before_status=True)

    clock.move(outbox.THREAD_WAIT.total_seconds())
    assert outbox.deliver_due(svc) == 1
    [message] = posted(slack, MAIN, announcing.dedupe_key(rollout_id, "started", MAIN))
    assert "thread_ts" not in message


def test_without_a_status_message_announcements_go_to_the_channel_after_the_wait(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    rollout_id = make_rollout(svc, stakeholders=(), status=False)
    queue(svc, rollout_id, "started")
    assert outbox.deliver_due(svc) == 0

    clock.move(outbox.THREAD_WAIT.total_seconds())
    assert outbox.deliver_due(svc) == 1
    [message] = posted(slack, MAIN, announcing.dedupe_key(rollout_id, "started", MAIN))
    assert "thread_ts" not in message


# --- two workers ------------------------------------------------------------------------------


def test_two_workers_post_each_of_200_rows_once(db: Database, slack: LocalSlack, clock: Clock) -> None:
    """Two replicas' workers (own engines, own clients) drain one outbox at the same time."""
    svc = services(db, slack, clock)
    rollout_id = make_rollout(svc)
    assert queue(svc, rollout_id, *(f"update:{n}" for n in range(100))) == 200
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 200

    workers = [services(Database(db.url), slack, clock) for _ in range(2)]
    start = threading.Barrier(len(workers))
    sent = [0] * len(workers)
    errors: list[BaseException] = []

    def pending() -> int:
        with db.reading() as session:
            stmt = (
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state != OutboxState.SENT)
            )
            return int(session.scalar(stmt) or 0)

    def work(i: int) -> None:
        # A round can find nothing to take while the other replica holds the rows before the
        # next ones in their channel (they go in order): like a replica's drain, look again,
        # until rounds keep finding nothing (what is left then waits its turn, below).
        deadline = time.monotonic() + 30
        idle = 0
        try:
            start.wait()
            while pending() and idle < 50 and time.monotonic() < deadline:
                n = outbox.deliver_due(workers[i], limit=7)
                sent[i] += n
                idle = 0 if n else idle + 1
                if not n:
                    time.sleep(0.01)
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
    # A row whose earlier one the other worker held was pushed back THREAD_RECHECK, by the time
    # the test says it is: it comes due when that time has passed.
    clock.move(outbox.THREAD_RECHECK.total_seconds())
    rest = 0
    while (n := outbox.deliver_due(svc, limit=1000)) > 0:
        rest += n
    counts = Counter(key_of(p) for p in posts(slack))
    assert len(counts) == 200
    assert [k for k, n in counts.items() if n != 1] == []
    assert sum(sent) + rest == 200 and all(sent), (sent, rest)
    assert all(r.state == OutboxState.SENT for r in rows(svc))


def test_a_row_failing_for_a_day_gives_up_and_tells_the_owner_once(
    svc: Services, slack: LocalSlack, clock: Clock
) -> None:
    """5xx for ever must not mean retrying for ever: after a day the row fails, reported once."""
    rollout_id = make_rollout(svc, stakeholders=("CGIVEUP",))
    queue(svc, rollout_id, "update:1")
    key = announcing.dedupe_key(rollout_id, "update:1", "CGIVEUP")
    slack.fail_next("chat.postMessage", times=10_000, status=500)
    while clock() - START <= outbox.GIVE_UP + outbox.MAX_BACKOFF:
        outbox.deliver_due(svc)
        clock.move(outbox.MAX_BACKOFF.total_seconds())
    assert row(svc, key).state is OutboxState.FAILED
    assert "still failing after 24 h" in (row(svc, key).last_error or "")
    tries = len(posts(slack, key))
    assert 5 < tries < 200  # backed off, and stopped
    slack.reset()
    clock.move(60)
    outbox.deliver_due(svc)
    clock.move(60)
    outbox.deliver_due(svc)
    assert len(posts(slack, key)) == 0  # no more tries after giving up
    reports = [
        m for m in slack.messages(MAIN) if "could not post an update to <#CGIVEUP>" in m.get("text", "")
    ]
    assert len(reports) == 1
