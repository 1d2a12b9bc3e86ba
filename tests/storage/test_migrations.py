"""Replicas start together (Heroku and Kubernetes start them at once): each runs the migrations
on start, and on a fresh database all of them must come up. A migration that moves data keeps
it, up and down."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from bot.edge.workqueue import claim
from storage.db import Database, normalize_url
from storage.migrate import alembic_config, upgrade
from storage.models import UTCDateTime, utcnow
from tests.conftest import BACKENDS, fresh_postgres_database

REPLICAS = 4
# Each replica sleeps until this many seconds after the test started them, so their
# migrations begin within a few milliseconds of each other.
START_AFTER = 3.0
_RUN = """
import sys, time
from storage.migrate import upgrade
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
upgrade(sys.argv[1])
"""


def head_revision() -> str:
    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


def start_replicas_together(url: str) -> list[subprocess.CompletedProcess[str]]:
    at = time.time() + START_AFTER
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN, url, str(at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def assert_all_came_up(url: str, runs: list[subprocess.CompletedProcess[str]]) -> None:
    failures = [run.stderr.strip().splitlines()[-1:] for run in runs if run.returncode != 0]
    assert failures == []
    engine = create_engine(normalize_url(url))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    engine.dispose()


@pytest.mark.postgres
def test_replicas_starting_together_on_a_fresh_postgres_all_come_up() -> None:
    with fresh_postgres_database("rollout_migrate", migrate=False) as url:
        assert_all_came_up(url, start_replicas_together(url))


def test_replicas_starting_together_on_a_fresh_sqlite_file_all_come_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert_all_came_up(url, start_replicas_together(url))


# pending_work before 0010, with its lease columns; and the lease table after.
_OLD_WORK = sa.table(
    "pending_work",
    *(sa.column(name) for name in ("id", "function_name", "body", "headers", "request_key", "claimed_by")),
    sa.column("created_at", UTCDateTime()),
    sa.column("claimed_until", UTCDateTime()),
    sa.column("attempts", sa.Integer()),
)
_LEASE = sa.table(
    "work_lease",
    sa.column("work_id"),
    sa.column("claimed_by"),
    sa.column("attempts"),
    sa.column("claimed_until", UTCDateTime()),
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_moving_the_leases_to_their_table_keeps_the_queue_and_its_leases(
    backend: str, tmp_path: Path
) -> None:
    """0010 up and down on a queue with work in every state: never claimed, leased, its lease
    run out, claimed without a lease time; each row and each lease is still there after."""
    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'queue.db'}"
        else:
            url = stack.enter_context(fresh_postgres_database("rollout_lease", migrate=False))
        upgrade(url, "0009")
        now = utcnow().replace(microsecond=0)
        later, earlier = now + timedelta(minutes=1), now - timedelta(minutes=1)
        body = "payload=" + "x" * 24_000
        states = {  # id: (claimed_until, claimed_by, attempts)
            1: (None, None, 0),
            2: (later, "a", 1),
            3: (earlier, "dead", 2),
            4: (None, None, 1),
        }
        rows = [
            {"id": i, "function_name": "toggle", "body": body, "headers": "{}", "request_key": f"k{i}"}
            | {"created_at": earlier, "claimed_until": until, "claimed_by": by, "attempts": attempts}
            for i, (until, by, attempts) in states.items()
        ]
        engine = create_engine(normalize_url(url))
        stack.callback(engine.dispose)
        with engine.begin() as conn:
            conn.execute(sa.insert(_OLD_WORK), rows)

        upgrade(url)
        with engine.connect() as conn:
            assert conn.execute(
                sa.select(_OLD_WORK.c.id, _OLD_WORK.c.body).order_by(_OLD_WORK.c.id)
            ).all() == [(i, body) for i in states]
            assert sorted(conn.execute(sa.select(_LEASE)).all()) == [
                (2, "a", 1, later),
                (3, "dead", 2, earlier),
                (4, "", 1, earlier),  # claimable, as it was, its attempt counted
            ]
        db = Database(url)
        stack.callback(db.dispose)
        claimed = claim(db, 5, lease_s=60, owner="b")
        assert [(w.id, w.attempts, w.body) for w in claimed] == [(1, 1, body), (3, 3, body), (4, 2, body)]
        # A replica of the release before, still running (a rolling deploy), queues as it did,
        # naming the old lease columns; this release's claim runs what it queued.
        with engine.begin() as conn:
            conn.execute(sa.insert(_OLD_WORK), [rows[0] | {"id": 5, "created_at": now}])
        [(queued, attempts)] = [(w.id, w.attempts) for w in claim(db, 5, lease_s=60, owner="b")]
        assert (queued, attempts) == (5, 1)
        with engine.begin() as conn:
            conn.execute(sa.delete(_OLD_WORK).where(_OLD_WORK.c.id == 5))
        db.dispose()

        command.downgrade(alembic_config(url), "0009")
        with engine.connect() as conn:
            back = conn.execute(
                sa.select(
                    _OLD_WORK.c.id, _OLD_WORK.c.claimed_by, _OLD_WORK.c.attempts, _OLD_WORK.c.body
                ).order_by(_OLD_WORK.c.id)
            ).all()
        assert back == [(1, "b", 1, body), (2, "a", 1, body), (3, "b", 3, body), (4, "b", 2, body)]
        upgrade(url)
        with engine.connect() as conn:
            assert [r.claimed_by for r in conn.execute(sa.select(_LEASE).order_by(_LEASE.c.work_id))] == [
                "b",
                "a",
                "b",
                "b",
            ]
