"""Shared helpers for the benchmarks in this folder (not a benchmark itself).

- percentiles and the OK / MISSED verdict lines;
- `Fakes`: the Slack and Datadog stand-ins (tests/fakes) in a child process of their own, so
  their work does not compete with the load generator for this process's GIL; the parent
  asks it for the recorded calls over a pipe;
- process helpers: the gunicorn worker of a master, VmRSS, CPU-idle waits;
- a throw-away Postgres database.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# -- figures -------------------------------------------------------------------------


def pct(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def median(samples: Sequence[float]) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def verdict(label: str, value: float, target: float, *, higher_is_better: bool, unit: str = "x") -> bool:
    """Prints `label: value (target ...): OK` or `MISSED by ...`; returns whether it was met."""
    if math.isnan(value):
        print(
            f"  {label}: no figure (target {'>=' if higher_is_better else '<='} {target:g}{unit}): MISSED (not measured)"
        )
        return False
    met = value >= target if higher_is_better else value <= target
    if met:
        print(
            f"  {label}: {value:.2f}{unit} (target {'>=' if higher_is_better else '<='} {target:g}{unit}): OK"
        )
    else:
        gap = (target - value) if higher_is_better else (value - target)
        rel = gap / target * 100 if target else math.inf
        print(
            f"  {label}: {value:.2f}{unit} (target {'>=' if higher_is_better else '<='} {target:g}{unit}): "
            f"MISSED by {gap:.2f}{unit} ({rel:.0f}%)"
        )
    return met


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def machine_note() -> str:
    """The load average, since other processes on the machine inflate wall-clock figures."""
    try:
        one, five, _ = (float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load average unknown"
    cores = os.cpu_count() or 1
    note = f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {cores} cores"
    if one > cores:
        note += ": other processes compete for the CPU, wall-clock figures are inflated (ratios to the same-run baseline less so)"
    return note


# -- ports and processes --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}\n{text}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer /healthz within {timeout}s")


def children(pid: int) -> list[int]:
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir() if task_dir.exists() else []:
        with suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def is_work_process(pid: int) -> bool:
    """`rollout-bot work`, which `serve` starts beside gunicorn's own worker."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"work" in argv


def gunicorn_worker(master: int, timeout: float = 10.0) -> int:
    """The (first) web worker process forked by the gunicorn master `master` (not the work
    process, which runs the work behind the acks)."""
    return gunicorn_workers(master, None, timeout)[0]


def gunicorn_workers(master: int, count: int | None, timeout: float = 10.0) -> tuple[int, ...]:
    """The web worker processes forked by the gunicorn master `master`, once there are `count`
    of them, no more (WEB_CONCURRENCY), or with `count` None once there is one."""
    deadline = time.monotonic() + timeout
    kids: tuple[int, ...] = ()
    while time.monotonic() < deadline:
        kids = tuple(k for k in children(master) if not is_work_process(k))
        if len(kids) == count or (count is None and kids):
            return kids
        time.sleep(0.05)
    raise RuntimeError(f"gunicorn master {master} has {len(kids)} web worker(s), not {count or 'one'}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


def cpu_seconds(pid: int | tuple[int, ...]) -> float:
    """CPU time (user + system) of a process, or the sum over several (the work processes)."""
    if isinstance(pid, tuple):
        return sum(cpu_seconds(p) for p in pid)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_cpu_idle(
    pid: int | tuple[int, ...], timeout: float, *, window: float = 0.5, busy_share: float = 0.08
) -> bool:
    """Waits until `pid` (or the processes together) uses less than `busy_share` of a core over
    `window` seconds."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu_seconds(pid)
        if now - last < busy_share * window:
            return True
        last = now
    return False


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stops a child started with start_new_session=True (it and its own children), by its id."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass


# -- the Slack and Datadog stand-ins in a child process ------------------------------------


def _summary(call: Any) -> dict[str, Any]:
    """What the benchmarks need of a recorded call, small enough to send over a pipe."""
    params = call.params
    out: dict[str, Any] = {"method": call.method, "at": call.at, "path": call.path}
    if call.method in ("chat.postMessage", "chat.update"):
        blocks = params.get("blocks") if isinstance(params.get("blocks"), list) else []
        header = next((b for b in blocks if b.get("type") == "header"), None)
        out["channel"] = params.get("channel")
        out["ts"] = params.get("ts")
        out["thread_ts"] = params.get("thread_ts")
        out["header"] = (header or {}).get("text", {}).get("text") if header else None
        ticked: list[str] = []
        for block in blocks:
            if str(block.get("block_id", "")).startswith("checklist:"):
                for element in block.get("elements", []):
                    ticked += [o["value"] for o in element.get("initial_options") or []]
        out["ticked"] = ticked
    return out


def _fakes_main(backlog: int) -> None:
    """The child: `python bench/benchlib.py fakes BACKLOG`. Commands and answers are pickles
    on stdin / stdout."""
    import pickle

    from bot.devtools.local_slack import LocalSlack
    from tests.fakes.datadog_api import FakeDatadog

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the answer pipe

    def send(obj: Any) -> None:
        pickle.dump(obj, out)
        out.flush()

    # The stand-in's socketserver default backlog is 5: a burst of the bot's connections
    # beyond it is dropped and retried by the kernel a second later, which would read as
    # a slow Slack. Real Slack has no such limit, so the benchmark widens it.
    with LocalSlack(backlog=backlog) as slack, FakeDatadog() as datadog:
        send({"slack_api": slack.api_url, "slack_base": slack.base_url, "datadog": datadog.url})
        while True:
            try:
                cmd, arg = pickle.load(inp)
            except EOFError:
                return
            if cmd == "stop":
                send(None)
                return
            if cmd == "count":
                send(len(slack.calls(arg)))
            elif cmd == "calls":
                send([_summary(c) for c in slack.calls(arg)])
            elif cmd == "messages":
                send(slack.messages(arg))
            elif cmd == "clear":
                slack.clear_calls()
                send(None)
            else:
                send(RuntimeError(f"unknown command {cmd!r}"))


class Fakes:
    """LocalSlack + FakeDatadog served from a child process; `.slack_api`, `.slack_base`, `.datadog`."""

    def __init__(self, backlog: int = 256) -> None:
        self._backlog = backlog
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Fakes:
        import pickle

        self._proc = subprocess.Popen(
            [PYTHON, str(Path(__file__).resolve()), "fakes", str(self._backlog)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        urls = pickle.load(self._proc.stdout)
        self.slack_api: str = urls["slack_api"]
        self.slack_base: str = urls["slack_base"]
        self.datadog: str = urls["datadog"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        with suppress(OSError, EOFError, RuntimeError):
            self._ask("stop")
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else 0

    def _ask(self, cmd: str, arg: Any = None) -> Any:
        import pickle

        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        with self._lock:
            pickle.dump((cmd, arg), self._proc.stdin)
            self._proc.stdin.flush()
            answer = pickle.load(self._proc.stdout)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def count(self, method: str | None = None) -> int:
        return int(self._ask("count", method))

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return list(self._ask("calls", method))

    def messages(self, channel: str) -> list[dict[str, Any]]:
        return list(self._ask("messages", channel))

    def clear(self) -> None:
        self._ask("clear")

    def response_url(self, name: str) -> str:
        return f"{self.slack_base}/response/{name}"

    # what tests.conftest.bot_env reads of its `slack` and `datadog` arguments
    @property
    def api_url(self) -> str:
        return self.slack_api

    @property
    def url(self) -> str:
        return self.datadog


# -- Postgres ---------------------------------------------------------------------------


@contextmanager
def postgres_database(prefix: str, server: str | None = None) -> Iterator[str]:
    """A fresh, migrated Postgres database (SQLAlchemy URL), dropped afterwards, on `server`
    (a URL of any database there; POSTGRES_URL by default)."""
    server = server or POSTGRES_URL
    import psycopg
    from sqlalchemy.engine import make_url

    from storage.db import normalize_url
    from storage.migrate import upgrade

    admin = make_url(normalize_url(server)).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(normalize_url(server)).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_available() -> bool:
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        from storage.db import normalize_url

        admin = (
            make_url(normalize_url(POSTGRES_URL))
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        with psycopg.connect(admin, autocommit=True, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


if __name__ == "__main__" and sys.argv[1:2] == ["fakes"]:
    _fakes_main(int(sys.argv[2]))


def run_main(main: Callable[[], int]) -> None:
    """A benchmark's entry point: its exit code, or 1 with the traceback if it did not finish."""
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - report any failure, exit non-zero
        traceback.print_exc()
        print("ERROR: the benchmark did not complete", file=sys.stderr)
        sys.exit(1)


def add_rollouts(db: Any, plan: Any, count: int, prefix: str, team: str, now: Any) -> list[int]:
    """`count` rollouts of `plan` started at `now`, through the bot's own rule; their ids."""
    from bot.domain import rollouts

    with db.transaction() as session:
        made = [
            rollouts.new_rollout(
                plan,
                team_id=team,
                channel_id=f"C{prefix.upper()}{i:04d}",
                feature=f"{prefix}-{i}",
                owner_id="WOWNER001",
                created_by="WOWNER001",
                flag_key=None,
                service=None,
                stakeholders=[],
                timezone="America/Los_Angeles",
                country="US",
                now=now,
            )
            for i in range(count)
        ]
        session.add_all(made)
        session.flush()
        return [r.id for r in made]
