"""`rollout-bot shell`: the same Bolt app and listeners, driven from a terminal.

Type `/rollout start checkout-v2`; every message the bot posts is printed as text with its
buttons and checkboxes numbered; type a number to click it. Requests are signed and
dispatched to the real app; its Slack calls go over HTTP to a local Slack (bot/devtools/local_slack/).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

from slack_bolt import App, BoltRequest

from bot.app import build_app
from bot.config import Settings, load_settings
from bot.delivery import charts, jobs
from bot.delivery.scheduler import drain_outbox
from bot.devtools.local_slack import APP_ID, TEAM_ID, LocalSlack, Posted
from bot.domain.calendar import format_local
from bot.flags import BOT_STRATEGY_TITLE, FlagState, MemoryProvider, valid_flag_key
from bot.flags.memory import Write
from bot.metrics import MetricQuery, MetricReading, MetricsSource, StaticMetricsSource
from bot.runtime import build_services
from bot.services import utc_now
from bot.usecases import schedule
from messages.plain import Control, render
from storage.migrate import upgrade

SECRET = "rollout-bot-shell"
CHANNEL = "C0SHELL"
HELP = """Type a /rollout command (try /rollout help), a number to click that button or checkbox,
`set error_rate=0.4 latency_p95=120` to give the gate metric values when Datadog is not set up,
`later 6h` or `later 2d` to move the clock on (soak time), `tick` to run the trigger watch, due reminders and
digests now, `quit` to leave."""


class TrackingExecutor(ThreadPoolExecutor):
    """Remembers the work Bolt hands it, so the shell can wait for a command's answer."""

    def __init__(self) -> None:
        super().__init__(max_workers=4, thread_name_prefix="shell-lazy")
        self.pending: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.pending.append(future)
        return future

    def settle(self, timeout: float = 30.0) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            wait(batch, timeout=timeout)


class TypedMetrics(MetricsSource):
    """Metric values typed into the shell, read at each snapshot."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def snapshot(self, queries: Sequence[MetricQuery], *, now: datetime) -> dict[str, MetricReading]:
        return StaticMetricsSource(self.values).snapshot(queries, now=now)


class ShellFlags(MemoryProvider):
    """The shell's flag service, in memory: a rollout's flag exists as soon as it is asked for,
    so `/rollout start` works without creating flags first."""

    name = "Shell flags"

    def read(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        if valid_flag_key(flag_key) and not self.read_raw(flag_key).exists:
            with contextlib.suppress(ValueError):  # created meanwhile
                self.create(flag_key)
        return self.read_raw(flag_key, strategy_id=strategy_id)

    def read_raw(self, flag_key: str, *, strategy_id: str | None = None) -> FlagState:
        return super().read(flag_key, strategy_id=strategy_id)


def describe_write(write: Write) -> str:
    if write.op in ("on", "off"):
        return f"[flag] {write.flag_key} turned {write.op}"
    return f"[flag] {write.flag_key}: {BOT_STRATEGY_TITLE} strategy at {write.percent:g}%"


class Shell:
    def __init__(self, settings: Settings, out: TextIO) -> None:
        self.out = out
        self.user = "U0YOU"
        self.slack = LocalSlack(self._collect, admins={self.user}).start()
        self.typed = TypedMetrics()
        settings = replace(
            settings,
            slack_bot_token="xoxb-shell",
            slack_signing_secret=SECRET,
            slack_app_token=None,
            slack_api_url=self.slack.api_url,
        )
        upgrade(settings.database_url)
        self.svc = build_services(settings)
        self.svc.metrics = self.svc.metrics or self.typed
        # Without FLAG_PROVIDER the shell's flags live in memory, and every write is printed.
        self.flags = ShellFlags() if self.svc.flags is None else None
        self.svc.flags = self.svc.flags or self.flags
        self.flag_writes_shown = 0
        # `later 1d` moves the shell's clock, so soak times can be tried without waiting.
        self.offset = timedelta()
        self.svc.clock = lambda: utc_now() + self.offset
        self.datadog = settings.datadog_configured
        self.executor = TrackingExecutor()
        self.app: App = build_app(self.svc, executor=self.executor)
        self.shown: list[Posted] = []
        # Where uploads (charts, exported plans) are saved for the person at the terminal.
        self.files = Path(
            os.environ.get("ROLLOUT_SHELL_FILES") or Path(tempfile.gettempdir()) / "rollout-bot-shell"
        )
        self.controls: dict[int, tuple[Posted, Control]] = {}
        self.next_number = 1

    # -- output -----------------------------------------------------------------------

    def _collect(self, posted: Posted) -> None:
        self.shown.append(posted)

    def flush(self) -> None:
        if self.flags is not None:
            writes = self.flags.writes
            for write in writes[self.flag_writes_shown :]:
                self.out.write(f"\n{describe_write(write)}\n")
            self.flag_writes_shown = len(writes)
        shown, self.shown = self.shown, []
        for posted in shown:
            if posted.kind == "file":
                self._show_files(posted)
                continue
            label = {
                "message": "posted",
                "update": "updated",
                "ephemeral": "only you",
                "reply": "only you",
                "view": "form",
            }[posted.kind]
            if posted.kind == "message" and posted.thread_ts:
                label = "in thread"
            controls: list[Control] = []
            if posted.kind == "view":
                text = f"“{posted.text or 'a form'}” opens a form in Slack; the shell has no forms."
            else:
                text, controls = render(posted.blocks, posted.text, self.next_number)
            for control in controls:
                self.controls[self.next_number] = (posted, control)
                self.next_number += 1
            self.out.write(f"\n[{label}]\n{text}\n")
        self.out.flush()

    def _show_files(self, posted: Posted) -> None:
        """An upload (a chart, an exported plan): where Slack would show it, and the file the
        shell saved it to, so a chart can be opened."""
        where = (
            f"the thread of {posted.thread_ts} in {posted.channel}" if posted.thread_ts else posted.channel
        )
        self.files.mkdir(parents=True, exist_ok=True)
        lines = [f"\n[file] posted in {where}" + (f": {posted.text}" if posted.text else "")]
        for name, data in posted.files:
            path = self.files / (Path(name).name or "upload")
            path.write_bytes(data)
            lines.append(f"  {name} ({len(data):,} bytes) written to {path}")
        self.out.write("\n".join(lines) + "\n")

    # -- input ------------------------------------------------------------------------

    def _dispatch(self, body: str, content_type: str) -> None:
        timestamp = str(int(time.time()))
        signature = (
            "v0=" + hmac.new(SECRET.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
        )
        response = self.app.dispatch(
            BoltRequest(
                body=body,
                headers={
                    "content-type": [content_type],
                    "x-slack-request-timestamp": [timestamp],
                    "x-slack-signature": [signature],
                },
            )
        )
        if response.body:
            try:
                ack = json.loads(response.body)
            except ValueError:
                ack = {"text": response.body}
            if ack.get("text") or ack.get("blocks"):
                self.slack.reply(ack)
        self.settle()

    def settle(self) -> None:
        """Waits for the command's work, then delivers what it announced."""
        self.executor.settle()
        drain_outbox(self.svc)
        self.executor.settle()
        self.flush()

    def command(self, text: str) -> None:
        fields = {
            "team_id": TEAM_ID,
            "team_domain": "shell",
            "channel_id": CHANNEL,
            "channel_name": "rollouts",
            "user_id": self.user,
            "user_name": "you",
            "command": "/rollout",
            "text": text,
            "response_url": self.slack.response_url(uuid.uuid4().hex),
            "trigger_id": "",
            "api_app_id": APP_ID,
        }
        self._dispatch(urlencode(fields), "application/x-www-form-urlencoded")

    def click(self, number: int) -> None:
        if number not in self.controls:
            self.out.write(f"There is no [{number}] on screen.\n")
            return
        posted, control = self.controls[number]
        current = self._current(posted)
        action: dict[str, Any] = {
            "action_id": control.action_id,
            "block_id": control.block_id,
            "action_ts": f"{time.time():.6f}",
        }
        if control.kind == "checkbox":
            ticked = {c.value for c in _checkboxes(current.blocks, control.block_id) if c.checked}
            ticked ^= {control.value}
            action |= {"type": "checkboxes", "selected_options": [{"value": v} for v in sorted(ticked)]}
        else:
            action |= {"type": "button", "value": control.value}
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM_ID, "domain": "shell"},
            "user": {"id": self.user, "name": "you", "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "channel": {"id": CHANNEL, "name": "rollouts"},
            "container": {
                "type": "message",
                "channel_id": CHANNEL,
                "message_ts": current.ts,
                "is_ephemeral": not current.ts,
            },
            "message": {"ts": current.ts, "text": current.text, "blocks": current.blocks, "type": "message"},
            "trigger_id": "",
            "response_url": self.slack.response_url(uuid.uuid4().hex),
            "actions": [action],
        }
        self._dispatch(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def _current(self, posted: Posted) -> Posted:
        """The message as it is now: the bot may have edited it since it was shown."""
        try:
            message = self.slack.message(posted.channel, posted.ts)
        except KeyError:
            return posted
        return replace(posted, text=message["text"], blocks=message["blocks"])

    def set_values(self, words: list[str]) -> None:
        for word in words:
            name, _, raw = word.partition("=")
            try:
                value = float(raw)
            except ValueError:
                self.out.write(f"`{word}` is not name=number\n")
                continue
            if not math.isfinite(value):
                self.out.write(f"`{word}` is not a finite number\n")
                continue
            self.typed.values[name] = value
        self.out.write(
            "Metric values: "
            + (", ".join(f"{k}={v:g}" for k, v in sorted(self.typed.values.items())) or "none")
            + "\n"
        )

    def later(self, amount: str) -> None:
        unit = {"h": "hours", "d": "days", "m": "minutes"}.get(amount[-1:])
        try:
            step = timedelta(**{unit: float(amount[:-1])}) if unit else None
        except ValueError:
            step = None
        if step is None or step <= timedelta():
            self.out.write("Say how much later, like `later 6h` or `later 2d`.\n")
            return
        self.offset += step
        self.out.write(f"The clock now reads {format_local(self.svc.clock(), 'UTC')}.\n")

    def handle(self, line: str) -> bool:
        """One line typed; False when the shell should end."""
        line = line.strip()
        if not line:
            return True
        if line in ("quit", "exit"):
            return False
        if line == "help":
            self.out.write(HELP + "\n")
        elif line.startswith("/rollout"):
            self.command(line[len("/rollout") :].strip())
        elif line.isdigit():
            self.click(int(line))
        elif line.startswith("set "):
            self.set_values(line.split()[1:])
        elif line.startswith("later "):
            self.later(line.split(maxsplit=1)[1])
        elif line == "tick":
            # As `serve` would have: its watch runs every few minutes whatever the clock did.
            schedule.watch_now(self.svc)
            jobs.run_due(self.svc)
            self.settle()
            charts.run_due(self.svc)  # a digest's chart follows its text, as under `serve`
            self.settle()
        else:
            self.out.write("Not understood. " + HELP + "\n")
        return True

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.slack.stop()
        self.svc.db.dispose()


def _checkboxes(blocks: list[dict[str, Any]], block_id: str) -> list[Control]:
    from messages.plain import controls

    return [c for c in controls([b for b in blocks if b.get("block_id") == block_id]) if c.kind == "checkbox"]


def run_shell(stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    settings = load_settings()
    shell = Shell(settings, out)
    where = settings.database_url.split("@")[-1]
    out.write(f"Rollout Bot shell, database {where}\n")
    if not shell.datadog:
        out.write(
            "Datadog is not set up (DD_API_KEY, DD_APP_KEY): type `set error_rate=0.4 latency_p95=120` "
            "to give the gate its values (before /rollout start, which measures the baseline, "
            "or run /rollout baseline after).\n"
        )
    out.write(HELP + "\n")
    interactive = stdin.isatty()
    try:
        while True:
            if interactive:
                out.write("rollout> ")
                out.flush()
            line = stdin.readline()
            if not line or not shell.handle(line):
                break
    except KeyboardInterrupt:
        pass
    finally:
        shell.close()
    return 0
