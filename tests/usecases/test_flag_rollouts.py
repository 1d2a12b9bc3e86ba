"""The flag follows the plan (bot/usecases/flagging.py and the use cases that call it), on
SQLite and Postgres, with the in-memory flag service: start, advance, override, pause and
resume, roll back (and the retries of a failed rollback write), complete, a fired trigger
whose plan says "rollback", the watch that finds a drifted flag, and what people decide
about it. End-to-end tests against a real Unleash are in tests/test_e2e_flags.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.delivery import jobs, status_board
from bot.delivery.scheduler import drain_outbox
from bot.devtools.local_slack import LocalSlack
from bot.domain.plans.model import Metric, Phase, Plan, Rule, Step
from bot.errors import FlagWriteFailed, InvalidTransition, RolloutError, UsageError
from bot.flags import FlagError, MemoryProvider
from bot.ids import Action
from bot.metrics import StaticMetricsSource
from bot.services import Actor, Services
from bot.usecases import advance, controls, exporting, flagging, measure, plan_store, view_reads
from bot.usecases import start as starting
from messages.blocks import flag_line, status_message
from messages.digest import timeline
from storage import queries
from storage.db import Database
from storage.enums import EventKind, RolloutStatus
from storage.models import DueJob, Event, OutboxMessage, Rollout
from tests.support import Clock, body, make_services

TEAM = "T0FLAGS"
OWNER = "WOWNERFLAG"
QUIET = {"error_rate": 0.5, "error_spike": 0.2}
FIRING = {"error_rate": 0.5, "error_spike": 0.9}  # +0.7 pp over the baseline


def plan(name: str, on_trigger: str = "pause") -> Plan:
    return Plan(
        name=name,
        title=f"Plan {name}",
        phases=(
            Phase("Internal Testing", steps=(Step(0, label="internal"),)),
            Phase("Gradual Rollout", steps=(Step(25), Step(50), Step(100))),
        ),
        metrics=(Metric("error_rate", "Error rate", "errors{service:{service}}", Rule.UPPER, threshold=1.0),),
        triggers=(
            Metric("error_spike", "Error spike", "spike{service:{service}}", Rule.ABSOLUTE, threshold=0.5),
        ),
        on_trigger=on_trigger,
    )


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.fixture
def flags() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def svc(db: Database, slack: LocalSlack, flags: MemoryProvider) -> Services:
    # A Monday, 10:00 in Los Angeles.
    clock = Clock(datetime(2024, 3, 11, 17, 0, tzinfo=UTC))
    services = replace(make_services(db, slack, clock, StaticMetricsSource(QUIET)), flags=flags)
    importer = Actor(team_id=TEAM, user_id="U0IMPORTER", channel_id="C0IMPORT")
    plan_store.save(services, importer, plan("flagged"), source="")
    plan_store.save(services, importer, plan("autoback", on_trigger="rollback"), source="")
    return services


@pytest.fixture
def actor() -> Actor:
    return Actor(team_id=TEAM, user_id=OWNER, channel_id="C" + uuid.uuid4().hex[:9].upper())


def start(
    svc: Services, actor: Actor, feature: str = "checkout-v2", template: str = "flagged", **kw: Any
) -> int:
    if isinstance(svc.flags, MemoryProvider) and kw.get("create", True):
        svc.flags.create(kw.get("flag") or feature)
    rollout_id = starting.start(
        svc, actor, starting.Start(feature=feature, template=template, flag=kw.get("flag"))
    )
    status_board.post(svc, rollout_id)
    measure.capture_baseline(svc, rollout_id)
    return rollout_id


def row(svc: Services, rollout_id: int) -> Rollout:
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        return rollout


def events(svc: Services, rollout_id: int, *kinds: EventKind) -> list[Event]:
    with svc.db.reading() as session:
        rows = session.scalars(select(Event).where(Event.rollout_id == rollout_id).order_by(Event.id)).all()
        return [e for e in rows if not kinds or e.kind in kinds]


def outbox_keys(svc: Services, rollout_id: int) -> list[str]:
    with svc.db.reading() as session:
        stmt = select(OutboxMessage.dedupe_key).where(OutboxMessage.rollout_id == rollout_id)
        return list(session.scalars(stmt).all())


def due_kinds(svc: Services, rollout_id: int) -> dict[str, datetime]:
    with svc.db.reading() as session:
        rows = session.scalars(select(DueJob).where(DueJob.rollout_id == rollout_id)).all()
        return {r.kind: r.due_at for r in rows}


def move(svc: Services, actor: Actor, rollout_id: int) -> advance.Outcome:
    return advance.advance(svc, actor, advance.may_advance(svc, actor, rollout_id))


def watch_now(svc: Services, rollout_id: int) -> None:
    """Runs the rollout's watch at once, as if its period had passed."""
    with svc.db.transaction() as session:
        session.execute(
            update(DueJob)
            .where(DueJob.rollout_id == rollout_id, DueJob.kind == "watch")
            .values(due_at=svc.clock() - timedelta(seconds=1))
        )
    jobs.run_due(svc)


def bot_percent(flags: MemoryProvider, key: str) -> float | None:
    """The bot's strategy as stored (no read: that would take a failure queued for the bot)."""
    mine = [s.rollout for s in flags.strategies(key) if s.title == "Rollout Bot"]
    return mine[0] if mine else None


# --- start ----------------------------------------------------------------------------------


def test_start_refuses_a_flag_that_does_not_exist_and_creates_nothing(svc: Services, actor: Actor) -> None:
    with pytest.raises(RolloutError) as refused:
        start(svc, actor, feature="search-v3", create=False)
    assert "There is no flag {flag} in {provider}" in refused.value.text.replace("`", "")
    assert refused.value.values["flag"] == "search-v3"
    assert "no flag search-v3 in memory" in str(refused.value)
    with svc.db.reading() as session:
        assert session.scalars(select(Rollout)).all() == []


def test_start_refuses_a_feature_name_that_cannot_be_a_flag_key(svc: Services, actor: Actor) -> None:
    with pytest.raises(UsageError, match="cannot be a flag key"):
        starting.start(svc, actor, starting.Start(feature="new search", template="flagged"))


def test_start_with_flag_option_uses_that_key(svc: Services, actor: Actor, flags: MemoryProvider) -> None:
    rollout_id = start(svc, actor, feature="new search", flag="search_v3")
    assert row(svc, rollout_id).flag_key == "search_v3"


def test_a_0_percent_first_step_leaves_the_flag_alone_and_the_watch_is_planned(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    rollout = row(svc, rollout_id)
    assert flags.writes == []
    assert (rollout.flag_percent, rollout.flag_enabled, rollout.flag_seen_at) == (0.0, False, svc.clock())
    assert "watch" in due_kinds(svc, rollout_id)  # the plan has triggers, but also: the flag is watched
    assert (
        "Flag `checkout-v2`: at 0%, as planned"
        in status_message(view_reads.read_rollout(svc, TEAM, rollout.id), now=svc.clock()).blocks[2]["text"][
            "text"
        ]
    )


def test_a_first_step_that_exposes_users_sets_the_flag_at_start(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor, template="aggressive")
    assert bot_percent(flags, "checkout-v2") == 5
    ((_, _, data),) = [(e.kind, e.actor_id, e.data) for e in events(svc, rollout_id, EventKind.FLAG_SET)]
    assert (data["before"], data["after"], data["why"]) == (0.0, 5.0, "start")


# --- advance, override ----------------------------------------------------------------------


def test_advance_sets_the_flag_to_the_new_step_and_records_before_and_after(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    outcome = move(svc, actor, rollout_id)
    assert outcome.moved is not None and outcome.moved.to_title == "25%"
    assert outcome.flag == "Memory flag `checkout-v2`: 0% → 25%"
    assert bot_percent(flags, "checkout-v2") == 25
    assert flags.read("checkout-v2").enabled
    (event,) = events(svc, rollout_id, EventKind.FLAG_SET)
    assert (event.actor_id, event.data["before"], event.data["after"], event.data["why"]) == (
        OWNER,
        0.0,
        25.0,
        "advanced",
    )
    # The flag first, then the step, committed together.
    kinds = [e.kind for e in events(svc, rollout_id, EventKind.FLAG_SET, EventKind.ADVANCED)]
    assert kinds == [EventKind.FLAG_SET, EventKind.ADVANCED]
    rollout = row(svc, rollout_id)
    assert (rollout.flag_percent, rollout.flag_enabled) == (25.0, True)
    move(svc, actor, rollout_id)
    assert bot_percent(flags, "checkout-v2") == 50


def test_a_failed_flag_write_moves_nothing_and_says_why_in_the_providers_words(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    flags.fail_next(
        FlagError("Unleash failed with 503: service unavailable; try again shortly", retryable=True)
    )
    before = row(svc, rollout_id)

    with pytest.raises(FlagWriteFailed) as failed:
        move(svc, actor, rollout_id)

    assert failed.value.reason == "Unleash failed with 503: service unavailable; try again shortly"
    assert "did not {doing}" in failed.value.text and failed.value.values["doing"] == "advance"
    assert "try again in a moment" in failed.value.text
    after = row(svc, rollout_id)
    assert (after.phase_index, after.step_index, after.status) == (
        before.phase_index,
        before.step_index,
        before.status,
    )
    assert events(svc, rollout_id, EventKind.ADVANCED, EventKind.FLAG_SET) == []
    (attempt,) = events(svc, rollout_id, EventKind.FLAG_WRITE_FAILED)
    assert attempt.data["wanted"] == 25.0 and attempt.data["why"] == "advance"
    assert attempt.data["reason"].startswith("Unleash failed with 503")
    assert not [k for k in outbox_keys(svc, rollout_id) if ":step:" in k]
    assert "try again shortly" in (after.flag_problem or "")
    assert flags.writes == []
    # Once the service is back, the same advance goes through.
    move(svc, actor, rollout_id)
    assert bot_percent(flags, "checkout-v2") == 25


def test_advance_anyway_sets_the_flag_the_same_way(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    svc.metrics = StaticMetricsSource({"error_rate": 3.0, "error_spike": 0.2})
    blocked = move(svc, actor, rollout_id)
    assert blocked.moved is None and blocked.override_token is not None

    advance.override(svc, actor, blocked.override_token, "the spike is a known batch job")

    assert bot_percent(flags, "checkout-v2") == 50
    last = events(svc, rollout_id, EventKind.FLAG_SET)[-1]
    assert (last.data["before"], last.data["after"], last.data["why"]) == (25.0, 50.0, "overridden")


def test_pause_and_resume_do_not_touch_the_flag(svc: Services, actor: Actor, flags: MemoryProvider) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    writes = flags.writes
    controls.pause(svc, actor, rollout_id, "holiday")
    controls.resume(svc, actor, rollout_id)
    assert flags.writes == writes
    assert bot_percent(flags, "checkout-v2") == 25


# --- roll back ------------------------------------------------------------------------------


def test_rollback_turns_the_flag_off_first(svc: Services, actor: Actor, flags: MemoryProvider) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    rollout = controls.roll_back(svc, actor, rollout_id, "errors")
    assert rollout.status is RolloutStatus.ROLLED_BACK and rollout.flag_pending is None
    state = flags.read("checkout-v2")
    assert (state.percent, state.enabled) == (0.0, False)
    assert [w.op for w in flags.writes[-2:]] == ["update-strategy", "off"]
    last = events(svc, rollout_id, EventKind.FLAG_SET)[-1]
    assert (last.data["before"], last.data["after"], last.data["why"]) == (25.0, 0.0, "rollback")


def test_rollback_keeps_a_teams_own_strategy_working(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    flags.add_strategy("checkout-v2", title="internal users", constraints=("userId in staff",))
    move(svc, actor, rollout_id)
    controls.roll_back(svc, actor, rollout_id, "errors")
    state = flags.read("checkout-v2")
    assert (state.percent, state.enabled) == (0.0, True)  # the team's strategy keeps the flag on


def test_a_rollback_whose_flag_write_fails_is_recorded_and_the_write_retried_until_it_lands(
    svc: Services, actor: Actor, flags: MemoryProvider, slack: LocalSlack
) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    flags.fail_next(FlagError("Unleash failed with 502; try again shortly", retryable=True), times=2)

    rollout = controls.roll_back(svc, actor, rollout_id, "errors")

    assert rollout.status is RolloutStatus.ROLLED_BACK
    assert rollout.flag_pending == 0.0
    assert bot_percent(flags, "checkout-v2") == 25  # not yet
    (failed,) = events(svc, rollout_id, EventKind.FLAG_WRITE_FAILED)
    assert failed.data["why"] == "rollback" and failed.data["wanted"] == 0.0
    assert [k for k in outbox_keys(svc, rollout_id) if "flag-failed" in k and ":top:" in k]
    assert set(due_kinds(svc, rollout_id)) == {"flag_sync"}
    drain_outbox(svc)
    alarm = [c.params for c in slack.calls("chat.postMessage") if "is rolled back, but" in body(c.params)]
    assert len(alarm) == 2  # the status thread and the top of the channel

    svc.clock.now += timedelta(minutes=1)  # type: ignore[attr-defined]
    jobs.run_due(svc)  # the second failure
    assert row(svc, rollout_id).flag_pending == 0.0
    assert "flag_sync" in due_kinds(svc, rollout_id)

    svc.clock.now += timedelta(minutes=1)  # type: ignore[attr-defined]
    jobs.run_due(svc)  # lands
    rollout = row(svc, rollout_id)
    assert rollout.flag_pending is None and rollout.flag_percent == 0.0
    assert bot_percent(flags, "checkout-v2") == 0
    assert due_kinds(svc, rollout_id) == {}
    last = events(svc, rollout_id, EventKind.FLAG_SET)[-1]
    assert (last.data["before"], last.data["after"]) == (25.0, 0.0)
    assert last.data["why"] == "retry of the rollback's write"


# --- complete -------------------------------------------------------------------------------


def test_complete_leaves_the_flag_at_100_and_the_remove_flag_task_to_people(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor, template="standard")
    while row(svc, rollout_id).status is RolloutStatus.ACTIVE:  # internal, 1%, 25%, 50%, 100%, launch
        token = advance.Where.of(row(svc, rollout_id)).token(rollout_id)
        advance.override(svc, actor, token, "soak and checklists are not this test's subject")
    rollout = row(svc, rollout_id)
    assert rollout.status is RolloutStatus.COMPLETED
    assert bot_percent(flags, "checkout-v2") == 100 and flags.read("checkout-v2").enabled
    afters = [e.data["after"] for e in events(svc, rollout_id, EventKind.FLAG_SET)]
    assert afters == [1.0, 25.0, 50.0, 100.0, 100.0, 100.0]  # 100%, launch, completed
    launch = rollout.phases[-1]
    assert [i.text for i in launch.items if i.text == "Remove feature flag"] == ["Remove feature flag"]
    assert all(i.checked_at is None for i in launch.items)


def test_complete_at_full_exposure_writes_100_and_refuses_when_the_write_fails(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    for _ in range(3):
        move(svc, actor, rollout_id)
    assert row(svc, rollout_id).current_step.percent == 100
    flags.fail_next(FlagError("the Unleash token may not change checkout-v2 in project default (403)"))
    with pytest.raises(FlagWriteFailed, match="did not complete"):
        controls.complete(svc, actor, rollout_id)
    assert row(svc, rollout_id).status is RolloutStatus.ACTIVE
    controls.complete(svc, actor, rollout_id)
    assert row(svc, rollout_id).status is RolloutStatus.COMPLETED
    assert bot_percent(flags, "checkout-v2") == 100


# --- fired triggers -------------------------------------------------------------------------


def test_a_trigger_fired_in_the_watch_rolls_back_by_itself_when_the_plan_says_so(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor, template="autoback")
    move(svc, actor, rollout_id)
    svc.metrics = StaticMetricsSource(FIRING)
    watch_now(svc, rollout_id)
    rollout = row(svc, rollout_id)
    assert rollout.status is RolloutStatus.ROLLED_BACK
    assert bot_percent(flags, "checkout-v2") == 0 and not flags.read("checkout-v2").enabled
    kinds = [e.kind for e in events(svc, rollout_id)][-3:]
    assert kinds == [EventKind.TRIGGER_FIRED, EventKind.FLAG_SET, EventKind.ROLLED_BACK]
    assert (
        events(svc, rollout_id, EventKind.ROLLED_BACK)[0].data["reason"].startswith("rollback trigger fired")
    )


def test_a_trigger_fired_in_the_watch_only_pauses_by_default(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    svc.metrics = StaticMetricsSource(FIRING)
    watch_now(svc, rollout_id)
    assert row(svc, rollout_id).status is RolloutStatus.PAUSED
    assert bot_percent(flags, "checkout-v2") == 25


def test_a_trigger_fired_at_advance_rolls_back_when_the_plan_says_so(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor, template="autoback")
    move(svc, actor, rollout_id)
    svc.metrics = StaticMetricsSource(FIRING)
    outcome = move(svc, actor, rollout_id)
    assert outcome.rolled_back and outcome.moved is None and outcome.override_token is None
    assert outcome.flag == "Memory flag `checkout-v2`: 25% → 0%"
    assert row(svc, rollout_id).status is RolloutStatus.ROLLED_BACK
    assert bot_percent(flags, "checkout-v2") == 0


# --- drift ----------------------------------------------------------------------------------


def drift_posts(slack: LocalSlack, channel: str) -> list[dict[str, Any]]:
    return [
        c.params
        for c in slack.calls("chat.postMessage")
        if c.params.get("channel") == channel and "but the plan says" in body(c.params)
    ]


def test_drift_is_seen_shown_and_told_once_with_both_buttons(
    svc: Services, actor: Actor, flags: MemoryProvider, slack: LocalSlack
) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    flags.set_percent("checkout-v2", 40)  # someone, by hand

    watch_now(svc, rollout_id)
    watch_now(svc, rollout_id)
    drain_outbox(svc)

    rollout = row(svc, rollout_id)
    assert rollout.flag_percent == 40.0
    (drift,) = events(svc, rollout_id, EventKind.FLAG_DRIFT)
    assert (drift.data["before"], drift.data["flag_says"], drift.data["plan_says"]) == (25.0, 40.0, 25.0)
    (post,) = drift_posts(slack, actor.channel_id)
    assert f"<@{OWNER}>" in body(post)
    actions = [e for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(e["action_id"], e["value"]) for e in actions] == [
        (Action.FLAG_APPLY_PLAN, str(rollout_id)),
        (Action.FLAG_ADOPT, f"{rollout_id}:40"),
    ]
    status = status_message(view_reads.read_rollout(svc, TEAM, rollout.id), now=svc.clock()).blocks[2][
        "text"
    ]["text"]
    assert "Flag `checkout-v2`: :warning: at 40%, but the plan says 25%" in status


def test_applying_the_plan_writes_the_flag_back(svc: Services, actor: Actor, flags: MemoryProvider) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    flags.set_percent("checkout-v2", 40)
    watch_now(svc, rollout_id)
    written = flagging.apply_plan(svc, actor, rollout_id)
    assert (written.before, written.after) == (40.0, 25.0)
    assert bot_percent(flags, "checkout-v2") == 25
    assert events(svc, rollout_id, EventKind.FLAG_SET)[-1].data["why"] == "plan applied"


def test_adopting_the_flags_percent_stops_the_warnings_for_that_value(
    svc: Services, actor: Actor, flags: MemoryProvider, slack: LocalSlack
) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    flags.set_percent("checkout-v2", 40)
    watch_now(svc, rollout_id)
    with pytest.raises(InvalidTransition, match="now says 40%"):
        flagging.adopt(svc, actor, rollout_id, 30.0)  # a stale button
    flagging.adopt(svc, actor, rollout_id, 40.0)
    watch_now(svc, rollout_id)
    rollout = row(svc, rollout_id)
    assert rollout.flag_adopted_percent == 40.0
    assert len(events(svc, rollout_id, EventKind.FLAG_DRIFT)) == 1
    assert (
        "at 40%, kept by people (plan says 25%)"
        in status_message(view_reads.read_rollout(svc, TEAM, rollout.id), now=svc.clock()).blocks[2]["text"][
            "text"
        ]
    )
    # A new value is a new drift.
    flags.set_percent("checkout-v2", 60)
    watch_now(svc, rollout_id)
    assert len(events(svc, rollout_id, EventKind.FLAG_DRIFT)) == 2
    # The next advance puts the plan back on the flag and forgets the adoption.
    move(svc, actor, rollout_id)
    assert row(svc, rollout_id).flag_adopted_percent is None and bot_percent(flags, "checkout-v2") == 50


def test_a_flag_that_cannot_be_read_is_shown_not_alerted(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    flags.fail_next(FlagError("Unleash rejected the API token (401); check UNLEASH_API_TOKEN"))
    watch_now(svc, rollout_id)
    rollout = row(svc, rollout_id)
    assert "401" in (rollout.flag_problem or "")
    assert events(svc, rollout_id, EventKind.FLAG_DRIFT) == []
    assert (
        "flag could not"
        not in status_message(view_reads.read_rollout(svc, TEAM, rollout.id), now=svc.clock()).text
    )
    assert (
        ":warning: 0% when last read; now: Unleash rejected the API token"
        in status_message(view_reads.read_rollout(svc, TEAM, rollout.id), now=svc.clock()).blocks[2]["text"][
            "text"
        ]
    )


# --- the record ------------------------------------------------------------------------------


def test_flag_writes_are_in_the_digest_timeline_and_the_export(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor)
    move(svc, actor, rollout_id)
    flags.fail_next(FlagError("Unleash failed with 503; try again shortly", retryable=True))
    with pytest.raises(FlagWriteFailed):
        move(svc, actor, rollout_id)
    entries = timeline(events(svc, rollout_id), "UTC")
    assert [
        (e["kind"], e["data"].get("after"), e["data"].get("wanted")) for e in entries if "flag" in e["kind"]
    ] == [
        ("flag_set", 25.0, None),
        ("flag_write_failed", None, 50.0),
    ]
    from messages.render import render

    rendered = render(
        "digest",
        audience="thread",
        feature="checkout-v2",
        owner=OWNER,
        channel=actor.channel_id,
        step="25%",
        phase="Gradual Rollout",
        users=None,
        paused=False,
        cadence="daily",
        date="Mon 11 Mar",
        since="then",
        soak="met",
        unchecked=[],
        gate=None,
        timeline=entries,
        more=0,
    )
    assert f"<@{OWNER}> set flag `checkout-v2` 0% → 25% (advanced)" in rendered
    assert "Memory refused flag `checkout-v2` 25% → 50% (advance): Unleash failed with 503" in rendered
    _, document = exporting.export(svc, rollout_id)
    assert "Flag checkout-v2 set 0% → 25%" in document
    assert "Flag checkout-v2 not set 25% → 50% (refused by Memory)" in document


def test_flag_line_words() -> None:
    assert flag_line(None, seen=25, plan=25) == ""
    assert flag_line("f", seen=None, plan=25) == ""
    assert flag_line("f", seen=25, plan=25) == "Flag `f`: at 25%, as planned"
    assert flag_line("f", seen=40, plan=25) == "Flag `f`: :warning: at 40%, but the plan says 25%"
    assert flag_line("f", seen=40, plan=25, adopted=40) == "Flag `f`: at 40%, kept by people (plan says 25%)"
    assert flag_line("f", seen=25, plan=0, pending=0) == (
        "Flag `f`: :warning: still at 25%, the bot keeps retrying to set 0%"
    )
    assert flag_line("<!channel>", seen=1, plan=1) == "Flag `&lt;!channel&gt;`: at 1%, as planned"


def test_without_a_flag_service_nothing_changes(svc: Services, actor: Actor) -> None:
    svc.flags = None
    rollout_id = start(svc, actor, create=False)
    rollout = row(svc, rollout_id)
    assert (rollout.flag_key, rollout.flag_seen_at) == (None, None)
    move(svc, actor, rollout_id)
    assert events(svc, rollout_id, EventKind.FLAG_SET, EventKind.FLAG_WRITE_FAILED) == []
    assert (
        "Flag"
        not in status_message(
            view_reads.read_rollout(svc, TEAM, row(svc, rollout_id).id), now=svc.clock()
        ).blocks[2]["text"]["text"]
    )


def test_a_start_undone_takes_its_first_step_back_off_the_flag(
    svc: Services, actor: Actor, flags: MemoryProvider
) -> None:
    rollout_id = start(svc, actor, template="aggressive")
    assert bot_percent(flags, "checkout-v2") == 5
    starting.discard(svc, rollout_id)  # what a start does when its status message cannot be posted
    assert bot_percent(flags, "checkout-v2") == 0 and not flags.read("checkout-v2").enabled
