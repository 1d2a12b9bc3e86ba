"""Fixtures: databases (SQLite always, Postgres when TEST_POSTGRES_URL names one), the local
Slack and Datadog stand-ins, and the real bot served over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.devtools.local_slack import LocalSlack
from storage.db import Database, normalize_url
from storage.migrate import upgrade
from storage.models import Base
from tests.driver import SlackDriver
from tests.fakes.datadog_api import FakeDatadog

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "").strip()
SIGNING_SECRET = "test-signing-secret"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _skip_without_postgres() -> None:
    if not POSTGRES_URL:
        pytest.skip(
            "Postgres not configured: set TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test"
        )


def _admin_conninfo() -> str:
    url = make_url(normalize_url(POSTGRES_URL))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_database(prefix: str = "rollout_test", *, migrate: bool = True) -> Iterator[str]:
    """A new Postgres database, migrated unless told not to, dropped afterwards."""
    _skip_without_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(normalize_url(POSTGRES_URL)).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The Postgres database of the `db` fixture (emptied before each test)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def bot_postgres_database() -> Iterator[str]:
    """The shared running bot's own database: its outbox worker must never see rows that
    storage tests put into theirs, and their emptying must never reach it."""
    with fresh_postgres_database("rollout_bot") as url:
        yield url


def _empty_tables(db: Database) -> None:
    with db.transaction() as session:
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        if db.dialect == "postgresql":
            session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(table.delete())


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rollouts.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("postgres_database")
    database = Database(url)
    _empty_tables(database)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.fixture(scope="session")
def datadog() -> Iterator[FakeDatadog]:
    with FakeDatadog() as fake:
        yield fake


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BotProcess:
    """`rollout-bot serve` in a child process, as it runs in production."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> BotProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rollout-bot exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"rollout-bot did not answer /healthz in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self, sig: int = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=15)


def bot_env(database_url: str, slack: LocalSlack, datadog: FakeDatadog, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "DATABASE_URL": database_url,
        "DD_API_KEY": "test-api-key",
        "DD_APP_KEY": "test-app-key",
        "DD_API_URL": datadog.url,
        "ROLLOUT_TIMEZONE": "America/Los_Angeles",
        "LOG_LEVEL": "INFO",
        # The suite reads the classic lines (tests/e2e/test_hardening.py finds records by their
        # timestamp); tests/e2e/test_observability.py asks for JSON.
        "LOG_FORMAT": "text",
        **extra,
    }


@pytest.fixture(scope="session", params=BACKENDS)
def bot_server(
    request: pytest.FixtureRequest,
    slack: LocalSlack,
    datadog: FakeDatadog,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BotProcess]:
    """One running bot per backend for the whole run; tests keep apart by channel and name."""
    folder = tmp_path_factory.mktemp(f"bot-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'rollouts.db'}"
    else:
        url = request.getfixturevalue("bot_postgres_database")
    bot = BotProcess(bot_env(url, slack, datadog), folder / "bot.log").start()
    bot.database_url = url  # type: ignore[attr-defined]
    yield bot
    bot.kill()


@pytest.fixture
def channel() -> str:
    """A channel of its own for each test, so tests sharing one bot never see each other."""
    return "C" + uuid.uuid4().hex[:10].upper()


@pytest.fixture
def driver(bot_server: BotProcess, slack: LocalSlack, channel: str) -> SlackDriver:
    team = "T" + uuid.uuid4().hex[:8].upper()  # feature names are unique per workspace
    return SlackDriver(bot_server.url, SIGNING_SECRET, slack, team_id=team, channel_id=channel)


@pytest.fixture
def bot_db(bot_server: BotProcess) -> Iterator[Database]:
    """The running bot's own database, to check what it committed."""
    database = Database(bot_server.database_url)  # type: ignore[attr-defined]
    yield database
    database.dispose()
