"""Reminders to the owner, one per step: on SQLite and Postgres, with the real due-work tick and
outbox, posting to a local Slack. "Ready" and "overdue" never both arrive for one step, and the
stale reminder offers "resume" only to a paused rollout."""

from __future__ import annotations

from datetime import timedelta

from bot.devtools.local_slack import LocalSlack
from bot.metrics import StaticMetricsSource
from bot.services import Services
from bot.usecases import controls
from tests.delivery import test_jobs as base
from tests.delivery.test_jobs import LA, QUIET, RED, actor, local, posts, start, tick
from tests.support import Clock

# The due-work tests' own fixtures: a Slack, a clock and services of this test's own.
slack, clock, channel, svc = base.slack, base.clock, base.channel, base.svc


def shown(params: dict[str, object]) -> str:
    return str(params["blocks"][0]["text"]["text"])  # type: ignore[index]


def test_when_ready_and_overdue_fall_due_together_only_ready_is_sent(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    start(svc, channel)
    # Nobody ran the tick between the end of the soak and the planned end: both are due now.
    tick(svc, clock, local(LA, 2024, 3, 13, 10, 0))
    [ready] = posts(slack, channel, "ready:0:0")
    assert "is ready to advance from 25%" in shown(ready)
    assert posts(slack, channel, "overdue") == []
    # And it stays so: the overdue reminder of this step is never sent after the ready one.
    tick(svc, clock, local(LA, 2024, 3, 14, 10, 0))
    assert posts(slack, channel, "overdue") == []


def test_overdue_comes_alone_while_the_gate_is_closed_and_ready_later_on_its_own(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    start(svc, channel)
    svc.metrics = StaticMetricsSource(RED)
    end = local(LA, 2024, 3, 13, 10, 0)
    tick(svc, clock, end)
    [overdue] = posts(slack, channel, "overdue:0:0")
    assert overdue["text"].startswith("checkout-v2 is past the planned end of 25%")
    assert posts(slack, channel, "ready") == []

    svc.metrics = StaticMetricsSource(QUIET)
    tick(svc, clock, end + timedelta(hours=2))
    assert len(posts(slack, channel, "ready:0:0")) == 1
    assert len(posts(slack, channel, "overdue")) == 1


def test_the_stale_reminder_offers_resume_only_when_paused(
    svc: Services, clock: Clock, slack: LocalSlack, channel: str
) -> None:
    running = start(svc, channel, feature="running-one")
    svc.metrics = StaticMetricsSource(RED)  # never ready, so only stale speaks
    tick(svc, clock, local(LA, 2024, 3, 15, 10, 0))
    [stale] = posts(slack, channel, "stale")
    assert "advance or roll it back" in shown(stale) and "resume" not in shown(stale)

    other = channel[:-1] + ("X" if channel[-1] != "X" else "Y")
    paused = start(svc, other, feature="paused-one")
    controls.pause(svc, actor(other), paused, "waiting for a fix")
    tick(svc, clock, local(LA, 2024, 3, 21, 10, 0))
    [stale] = posts(slack, other, "stale")
    assert "it is paused at 25%" in shown(stale) and "resume or roll it back" in shown(stale)
    assert running != paused
