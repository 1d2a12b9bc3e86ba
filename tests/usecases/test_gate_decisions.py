"""What the gate decides, through the use cases and the due jobs (SQLite and Postgres): a
trigger whose change cannot be computed blocks the advance but is not fired (the watch warns
once, and neither pauses nor rolls back); an overridden advance tells the stakeholders who
overrode it and why; an advance is bound to the step the person saw."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.delivery import jobs, status_board
from bot.delivery.scheduler import drain_outbox
from bot.devtools.local_slack import LocalSlack
from bot.domain.calendar import format_local
from bot.domain.plans.model import Metric, Phase, Plan, Rule, Step
from bot.errors import AlreadyMoved
from bot.metrics import StaticMetricsSource
from bot.services import Actor, Services
from bot.usecases import advance, measure, plan_store
from bot.usecases import start as starting
from storage.db import Database
from storage.enums import EventKind, RolloutStatus
from storage.models import DueJob, Event, Rollout
from tests.support import Clock, body, make_services

TEAM = "T0GATES"
OWNER = "WOWNERGATE"
STAKE = "CSTAKEGATE"
# The trigger is relative to a baseline of 0: any rise is an unbounded relative change.
AT_START = {"error_rate": 0.5, "error_spike": 0.0}
RISEN = {"error_rate": 0.5, "error_spike": 0.3}


def plan(name: str, on_trigger: str = "pause") -> Plan:
    return Plan(
        name=name,
        title=f"Plan {name}",
        phases=(Phase("Gradual Rollout", steps=(Step(25), Step(50), Step(75), Step(100))),),
        metrics=(Metric("error_rate", "Error rate", "errors{service:{service}}", Rule.UPPER, threshold=1.0),),
        triggers=(
            Metric("error_spike", "Error spike", "spike{service:{service}}", Rule.RELATIVE, threshold=50),
        ),
        on_trigger=on_trigger,
    )


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 3, 11, 17, 0, tzinfo=UTC))  # a Monday, 10:00 in Los Angeles


@pytest.fixture
def svc(db: Database, slack: LocalSlack, clock: Clock) -> Services:
    services = make_services(db, slack, clock, StaticMetricsSource(AT_START))
    importer = Actor(team_id=TEAM, user_id="U0IMPORTER", channel_id="C0IMPORT")
    plan_store.save(services, importer, plan("pausing"), source="")
    plan_store.save(services, importer, plan("autoback", on_trigger="rollback"), source="")
    return services


@pytest.fixture
def actor() -> Actor:
    return Actor(team_id=TEAM, user_id=OWNER, channel_id="C" + uuid.uuid4().hex[:9].upper())


def start(svc: Services, actor: Actor, template: str = "pausing") -> int:
    command = starting.Start(feature="checkout-v2", template=template, stakeholders=(STAKE,))
    rollout_id = starting.start(svc, actor, command)
    status_board.post(svc, rollout_id)
    measure.capture_baseline(svc, rollout_id)
    return rollout_id


def row(svc: Services, rollout_id: int) -> Rollout:
    with svc.db.reading() as session:
        return session.get_one(Rollout, rollout_id)


def events(svc: Services, rollout_id: int, *kinds: EventKind) -> list[Event]:
    with svc.db.reading() as session:
        rows = session.scalars(select(Event).where(Event.rollout_id == rollout_id).order_by(Event.id)).all()
        return [e for e in rows if e.kind in kinds]


def watch_now(svc: Services, rollout_id: int) -> None:
    """Runs the rollout's watch at once, as if its period had passed, and delivers."""
    with svc.db.transaction() as session:
        session.execute(
            update(DueJob)
            .where(DueJob.rollout_id == rollout_id, DueJob.kind == "watch")
            .values(due_at=svc.clock() - timedelta(seconds=1))
        )
    jobs.run_due(svc)
    drain_outbox(svc)


def posts(slack: LocalSlack, channel: str, milestone: str) -> list[dict[str, Any]]:
    out = []
    for call in slack.calls("chat.postMessage"):
        key = ((call.params.get("metadata") or {}).get("event_payload") or {}).get("key", "")
        if call.params.get("channel") == channel and milestone in key:
            out.append(call.params)
    return out


def soaked(svc: Services, rollout_id: int) -> None:
    with svc.db.transaction() as session:
        session.execute(
            update(Rollout)
            .where(Rollout.id == rollout_id)
            .values(step_started_at=svc.clock() - timedelta(days=14))
        )


# --- incomputable is not fired ---------------------------------------------------------------


@pytest.mark.parametrize("template", ["pausing", "autoback"])
def test_an_incomputable_trigger_warns_once_and_neither_pauses_nor_rolls_back(
    svc: Services, actor: Actor, slack: LocalSlack, clock: Clock, template: str
) -> None:
    rollout_id = start(svc, actor, template)
    svc.metrics = StaticMetricsSource(RISEN)

    watch_now(svc, rollout_id)
    clock.move(600)
    watch_now(svc, rollout_id)

    assert row(svc, rollout_id).status is RolloutStatus.ACTIVE
    assert events(svc, rollout_id, EventKind.TRIGGER_FIRED, EventKind.PAUSED, EventKind.ROLLED_BACK) == []
    [warning] = posts(slack, actor.channel_id, "undecided:error_spike:0:0")
    assert warning["thread_ts"]  # in the status thread
    assert body(warning).startswith(
        ":warning: Rollback trigger *Error spike* of *checkout-v2* cannot be judged at 25%: "
        "baseline is 0, so any rise is an unbounded relative change (0 → 0.3)."
    )
    assert f"<@{OWNER}>: I did not pause or roll back" in body(warning)
    assert posts(slack, actor.channel_id, "trigger:") == []


@pytest.mark.parametrize("template", ["pausing", "autoback"])
def test_an_incomputable_trigger_blocks_the_advance_without_firing(
    svc: Services, actor: Actor, template: str
) -> None:
    rollout_id = start(svc, actor, template)
    soaked(svc, rollout_id)
    svc.metrics = StaticMetricsSource(RISEN)

    outcome = advance.advance(svc, actor, advance.may_advance(svc, actor, rollout_id))

    assert outcome.moved is None and not outcome.rolled_back
    assert outcome.gate.fired == ()
    assert outcome.gate.blockers == (
        "Rollback trigger Error spike cannot be judged: baseline is 0, so any rise is an unbounded "
        "relative change (0 → 0.3).",
    )
    assert outcome.override_token is not None  # a person may still decide to go on
    assert row(svc, rollout_id).status is RolloutStatus.ACTIVE


# --- the override's reason reaches the stakeholders ------------------------------------------


def test_the_stakeholder_line_of_an_overridden_advance_names_who_and_why(
    svc: Services, actor: Actor, slack: LocalSlack
) -> None:
    rollout_id = start(svc, actor)
    svc.metrics = StaticMetricsSource({"error_rate": 3.0, "error_spike": 0.0})
    blocked = advance.advance(svc, actor, advance.may_advance(svc, actor, rollout_id))
    assert blocked.override_token is not None

    advance.override(svc, actor, blocked.override_token, "the spike is a known batch job")
    drain_outbox(svc)

    [line] = posts(slack, STAKE, "step:0:1")
    shown = line["blocks"][0]["text"]["text"]
    assert shown.startswith(f":warning: *checkout-v2* moved to 50% by <@{OWNER}> past a closed gate (")
    assert "Reason: “the spike is a known batch job”." in shown
    # The link leads to the status message (its thread), not just the channel.
    status_ts = slack.messages(actor.channel_id)[0]["ts"]
    permalink = f"https://example.slack.com/archives/{actor.channel_id}/p{status_ts.replace('.', '')}"
    assert shown.endswith(f"<{permalink}|status thread>")
    assert (
        line["text"]
        == "Advanced past a closed gate: checkout-v2 now at 50% of Gradual Rollout: the spike is a known batch job"
    )
    [plain] = posts(slack, STAKE, "started")
    assert "past a closed gate" not in plain["text"] + json.dumps(plain["blocks"])


# --- one advance per intent ------------------------------------------------------------------


def moved_text(svc: Services, step: str) -> str:
    when = format_local(svc.clock(), "America/Los_Angeles")
    return (
        f"*checkout-v2* already moved to {step} of Gradual Rollout (by <@{OWNER}>, at {when}); "
        "nothing else changed."
    )


def test_a_button_rendered_at_a_step_no_longer_current_moves_nothing(svc: Services, actor: Actor) -> None:
    rollout_id = start(svc, actor)
    seen = advance.Intent(at=advance.Where(0, 0))
    first = advance.advance(svc, actor, advance.may_advance(svc, actor, rollout_id, seen))
    assert first.moved is not None and first.moved.to_title == "50%"

    with pytest.raises(AlreadyMoved) as refused:
        advance.may_advance(svc, actor, rollout_id, seen)

    assert str(refused.value) == moved_text(svc, "50%")
    assert (row(svc, rollout_id).phase_index, row(svc, rollout_id).step_index) == (0, 1)
    later = advance.Intent(at=advance.Where(0, 1))  # the button of the status message as it is now
    assert advance.advance(svc, actor, advance.may_advance(svc, actor, rollout_id, later)).moved is not None


def test_a_typed_advance_means_the_step_current_when_it_was_sent(
    svc: Services, actor: Actor, clock: Clock
) -> None:
    rollout_id = start(svc, actor)
    sent_before_start = advance.Intent(sent_at=clock() - timedelta(seconds=5))
    # A rollout that never moved began at the step the request meant, however they crossed.
    rollout = advance.may_advance(svc, actor, rollout_id, sent_before_start)
    assert advance.advance(svc, actor, rollout).moved is not None
    moved_at = row(svc, rollout_id).step_started_at

    with pytest.raises(AlreadyMoved) as refused:
        advance.may_advance(
            svc, actor, rollout_id, advance.Intent(sent_at=moved_at - timedelta(milliseconds=10))
        )

    assert str(refused.value) == moved_text(svc, "50%")
    sent_after = advance.Intent(sent_at=moved_at)
    assert (
        advance.advance(svc, actor, advance.may_advance(svc, actor, rollout_id, sent_after)).moved is not None
    )
    assert len(events(svc, rollout_id, EventKind.ADVANCED)) == 2
