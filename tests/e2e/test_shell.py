"""`rollout-bot shell` drives a rollout from start to completion, typed into like a person would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.enums import EventKind, RolloutStatus
from storage.models import Event, Rollout


def run_shell(tmp_path: Path, lines: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "SLACK_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'shell.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input="\n".join(lines) + "\nquit\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return done.stdout


def numbers_of(output: str, label: str) -> list[int]:
    """The numbers the shell printed for a button or checkbox label."""
    return [int(n) for n in re.findall(rf"\[(\d+)\] (?:☐ |☑ |\(){re.escape(label)}", output)]


def test_shell_clicks_boxes_and_buttons_by_number(tmp_path: Path) -> None:
    script = [
        "set error_rate=0.3",
        "/rollout start checkout-v2 aggressive",
        "1",
        "2",
        "3",
        "4",
        "later 2d",
        "/rollout advance",
    ]
    out = run_shell(tmp_path, script)
    assert "☑ Enable feature flag for 5% of users" in out
    assert "advanced from 5% to 50%" in out
    # The Advance button on the newest status message moves it on once soak is met.
    advance_buttons = numbers_of(out, "Advance")
    assert advance_buttons
    out2 = run_shell(tmp_path, ["set error_rate=0.3", "later 3d", "/rollout status"])
    assert "step 50%" in out2

    db = Database(f"sqlite:///{tmp_path / 'shell.db'}")
    with db.reading() as session:
        rollout = session.scalars(select(Rollout)).one()
        kinds = [e.kind for e in session.scalars(select(Event).order_by(Event.id))]
    db.dispose()
    assert rollout.status is RolloutStatus.ACTIVE and rollout.step_index == 0 and rollout.phase_index == 1
    assert kinds.count(EventKind.ITEM_CHECKED) == 4
    assert EventKind.ADVANCED in kinds


@pytest.mark.parametrize("template", ["aggressive"])
def test_shell_completes_a_rollout(tmp_path: Path, template: str) -> None:
    out = run_shell(
        tmp_path,
        [
            "set error_rate=0.3",
            f"/rollout start launch-x {template}",
            "1",
            "2",
            "3",
            "4",
            "later 2d",
            "/rollout advance",
            "later 2d",
            "/rollout advance",
            "/rollout complete",
        ],
    )
    assert "Datadog is not set up" in out
    assert "[1] ☐ Enable feature flag for 5% of users" in out
    assert "advanced from 5% to 50%" in out
    assert "advanced from 50% to 100%" in out
    assert "launch-x completed its rollout" in out
    db = Database(f"sqlite:///{tmp_path / 'shell.db'}")
    with db.reading() as session:
        rollout = session.scalars(select(Rollout)).one()
    db.dispose()
    assert rollout.status is RolloutStatus.COMPLETED


def test_shell_runs_the_flag_in_memory_and_prints_every_write(tmp_path: Path) -> None:
    out = run_shell(
        tmp_path,
        [
            "set error_rate=0.3",
            "/rollout start checkout-v2 aggressive",
            "1",
            "2",
            "3",
            "4",
            "later 2d",
            "/rollout advance",
            "/rollout rollback checkout-v2 errors",
        ],
    )
    writes = [line for line in out.splitlines() if line.startswith("[flag]")]
    assert writes == [
        "[flag] checkout-v2: Rollout Bot strategy at 5%",
        "[flag] checkout-v2 turned on",
        "[flag] checkout-v2: Rollout Bot strategy at 50%",
        "[flag] checkout-v2: Rollout Bot strategy at 0%",
        "[flag] checkout-v2 turned off",
    ]
    assert "Flag `checkout-v2`: at 5%, as planned" in out


def test_shell_auto_advance_moves_the_rollout_when_the_clock_is_moved_on(tmp_path: Path) -> None:
    script = [
        "set error_rate=0.3",
        "/rollout start checkout-v2 aggressive",
        "1",
        "2",
        "3",
        "4",
        "/rollout auto on",
        "later 4d",  # half a business day, whatever the day of the week today
        "tick",
    ]
    out = run_shell(tmp_path, script)
    assert "auto-advance is on" in out
    assert "advanced automatically — gate green" in out

    db = Database(f"sqlite:///{tmp_path / 'shell.db'}")
    with db.reading() as session:
        advanced = session.scalars(select(Event).where(Event.kind == EventKind.ADVANCED)).all()
        assert [(e.actor_id, e.data["to_step"]) for e in advanced] == [(None, "50%")]
    db.dispose()


def test_a_trigger_typed_into_the_shell_fires_at_the_next_tick_as_under_serve(tmp_path: Path) -> None:
    out = run_shell(
        tmp_path,
        [
            "set error_rate=0.3",
            "/rollout start checkout-v2 aggressive",
            "set error_rate=1.5",  # +1.2 points over the baseline; the trigger allows +1
            "later 1h",
            "tick",
        ],
    )
    after_tick = out.split("The clock now reads", 1)[1]
    assert "Rollback trigger fired on checkout-v2 at 5%" in after_tick and "• Error rate:" in after_tick
    assert "== ⏸ checkout-v2 ==" in after_tick  # the status message, edited: paused

    db = Database(f"sqlite:///{tmp_path / 'shell.db'}")
    with db.reading() as session:
        rollout = session.scalars(select(Rollout)).one()
        kinds = [e.kind for e in session.scalars(select(Event).where(Event.rollout_id == rollout.id))]
    db.dispose()
    assert rollout.status is RolloutStatus.PAUSED
    assert EventKind.TRIGGER_FIRED in kinds
