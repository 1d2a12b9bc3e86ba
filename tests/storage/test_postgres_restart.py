"""Postgres restarts under a running bot: it recovers by itself (pool pre-ping) and loses no
committed state.

The restart is done on a private, throwaway cluster (initdb into a temporary folder, its own
port and socket folder), never on the shared Postgres other test runs use. The cluster is
stopped and removed at the end, also when the test fails. Skipped when the Postgres server
binaries are not installed or the cluster cannot be started here.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import psycopg
import pytest
from sqlalchemy import func, select

from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from storage.enums import EventKind
from storage.models import ChecklistItem, Event, Rollout, SlackMessage
from tests.conftest import SIGNING_SECRET, BotProcess, bot_env, free_port
from tests.driver import SlackDriver
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e

ACK_LIMIT_S = 3.0


def _server_binaries() -> Path | None:
    """The newest installed server's bin folder with initdb, pg_ctl and postgres in it."""
    found = []
    for folder in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(folder)
        if all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            version = path.parent.name
            found.append((int(version) if version.isdigit() else 0, path))
    return max(found)[1] if found else None


class PrivateCluster:
    """A Postgres cluster of this test's own: trust auth, 127.0.0.1 and a socket in its folder."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="rollout-pg-restart-"))
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            # Postgres refuses to run as root: run its tools as the postgres OS user.
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                self.remove()
                pytest.skip("running as root and there is no `postgres` OS user to run the server as")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            if shutil.which("runuser"):
                self._as_postgres = ["runuser", "-u", "postgres", "--"]
            elif shutil.which("su"):
                self._as_postgres = ["su", "postgres", "-c"]
            else:
                self.remove()
                pytest.skip("running as root without runuser or su to start Postgres as `postgres`")

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres[:1] == ["su"]:
            command = [*self._as_postgres, shlex.join(command)]
        else:
            command = [*self._as_postgres, *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )

    def init(self) -> None:
        done = self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t", "30", "start"
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}\n{done.stderr}\n{self.log()}")

    def stop(self, mode: str = "fast") -> None:
        done = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {done.stdout}\n{done.stderr}")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        """Stops the server however it stands, then removes the folder."""
        if self.data.exists() and self.running():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill_postmaster()
        self.remove()

    def _kill_postmaster(self) -> None:
        # Only the postmaster this cluster started, by the pid it wrote.
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivateCluster]:
    bindir = _server_binaries()
    if bindir is None:
        pytest.skip("no Postgres server binaries under /usr/lib/postgresql/*/bin (initdb, pg_ctl, postgres)")
    cluster = PrivateCluster(bindir)
    try:
        try:
            cluster.init()
            cluster.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"cannot run a private Postgres cluster here: {error}")
        yield cluster
    finally:
        cluster.destroy()
    assert not cluster.root.exists()


# --- helpers ---------------------------------------------------------------------------------


def healthz(bot: BotProcess) -> int:
    try:
        with urllib.request.urlopen(f"{bot.url}/healthz", timeout=10) as answer:
            return int(answer.status)
    except HTTPError as error:
        return int(error.code)


class Conversation:
    """One person in one channel, with what the bot answered each request."""

    def __init__(self, bot: BotProcess, slack: LocalSlack, db: Database) -> None:
        self.slack = slack
        self.db = db
        self.channel = "C" + uuid.uuid4().hex[:10].upper()
        self.driver = SlackDriver(
            bot.url,
            SIGNING_SECRET,
            slack,
            team_id="T" + uuid.uuid4().hex[:8].upper(),
            channel_id=self.channel,
        )

    def command(self, text: str, count: int = 1) -> list[dict]:
        """`/rollout {text}`: acked in time, and the `count` answers at its response_url (with
        count=0, the answer in the ack)."""
        started = time.monotonic()
        response = self.driver.command(text)
        assert response.status == 200, response
        assert time.monotonic() - started < ACK_LIMIT_S
        if count == 0:
            return [response.json()]
        self.driver.wait_reply(timeout=15, count=count)
        answers = self.driver.replies()
        for answer in answers:
            assert "Traceback" not in json.dumps(answer), answer
        return answers

    def status_message(self, rollout_id: int) -> dict:
        with self.db.reading() as session:
            ts = session.scalars(
                select(SlackMessage.ts).where(
                    SlackMessage.rollout_id == rollout_id, SlackMessage.purpose == "status"
                )
            ).one()
        return self.slack.message(self.channel, ts)

    def tick(self, rollout_id: int, item_id: int) -> None:
        """Ticks a box on the status message as it is now; answered by the message's update."""
        message = self.status_message(rollout_id)
        before = time.time()
        started = time.monotonic()
        response = self.driver.toggle(message, str(item_id))
        assert response.status == 200, response
        assert time.monotonic() - started < ACK_LIMIT_S
        self.slack.wait_for(
            "chat.update",
            lambda c: (
                c.params.get("channel") == self.channel
                and c.params.get("ts") == message["ts"]
                and c.at >= before
            ),
            timeout=15,
        )
        # A click that failed would be answered at its response_url instead: none came.
        failures = [
            body(c.params)
            for c in self.slack.calls("response_url")
            if c.at >= before and c.path.startswith("/response/action-")
        ]
        assert not failures, failures


def checked(db: Database, rollout_id: int) -> tuple[int, int]:
    """(ticked items, ITEM_CHECKED events) in the database."""
    with db.reading() as session:
        items = session.scalar(
            select(func.count())
            .select_from(ChecklistItem)
            .where(ChecklistItem.rollout_id == rollout_id, ChecklistItem.checked_at.is_not(None))
        )
        events = session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.rollout_id == rollout_id, Event.kind == EventKind.ITEM_CHECKED)
        )
    return int(items or 0), int(events or 0)


# --- the tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restart_bot(
    private_postgres: PrivateCluster,
    slack: LocalSlack,
    datadog: FakeDatadog,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BotProcess, Database]]:
    """`rollout-bot serve` on the private cluster, and the test's own view of its database."""
    url = private_postgres.create_database("rollouts")
    bot = BotProcess(bot_env(url, slack, datadog), tmp_path_factory.mktemp("pg-restart") / "bot.log")
    db = Database(url)
    try:
        bot.start(timeout=30)
        yield bot, db
    finally:
        db.dispose()
        bot.kill()


def test_the_bot_rides_out_a_postgres_restart_and_loses_nothing(
    private_postgres: PrivateCluster, restart_bot: tuple[BotProcess, Database], slack: LocalSlack
) -> None:
    bot, db = restart_bot
    talk = Conversation(bot, slack, db)

    # Before: a rollout with two boxes ticked, all of it committed.
    talk.command("start pg-restart", count=0)
    slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == talk.channel, timeout=15)
    rollout_id = wait_until(
        lambda: db_rollout_id(db, talk.driver.team_id), what="the rollout in the database"
    )
    items = item_ids(db, rollout_id)
    wait_until(lambda: status_ready(db, rollout_id), what="the status message's ts")
    talk.tick(rollout_id, items[0])
    talk.tick(rollout_id, items[1])
    assert checked(db, rollout_id) == (2, 2)
    assert healthz(bot) == 200
    db.dispose()

    # Postgres goes away: the bot says so on /healthz and stays up.
    private_postgres.stop("fast")
    try:
        assert healthz(bot) == 503
        assert bot.proc is not None and bot.proc.poll() is None
    finally:
        private_postgres.start()

    # Postgres is back: the very next requests work, without restarting the bot.
    talk.tick(rollout_id, items[2])
    assert healthz(bot) == 200
    assert checked(db, rollout_id) == (3, 3)

    status = talk.command("status pg-restart")
    assert "3/" in json.dumps(status[-1]), status[-1]
    advance = talk.command("advance pg-restart")
    assert advance and "Something went wrong" not in json.dumps(advance)

    # Nothing committed before the restart was lost.
    with db.reading() as session:
        rollout = session.get_one(Rollout, rollout_id)
        assert rollout.feature == "pg-restart"
        kinds = [e.kind for e in session.scalars(select(Event).where(Event.rollout_id == rollout_id))]
    assert kinds.count(EventKind.STARTED) == 1
    assert kinds.count(EventKind.ITEM_CHECKED) == 3
    assert bot.proc.poll() is None, bot.log()


def test_a_command_while_postgres_is_down_is_still_answered(
    private_postgres: PrivateCluster, restart_bot: tuple[BotProcess, Database], slack: LocalSlack
) -> None:
    bot, db = restart_bot
    talk = Conversation(bot, slack, db)
    private_postgres.stop("fast")
    try:
        answers = talk.command("status")
        assert answers, "a command while the database was down got no answer"
    finally:
        private_postgres.start()
        wait_until(lambda: healthz(bot) == 200, what="/healthz after Postgres came back")


def db_rollout_id(db: Database, team_id: str) -> int | None:
    with db.reading() as session:
        return session.scalars(select(Rollout.id).where(Rollout.team_id == team_id)).first()


def status_ready(db: Database, rollout_id: int) -> bool:
    with db.reading() as session:
        return (
            session.scalars(
                select(SlackMessage.ts).where(
                    SlackMessage.rollout_id == rollout_id, SlackMessage.purpose == "status"
                )
            ).first()
            is not None
        )


def item_ids(db: Database, rollout_id: int) -> list[int]:
    with db.reading() as session:
        return list(
            session.scalars(
                select(ChecklistItem.id)
                .where(ChecklistItem.rollout_id == rollout_id)
                .order_by(ChecklistItem.id)
            )
        )
