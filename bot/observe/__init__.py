"""What an operator sees: structured logs (`logs`), Prometheus metrics (`telemetry`).

The lowest layer, beside the standard library's `logging`: every layer may record a metric or
bind log context, and this package imports nothing of the bot. Importing the package itself
costs nothing (`rollout-bot --help` stays light); `multiprocess_dir` runs before
prometheus-client is first imported, because the client picks its storage at import.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """When `/readyz` says not ready (bot/edge/health.py)."""

    work_silent_s: float = 60.0  # no work-process heartbeat for this long: it is not alive
    queue_old_s: float = 120.0  # the oldest unclaimed work is this old: nobody is claiming
    outbox_stuck_s: float = 300.0  # the oldest pending announcement is this old: stuck


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SWITCH_ENV = "ROLLOUT_METRICS"


def metrics_enabled(env: dict[str, str] | None = None) -> bool:
    raw = (os.environ if env is None else env).get(SWITCH_ENV, "").strip().lower()
    return raw not in ("0", "off", "false", "no")


def multiprocess_dir() -> Path | None:
    """For `serve`: the folder where each process (gunicorn's worker, the work process) writes
    its metric values, so the web process's `/metrics` adds them up. A folder named by
    PROMETHEUS_MULTIPROC_DIR is emptied of a previous run's files; otherwise a temporary one is
    made, and the environment the work process inherits names it. None when metrics are off."""
    if not metrics_enabled():
        return None
    named = os.environ.get(MULTIPROC_ENV, "").strip()
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        return folder
    folder = Path(tempfile.mkdtemp(prefix="rollout-bot-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def remove_multiprocess_dir(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
