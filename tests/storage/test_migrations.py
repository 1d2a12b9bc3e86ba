"""Replicas start together (Heroku and Kubernetes start them at once): each runs the migrations
on start, and on a fresh database all of them must come up."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from storage.db import normalize_url
from storage.migrate import alembic_config
from tests.conftest import fresh_postgres_database

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
