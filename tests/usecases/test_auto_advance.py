"""Auto-advance, allowed hours and freezes, through the commands people type (parsed and
dispatched as the Slack listeners do), the use cases and the due-work tick, on SQLite and
Postgres, with the test's clock: a green rollout walks 1% → 25% → 50% by itself inside the
allowed hours and waits outside them; a freeze stops people and the tick, and "Advance
anyway…" takes a person through with a reason; a marginal canary judgement (read by the real
datadog-api-client from the Datadog stand-in), a fired trigger, a drifted flag and a pause
(even one made while the tick reads Datadog) each hold it; a checkpoint asks the owner; a
person's advance and the tick's at the same moment move one step."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select

from bot.delivery import jobs, status_board
from bot.delivery.scheduler import drain_outbox
from bot.devtools.local_slack import LocalSlack
from bot.domain.plans.model import Metric, Phase, Plan, Rule, Step
from bot.edge import dispatch, home
from bot.edge.answers import answering
from bot.edge.listeners.actions import CONTROL_BUTTONS
from bot.edge.parsing import parse_command
from bot.errors import AdvanceClosed, AlreadyMoved
from bot.flags import FlagError, MemoryProvider
from bot.ids import Action
from bot.metrics import MetricQuery, MetricReading, StaticMetricsSource
from bot.metrics.datadog import DatadogMetricsSource
from bot.services import Actor, Services
from bot.usecases import advance, controls, measure, plan_store
from bot.usecases import start as starting
from messages.blocks import Message
from storage import queries
from storage.db import Database
from storage.enums import EventKind, RolloutStatus, SnapshotKind
from storage.models import DueJob, Event, Rollout
from tests.fakes.datadog_api import FakeDatadog
from tests.support import Clock, body, make_services

TEAM = "T0AUTO"
OWNER = "WOWNERAUTO"
ADMIN = "WADMINAUTO"
GREEN = {"error_rate": 0.5, "error_spike": 0.2}
FIRING = {"error_rate": 0.5, "error_spike": 0.9}  # the trigger: +0.7 pp over the baseline
MONDAY_9 = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # Mon 7 Dec 09:00 in Los Angeles


def la(day: int, hour: int, minute: int = 0) -> datetime:
    """A December 2026 wall-clock time in Los Angeles, the rollouts' time zone."""
    return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo("America/Los_Angeles")).astimezone(UTC)


def plan() -> Plan:
    return Plan(
        name="walk",
        title="Plan walk",
        phases=(
            Phase("Canary", steps=(Step(1, min_business_days=1),)),
            Phase(
                "Gradual Rollout",
                steps=(
                    Step(25, min_business_days=1),
                    Step(50, min_business_days=1),
                    Step(75, min_business_days=1),
                ),
            ),
            Phase("Full Launch", steps=(Step(100, label="launch"),), advance="manual"),
        ),
        metrics=(Metric("error_rate", "Error rate", "errors{service:{service}}", Rule.UPPER, threshold=1.0),),
        triggers=(
            Metric("error_spike", "Error spike", "spike{service:{service}}", Rule.ABSOLUTE, threshold=0.5),
        ),
    )


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack(admins=[ADMIN]) as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_9)


@pytest.fixture
def flags() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def svc(db: Database, slack: LocalSlack, clock: Clock, flags: MemoryProvider) -> Services:
    services = replace(make_services(db, slack, clock, StaticMetricsSource(GREEN)), flags=flags)
    importer = Actor(team_id=TEAM, user_id="U0IMPORTER", channel_id="C0IMPORT")
    plan_store.save(services, importer, plan(), source="")
    return services


@pytest.fixture
def actor() -> Actor:
    return Actor(team_id=TEAM, user_id=OWNER, channel_id="C" + uuid.uuid4().hex[:9].upper())


class Said:
    """What the bot answered a person, as the listeners' repliers would post it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def progress(self, message: Message) -> None:
        pass

    @property
    def last(self) -> str:
        """The last answer in full (its `text` is only the push text)."""
        return body(self.messages[-1])

    @property
    def shown(self) -> str:
        """Every text of the last answer's blocks."""
        return json.dumps(self.messages[-1].blocks, ensure_ascii=False)


def say(svc: Services, actor: Actor, text: str) -> Said:
    """`/rollout <text>` typed in the rollout's channel."""
    said = Said()
    with answering(said, text.split()[0]):
        dispatch.run(svc, actor, parse_command(text), said, sent_at=svc.clock())
    return said


def start(svc: Services, actor: Actor, flags: MemoryProvider, template: str = "walk") -> int:
    flags.create("checkout-v2")
    rollout_id = starting.start(svc, actor, starting.Start(feature="checkout-v2", template=template))
    status_board.post(svc, rollout_id)
    measure.capture_baseline(svc, rollout_id)
    return rollout_id


def tick(svc: Services) -> None:
    """The due-work tick and the outbox, as the work process runs them."""
    jobs.run_due(svc)
    drain_outbox(svc)


def at(clock: Clock, svc: Services, moment: datetime) -> None:
    clock.now = moment
    tick(svc)


def where(svc: Services, rollout_id: int) -> str:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        return f"{rollout.current_step.percent:g}%"


def row(svc: Services, rollout_id: int) -> Rollout:
    with svc.db.reading() as session:
        found = session.get(Rollout, rollout_id)
        assert found is not None
        return found


def events(svc: Services, rollout_id: int, *kinds: EventKind) -> list[Event]:
    with svc.db.reading() as session:
        rows = session.scalars(select(Event).where(Event.rollout_id == rollout_id).order_by(Event.id)).all()
        return [e for e in rows if e.kind in kinds]


def auto_due(svc: Services, rollout_id: int) -> datetime | None:
    with svc.db.reading() as session:
        return session.scalar(
            select(DueJob.due_at).where(DueJob.rollout_id == rollout_id, DueJob.kind == "auto")
        )


def latest_check(svc: Services, rollout_id: int) -> dict[str, Any]:
    """The verdict of the gate the tick read last (a CHECK snapshot: it moved nothing)."""
    with svc.db.reading() as session:
        snap = queries.latest_snapshot(session=session, rollout_id=rollout_id, kind=SnapshotKind.CHECK)
        assert snap is not None
        return dict(snap.verdict or {})


def status_blocks(slack: LocalSlack, channel: str) -> list[dict[str, Any]]:
    """The status message as the last edit (or its first post) left it."""
    shown = [
        c.params
        for c in slack.calls()
        if c.method in ("chat.postMessage", "chat.update")
        and c.params.get("channel") == channel
        and any(b.get("block_id") == "steps" for b in c.params.get("blocks") or [])
    ]
    return list(shown[-1]["blocks"])


def status_text(slack: LocalSlack, channel: str) -> str:
    return "\n".join(b["text"]["text"] for b in status_blocks(slack, channel) if b.get("type") == "section")


def click(svc: Services, actor: Actor, slack: LocalSlack, label: str) -> Said:
    """A button of the status message's controls, as the actions listener runs it."""
    [controls_block] = [b for b in status_blocks(slack, actor.channel_id) if b.get("block_id") == "controls"]
    [button] = [e for e in controls_block["elements"] if e["text"]["text"] == label]
    said = Said()
    subcommand = CONTROL_BUTTONS[Action(button["action_id"])]
    with answering(said, subcommand):
        dispatch.run_for(svc, actor, subcommand, int(button["value"].split(":")[0]), said)
    return said


def thread_texts(slack: LocalSlack, channel: str) -> list[str]:
    """What each post shows: its sections, or its text when it has none (an announcement's
    `text` is the plain notification; what people read is in its blocks)."""
    return [
        "\n".join(b["text"]["text"] for b in c.params.get("blocks") or [] if b.get("type") == "section")
        or c.params.get("text", "")
        for c in slack.calls("chat.postMessage")
        if c.params.get("channel") == channel
    ]


# --- walking by itself ------------------------------------------------------------------------


def test_a_green_rollout_walks_1_25_50_by_itself_inside_the_hours_and_waits_outside_them(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider, slack: LocalSlack
) -> None:
    admin = replace(actor, user_id=ADMIN)
    assert "Mon–Fri 09:00–17:00" in say(svc, admin, "hours team mon-fri 09:00-17:00").last
    rollout_id = start(svc, actor, flags)
    said = say(svc, actor, "auto on checkout-v2")
    assert "auto-advance is on" in said.last
    # Each reader sees the time in their own zone; the fallback is the rollout's.
    assert "auto: next check at <!date^" in status_text(slack, actor.channel_id)
    assert "|Tue 8 Dec 09:00 PST>" in status_text(slack, actor.channel_id)

    at(clock, svc, la(7, 16))  # the soak (1 business day) is not over: nothing moves
    assert where(svc, rollout_id) == "1%"
    at(clock, svc, la(8, 9, 30))  # Tuesday, soak met, gate green, inside the hours
    assert where(svc, rollout_id) == "25%"
    assert flags.read("checkout-v2").percent == 25.0
    at(clock, svc, la(9, 9, 5))  # Wednesday's digest; 25% soaks until 09:30
    at(clock, svc, la(9, 9, 45))
    assert where(svc, rollout_id) == "50%"

    [first, second] = events(svc, rollout_id, EventKind.ADVANCED)
    assert (first.actor_id, first.data["from_step"], first.data["to_step"]) == (None, "1%", "25%")
    assert first.data["auto"] == "Error rate passes, no trigger fired, soak met"
    assert (second.data["from_step"], second.data["to_step"]) == ("25%", "50%")
    texts = thread_texts(slack, actor.channel_id)
    assert any(
        "*checkout-v2* is now at *25%* of Gradual Rollout, advanced automatically — gate green: "
        "Error rate passes, no trigger fired, soak met." in t
        for t in texts
    )

    # The digest (daily, 09:00) and the timeline tell what moved by itself.
    at(clock, svc, la(10, 9, 0))
    digests = [
        t
        for t in thread_texts(slack, actor.channel_id)
        if "advanced automatically 25% → 50% (gate green)" in t
    ]
    assert len(digests) == 1
    assert "advanced automatically 1% → *25%* (gate green)" in say(svc, actor, "timeline").shown

    # 50% soaks until Thursday 09:45; Thursday evening is outside the hours: it waits for Friday.
    at(clock, svc, la(10, 17, 30))
    assert where(svc, rollout_id) == "50%"
    assert auto_due(svc, rollout_id) == la(11, 9)
    assert "outside the allowed hours" in say(svc, actor, "advance checkout-v2").last  # people too
    at(clock, svc, la(11, 9, 1))
    assert where(svc, rollout_id) == "75%"
    # The next move reaches Full Launch, a manual phase: the owner is asked, once.
    at(clock, svc, la(14, 9, 5))
    at(clock, svc, la(14, 9, 10))
    assert where(svc, rollout_id) == "75%"
    asks = [t for t in thread_texts(slack, actor.channel_id) if "waits for you" in t]
    assert not [t for t in thread_texts(slack, actor.channel_id) if "is ready to advance" in t]  # no nagging
    assert asks == [
        ":raised_hand: *checkout-v2* waits for you at 75%: launch is a checkpoint: the owner "
        f"advances to it. <@{OWNER}>, advance it yourself; auto-advance carries on after that."
    ]
    assert auto_due(svc, rollout_id) is None


def test_while_the_tick_looks_the_status_says_checking_now_not_the_time_of_its_lease(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider, slack: LocalSlack
) -> None:
    rollout_id = start(svc, actor, flags)
    say(svc, actor, "auto on")
    seen: list[str] = []

    def someone_redraws_the_status() -> None:  # a change of theirs while the tick reads Datadog
        status_board.refresh(svc, rollout_id)
        seen.append(status_text(slack, actor.channel_id))

    svc.metrics = Meanwhile({"error_rate": 1.5, "error_spike": 0.2}, someone_redraws_the_status)
    at(clock, svc, la(8, 10))
    [during] = seen
    assert "auto: checking now" in during and "next check at" not in during
    after = status_text(slack, actor.channel_id)  # the error rate fails: it looks again in an hour
    assert "auto: next check at <!date^" in after and "|Tue 8 Dec 11:00 PST> (Error rate fails" in after
    assert where(svc, rollout_id) == "1%"


def test_a_person_may_advance_before_the_tick_and_the_tick_carries_on_from_there(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor, flags)
    say(svc, actor, "auto on")
    clock.now = la(8, 9, 10)
    say(svc, actor, "advance")  # the owner first
    assert where(svc, rollout_id) == "25%"
    tick(svc)
    assert where(svc, rollout_id) == "25%"  # the tick's row was for 1%: it moves nothing
    at(clock, svc, la(9, 9, 15))
    assert where(svc, rollout_id) == "50%"


def test_auto_advance_is_off_until_someone_turns_it_on_and_off_again_stops_it(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider, slack: LocalSlack
) -> None:
    rollout_id = start(svc, actor, flags)
    at(clock, svc, la(8, 10))
    assert where(svc, rollout_id) == "1%"
    assert auto_due(svc, rollout_id) is None
    assert (
        "auto-advance is on" in click(svc, actor, slack, "Auto-advance on").last
    )  # the status message's button
    at(clock, svc, la(8, 10, 1))
    assert where(svc, rollout_id) == "25%"
    assert "auto-advance is off" in click(svc, actor, slack, "Auto-advance off").last
    assert "auto:" not in status_text(slack, actor.channel_id)
    at(clock, svc, la(10, 10))
    assert where(svc, rollout_id) == "25%"
    stranger = replace(actor, user_id="WSTRANGER")
    assert "Only the owner" in say(svc, stranger, "auto on").last


# --- freezes ------------------------------------------------------------------------------------


def test_a_freeze_stops_people_and_the_tick_and_advance_anyway_takes_a_reason(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider, slack: LocalSlack
) -> None:
    admin = replace(actor, user_id=ADMIN)
    assert (
        "Only workspace admins" in say(svc, actor, 'freeze add 2026-12-08 2026-12-09 "release freeze"').last
    )
    added = say(svc, admin, 'freeze add 2026-12-08 2026-12-09 "release freeze"').last
    assert "“release freeze”: no advance from 2026-12-08 to 2026-12-09" in added
    rollout_id = start(svc, actor, flags)
    say(svc, actor, "auto on")

    at(clock, svc, la(8, 10))  # soak met, gate green, but frozen
    assert where(svc, rollout_id) == "1%"
    assert auto_due(svc, rollout_id) == la(10, 0)  # the end of the freeze, in Los Angeles
    assert "waiting: freeze “release freeze” until Thu 10 Dec 00:00 PST" in status_text(
        slack, actor.channel_id
    )
    home.publish(svc, TEAM, OWNER)  # the owner opens the App Home
    [published] = [c.params for c in slack.calls("views.publish") if c.params.get("user_id") == OWNER]
    assert "waiting: freeze “release freeze” until Thu 10 Dec 00:00 PST" in json.dumps(
        published["view"], ensure_ascii=False
    )

    refused = say(svc, actor, "advance checkout-v2")
    assert refused.last == (
        ":no_entry_sign: *checkout-v2* is not advanced now: freeze “release freeze” until "
        "Thu 10 Dec 00:00 PST. Advance anyway with a reason, or wait until then."
    )
    [button] = refused.messages[-1].blocks[-1]["elements"]
    assert button["text"]["text"] == "Advance anyway…"
    with pytest.raises(AdvanceClosed):
        advance.may_advance(svc, actor, rollout_id)

    moved = advance.override(svc, actor, button["value"], "the fix for a paying customer")
    assert (moved.from_title, moved.to_title) == ("1%", "25%")
    [overridden] = events(svc, rollout_id, EventKind.OVERRIDDEN)
    assert overridden.data["reason"] == "the fix for a paying customer"
    assert overridden.data["blockers"][0] == (
        "Not an allowed time: freeze “release freeze” until Thu 10 Dec 00:00 PST."
    )

    at(clock, svc, la(9, 23, 59))  # 25% has soaked, the freeze still holds
    assert where(svc, rollout_id) == "25%"
    at(clock, svc, la(10, 0, 1))
    assert where(svc, rollout_id) == "50%"

    listed = say(svc, actor, "freeze list").last
    freeze_id = listed.split("• ")[1].split(":")[0]
    say(svc, admin, f"freeze remove {freeze_id}")
    assert "none" in say(svc, actor, "freeze list").last


# --- what holds it ------------------------------------------------------------------------------


def test_a_fired_trigger_holds_it(svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider) -> None:
    rollout_id = start(svc, actor, flags)
    say(svc, actor, "auto on")
    with svc.db.transaction() as session:  # the watch only alerts: the tick's own gate holds it
        session.get_one(Rollout, rollout_id).watch_pauses = False
    svc.metrics = StaticMetricsSource(FIRING)
    at(clock, svc, la(8, 10))
    assert where(svc, rollout_id) == "1%"
    assert row(svc, rollout_id).status is RolloutStatus.ACTIVE
    assert events(svc, rollout_id, EventKind.ADVANCED) == []
    assert auto_due(svc, rollout_id) == la(8, 11)  # looked at again in an hour
    svc.metrics = StaticMetricsSource(GREEN)
    at(clock, svc, la(8, 11))
    assert where(svc, rollout_id) == "25%"


def test_a_pause_holds_it_and_a_resume_lets_it_go_on(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor, flags)
    say(svc, actor, "auto on")
    controls.pause(svc, actor, rollout_id, "support queue spiking")
    at(clock, svc, la(8, 10))
    assert where(svc, rollout_id) == "1%"
    assert row(svc, rollout_id).status is RolloutStatus.PAUSED
    controls.resume(svc, actor, rollout_id)
    at(clock, svc, la(8, 10, 5))
    assert where(svc, rollout_id) == "25%"

    # The owner pauses while the tick is reading Datadog for the next step: nothing moves.
    svc.metrics = meanwhile = Meanwhile(GREEN, lambda: controls.pause(svc, actor, rollout_id, "a call"))
    at(clock, svc, la(9, 10, 10))
    assert meanwhile.meanwhile is None  # the pause came during the gate's read
    assert where(svc, rollout_id) == "25%" and flags.read("checkout-v2").percent == 25.0
    assert row(svc, rollout_id).status is RolloutStatus.PAUSED
    assert len(events(svc, rollout_id, EventKind.ADVANCED)) == 1


def test_a_drifted_flag_holds_it(svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider) -> None:
    rollout_id = start(svc, actor, flags)
    say(svc, actor, "auto on")
    flags.set_percent("checkout-v2", 40)  # someone, by hand
    at(clock, svc, la(7, 10))  # the watch reads the flag
    at(clock, svc, la(8, 10))
    assert row(svc, rollout_id).flag_percent == 40.0
    assert where(svc, rollout_id) == "1%"
    assert auto_due(svc, rollout_id) is not None  # looked at again later


def test_a_phase_boundary_is_a_checkpoint_when_the_team_says_so(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider, slack: LocalSlack
) -> None:
    say(svc, replace(actor, user_id=ADMIN), "checkpoints team phases")
    rollout_id = start(svc, actor, flags)
    say(svc, actor, "auto on")
    at(clock, svc, la(8, 10))
    assert where(svc, rollout_id) == "1%"  # 1% → 25% leaves the Canary phase
    assert any("25% starts a new phase" in t for t in thread_texts(slack, actor.channel_id))
    say(svc, actor, "advance")
    at(clock, svc, la(9, 10, 5))
    assert where(svc, rollout_id) == "50%"  # inside the phase it goes on by itself


CONTROL = [200.0 + (i % 10) for i in range(30)]  # the flag-off cohort, one point a minute
SAME = list(reversed(CONTROL))  # the control's values: no change
SLOWER = [v + 40.0 for v in CONTROL]


class CanaryLatency:
    """The stand-in Datadog for a plan whose latency and CPU are judged by the statistical
    canary test against the flag-off cohort, read by the real datadog-api-client."""

    def __init__(self, datadog: FakeDatadog) -> None:
        self.datadog = datadog
        datadog.set_value("errors{service:checkout-v2}", 0.5)
        for name in ("latency", "cpu"):
            datadog.set_value(f"{name}{{service:checkout-v2,cohort:off}}", 204.5, series=CONTROL)
        self.canary(latency=SAME, cpu=SAME)

    def canary(self, *, latency: list[float], cpu: list[float]) -> None:
        self.datadog.set_value("latency{service:checkout-v2,cohort:on}", 204.5, series=latency)
        self.datadog.set_value("cpu{service:checkout-v2,cohort:on}", 204.5, series=cpu)


def judged_plan() -> Plan:
    """The walk, gated by an error rate and two judged metrics: latency weighs 4, CPU 1, so a
    CPU significantly higher scores 80 — between 75 and 95, a marginal judgement."""

    def judged(key: str, name: str, weight: float) -> Metric:
        return Metric(
            key,
            name,
            f"avg:{key}{{service:{{service}},cohort:on}}",
            Rule.RELATIVE,
            control_query=f"avg:{key}{{service:{{service}},cohort:off}}",
            unit="ms",
            judge="mann-whitney",
            weight=weight,
        )

    return replace(
        plan(),
        name="judged",
        title="Plan judged",
        metrics=(*plan().metrics, judged("latency", "Latency", 4.0), judged("cpu", "CPU", 1.0)),
        triggers=(),
    )


def test_a_marginal_judgement_holds_it_until_the_readings_are_clearly_green(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider, slack: LocalSlack
) -> None:
    with FakeDatadog() as datadog, DatadogMetricsSource("key", "app", api_url=datadog.url) as source:
        readings = CanaryLatency(datadog)
        svc.metrics = source
        plan_store.save(svc, replace(actor, user_id="U0IMPORTER"), judged_plan(), source="")
        flags.create("checkout-v2")
        rollout_id = starting.start(svc, actor, starting.Start(feature="checkout-v2", template="judged"))
        status_board.post(svc, rollout_id)
        say(svc, actor, "auto on checkout-v2")

        readings.canary(latency=SAME, cpu=SLOWER)
        at(clock, svc, la(8, 10))  # soak met, every rule passes, but the judgement is marginal
        assert where(svc, rollout_id) == "1%"
        assert events(svc, rollout_id, EventKind.ADVANCED) == []
        judgement = latest_check(svc, rollout_id)["judgement"]
        assert (judgement["verdict"], judgement["score"]) == ("MARGINAL", 80.0)
        assert auto_due(svc, rollout_id) == la(8, 11)  # looked at again in an hour
        shown = status_text(slack, actor.channel_id)
        assert "auto: next check at <!date^" in shown and "|Tue 8 Dec 11:00 PST>" in shown
        assert "(the canary judgement is marginal (score 80; failing: CPU; a person decides))" in shown
        home.publish(svc, TEAM, OWNER)  # the owner's App Home says the same
        [published] = [c.params for c in slack.calls("views.publish") if c.params.get("user_id") == OWNER]
        home_text = json.dumps(published["view"], ensure_ascii=False)
        assert "auto: next check at" in home_text and "the canary judgement is marginal" in home_text

        at(clock, svc, la(8, 11))  # still marginal an hour later: still held
        assert where(svc, rollout_id) == "1%"
        shown = status_text(slack, actor.channel_id)  # redrawn: the time shown never passes unchanged
        assert "|Tue 8 Dec 12:00 PST> (the canary judgement is marginal" in shown

        readings.canary(latency=SAME, cpu=SAME)  # clearly green: score 100
        at(clock, svc, la(8, 12))
        assert where(svc, rollout_id) == "25%"
        [moved] = events(svc, rollout_id, EventKind.ADVANCED)
        assert moved.data["auto"] == "Error rate passes, Latency passes, CPU passes, soak met"
        assert "marginal" not in status_text(slack, actor.channel_id)


# --- one step for two advances at once ----------------------------------------------------------


class Meanwhile(StaticMetricsSource):
    """Readings from a table; the first read of the gate (the success criteria, not the
    watch's triggers alone) also runs `meanwhile`: what a person does while the tick is
    reading Datadog to advance."""

    def __init__(self, values: dict[str, float], meanwhile: Callable[[], object]) -> None:
        super().__init__(values)
        self.meanwhile: Callable[[], object] | None = meanwhile

    def snapshot(self, queries: Sequence[MetricQuery], *, now: datetime) -> dict[str, MetricReading]:
        act = self.meanwhile
        if act is not None and any(q.name == "error_rate" for q in queries):
            self.meanwhile = None
            act()
        return super().snapshot(queries, now=now)


class MeetingMetrics(StaticMetricsSource):
    """Holds the first two reads until both have arrived: the two advances then race for the
    rollout's lock with the same green gate in hand. Later reads pass."""

    def __init__(self, values: dict[str, float]) -> None:
        super().__init__(values)
        self.barrier = threading.Barrier(2, timeout=30)
        self.reads = 0
        self.lock = threading.Lock()

    def snapshot(self, queries: Sequence[MetricQuery], *, now: datetime) -> dict[str, MetricReading]:
        with self.lock:
            self.reads += 1
            first_two = self.reads <= 2
        if first_two:
            self.barrier.wait()
        return super().snapshot(queries, now=now)


def test_a_persons_advance_and_the_ticks_at_the_same_moment_move_one_step(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider
) -> None:
    # 25% needs no soak here: once one advance has moved it, the other would find a green gate
    # at 25% and move again, but for being bound to the step it read.
    walk = plan()
    canary, gradual, *rest = walk.phases
    quick = replace(gradual, steps=(replace(gradual.steps[0], min_business_days=0), *gradual.steps[1:]))
    plan_store.save(svc, actor, replace(walk, name="quick", phases=(canary, quick, *rest)), source="")
    rollout_id = start(svc, actor, flags, template="quick")
    say(svc, actor, "auto on")
    clock.now = la(8, 10)
    with svc.db.transaction() as session:  # only the auto row is due: its read meets the person's
        session.execute(delete(DueJob).where(DueJob.rollout_id == rollout_id, DueJob.kind != "auto"))
    meeting = MeetingMetrics(GREEN)
    svc.metrics = meeting
    results: dict[str, Any] = {}

    def person() -> None:
        seen = advance.Intent(at=advance.Where(0, 0))
        try:
            results["person"] = advance.advance(svc, actor, advance.may_advance(svc, actor, rollout_id, seen))
        except AlreadyMoved as moved:
            results["person"] = moved

    def the_tick() -> None:
        results["tick"] = jobs.run_due(svc)

    threads = [threading.Thread(target=person), threading.Thread(target=the_tick)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert meeting.reads >= 2 and not meeting.barrier.broken  # both read the gate before either moved
    assert where(svc, rollout_id) == "25%"
    assert len(events(svc, rollout_id, EventKind.ADVANCED)) == 1
    assert [e.data["after"] for e in events(svc, rollout_id, EventKind.FLAG_SET)][-1] == 25.0
    assert len(events(svc, rollout_id, EventKind.FLAG_SET)) == 2  # at the start, and one move


def test_a_flag_write_the_service_refuses_moves_nothing_and_the_owner_hears_it_once(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider, slack: LocalSlack
) -> None:
    rollout_id = start(svc, actor, flags)
    at(clock, svc, la(8, 9, 55))  # the watch has just read the flag
    say(svc, actor, "auto on")
    flags.fail_next(FlagError("the token has no write access"))
    at(clock, svc, la(8, 10))
    assert where(svc, rollout_id) == "1%"
    [failed] = events(svc, rollout_id, EventKind.FLAG_WRITE_FAILED)
    assert (failed.actor_id, failed.data["reason"]) == (None, "the token has no write access")
    told = [t for t in thread_texts(slack, actor.channel_id) if "Auto-advance could not move" in t]
    assert told == [
        ":warning: Auto-advance could not move *checkout-v2* from 1%: the flag service did not "
        "take the write: the token has no write access. Nothing moved; it tries again in an hour. "
        f"<@{OWNER}>, or advance it yourself."
    ]
    at(clock, svc, la(8, 11))  # the service takes writes again
    assert where(svc, rollout_id) == "25%"


def test_an_owner_freezes_their_own_rollout_and_lifts_the_freeze(
    svc: Services, actor: Actor, clock: Clock, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor, flags)
    added = say(svc, actor, 'freeze add 2026-12-08 2026-12-31 "launch event" --for checkout-v2').last
    assert "“launch event”: no advance of *checkout-v2* from 2026-12-08 to 2026-12-31" in added
    listed = say(svc, replace(actor, user_id="WSOMEONE"), "freeze list").last
    assert "“launch event” 2026-12-08 → 2026-12-31 (only *checkout-v2*)" in listed
    stranger = replace(actor, user_id="WSTRANGER")
    freeze_id = listed.split("• ")[1].split(":")[0]
    assert "Only the owner" in say(svc, stranger, f"freeze remove {freeze_id}").last

    clock.now = la(8, 10)
    assert "freeze “launch event” until Fri 1 Jan 00:00 PST" in say(svc, actor, "advance").last
    say(svc, actor, f"freeze remove {freeze_id}")
    say(svc, actor, "advance")
    assert where(svc, rollout_id) == "25%"
    assert "there is no freeze" in say(svc, actor, f"freeze remove {freeze_id}").last
