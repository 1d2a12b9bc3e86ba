"""`serve` with WORK_PROCESSES=2: two work processes beside the web process, each woken at its
own socket, share the queue. A burst of starts is worked off with every status message posted
once, and a SIGTERM stops both. On SQLite and on Postgres."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

from bot.devtools.local_slack import LocalSlack
from tests.conftest import SIGNING_SECRET, BotProcess, bot_env
from tests.driver import SlackDriver
from tests.e2e.test_probes_work import own_slack, own_url  # noqa: F401 - fixtures
from tests.fakes.datadog_api import FakeDatadog
from tests.support import wait_until

STARTS = 24


def work_processes(pid: int) -> list[int]:
    """The `rollout-bot work` children of `serve`."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    out = []
    for child in found:
        with suppress(OSError):
            if b"work" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
                out.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_two_work_processes_share_a_burst_and_post_each_status_once(
    own_url: str,  # noqa: F811
    own_slack: LocalSlack,  # noqa: F811
    datadog: FakeDatadog,
    tmp_path: Path,
) -> None:
    env = bot_env(own_url, own_slack, datadog, WORK_PROCESSES="2")
    bot = BotProcess(env, tmp_path / "bot.log").start()
    try:
        assert bot.proc is not None
        workers = wait_until(
            lambda: (found := work_processes(bot.proc.pid)) and len(found) == 2 and found,  # type: ignore[union-attr]
            what="two work processes",
        )
        channel = "C" + uuid.uuid4().hex[:10].upper()
        driver = SlackDriver(bot.url, SIGNING_SECRET, own_slack, team_id="TWORK2", channel_id=channel)
        features = [f"pair-{uuid.uuid4().hex[:6]}-{n}" for n in range(STARTS)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda f: driver.command(f"start {f}").status, features))
        assert statuses == [200] * STARTS

        def headers() -> Counter[str]:
            return Counter(
                str(c.params.get("text", ""))
                for c in own_slack.calls("chat.postMessage")
                if c.params.get("channel") == channel and not c.params.get("thread_ts")
            )

        def posted(feature: str) -> int:
            return sum(n for text, n in headers().items() if feature in text)

        wait_until(lambda: all(posted(f) >= 1 for f in features), timeout=60, what="every status message")
        assert all(posted(f) == 1 for f in features), headers()
        # Each started and says so once (the second may say it after the first did the work).
        wait_until(
            lambda: (tmp_path / "bot.log").read_text(errors="replace").count("work process: ") >= 2,
            timeout=30,
            what="both work processes started",
        )
        assert (tmp_path / "bot.log").read_text(errors="replace").count("work process: ") == 2
    finally:
        bot.kill()
    assert not any(alive(pid) for pid in workers)
