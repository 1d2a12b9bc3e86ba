"""Messages render from read models (messages/views.py), never from rows: every message renders
from views built in a session that is closed, its rows expunged, so nothing can load while
rendering; and the status message costs a fixed number of queries, however big the plan."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from bot.domain import rollouts
from bot.domain.gates import GateInput, GateResult, evaluate_gate
from bot.domain.plans import get_template
from bot.usecases import measure, view_reads, views
from messages.announcements import milestone
from messages.blocks import status_message
from messages.digest import digest, reminder, trigger_alert
from messages.gate import gate_report
from messages.home import home_view
from messages.views import ItemView, Outcome, RolloutView
from storage import queries
from storage.db import Database
from storage.enums import EventKind, ItemKind, SnapshotKind
from storage.models import Approver, Base, ChecklistItem, MetricSnapshot, Phase, Step
from tests.support import body

T0 = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)  # a Monday, 09:00 in Los Angeles
NOW = T0 + timedelta(hours=3)


def add_rollout(db: Database, *, phases: int | None = None, steps: int = 1, items: int = 1) -> int:
    """A started rollout of the standard plan, with an approver, two items ticked by one person,
    a few events and a closed gate at the current step. With `phases`, the plan is replaced by
    that many phases of `steps` steps and `items` checklist items each (the last an exit
    criterion)."""
    with db.transaction() as session:
        rollout = rollouts.new_rollout(
            get_template("backend"),
            team_id="T1",
            channel_id="C1",
            feature="checkout-v2",
            owner_id="U_OWNER",
            created_by="U_OWNER",
            flag_key="checkout_v2",
            service="web",
            stakeholders=["C_LAUNCH"],
            timezone="America/Los_Angeles",
            country="US",
            now=T0,
        )
        if phases is not None:
            rollout.phases = [
                Phase(
                    position=p,
                    name=f"Phase {p}",
                    steps=[
                        Step(position=s, percent=(p * steps + s + 1) * 100 / (phases * steps))
                        for s in range(steps)
                    ],
                    items=[
                        ChecklistItem(
                            position=i,
                            kind=ItemKind.EXIT if i == items - 1 else ItemKind.TASK,
                            text=f"Item {p}.{i}",
                            rollout=rollout,
                        )
                        for i in range(items)
                    ],
                )
                for p in range(phases)
            ]
        rollout.approvers = [Approver(user_id="U_APPROVER")]
        session.add(rollout)
        session.flush()
        session.add(rollouts.event(rollout, EventKind.STARTED, "U_OWNER", T0, template="backend"))
        for n, item in enumerate(rollout.phases[0].items[:2]):
            at = T0 + timedelta(minutes=5 + n)
            rollouts.set_item(rollout, item.id, True, "U_ANA", at)
            session.add(rollouts.event(rollout, EventKind.ITEM_CHECKED, "U_ANA", at, text=item.text))
        session.add(
            MetricSnapshot(
                rollout_id=rollout.id,
                kind=SnapshotKind.GATE,
                taken_at=T0 + timedelta(hours=1),
                phase_index=0,
                step_index=0,
                passed=False,
                verdict={"passed": False, "blockers": ["Error rate has no data."]},
            )
        )
        return rollout.id


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement sent to the database inside the block."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def no_rows_in(value: object) -> None:
    """A view holds plain values only: no row, no list to append to."""
    assert not isinstance(value, Base | list | dict), type(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            no_rows_in(getattr(value, f.name))
    elif isinstance(value, tuple):
        for child in value:
            no_rows_in(child)


def test_every_message_renders_from_views_of_a_closed_session(db: Database) -> None:
    rollout_id = add_rollout(db)
    with db.reading() as session:
        row = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert row is not None
        view = views.rollout_view(row)
        events = views.event_views(queries.events(session=session, rollout_id=rollout_id))
        check = views.snapshot_view(
            queries.latest_check(session=session, rollout_id=rollout_id, phase_index=0, step_index=0)
        )
        unchecked = rollouts.unchecked_exit_criteria(row)
        gate = measure.evaluate(row, {}, {}, NOW)
        home = views.load_home(session=session, team_id="T1", user_id="U_APPROVER", now=NOW)
        session.expunge_all()
    # The session is closed and every row detached: from here on nothing can be loaded.
    no_rows_in(view)
    no_rows_in(events)
    no_rows_in(check)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.feature = "other"  # type: ignore[misc]

    with statements(db) as sent:
        status = status_message(view, now=NOW)
        read_only = status_message(view, now=NOW, interactive=False, link="https://example.slack.com/p1")
        thread, line = digest(
            view,
            scheduled=NOW,
            events=events,
            check=check,
            soak="1% has no minimum soak time",
            unchecked=unchecked,
        )
        ready = reminder("ready", view, advance=True)
        overdue = reminder("overdue", view, planned_end="Tue 3 Mar 09:00 America/Los_Angeles")
        stale = reminder("stale", view, days=3, since="Mon 2 Mar 09:00 America/Los_Angeles")
        alert = trigger_alert(
            view, [{"trigger": "Error rate", "reason": "up 3 pp", "rule": "fires when…"}], paused=True
        )
        started, started_line = milestone("started", view, actor="U_OWNER")
        tab = home_view(home)
        outcome = Outcome(
            rollout_id=view.id,
            feature=view.feature,
            tz=view.timezone,
            step_title=view.current_step.title,
            gate=gate,
            moved=None,
            override_token=f"{view.id}:0:0",
        )
        report = gate_report(outcome)
    assert sent == []

    canary = view.phases[0]
    assert view.approvers == ("U_APPROVER",)
    assert [i.checked for i in canary.items[:2]] == [True, True]
    assert status.text == "checkout-v2 rollout: Canary, step 1%; 2 of 4 checklist items ticked"
    assert "<@U_ANA> · <!date^1772471100^{date_short} {time}|Mon 2 Mar 09:05>" in json.dumps(
        status.blocks, ensure_ascii=False
    )
    assert "Open the live status message" in json.dumps(read_only.blocks)
    assert "U_ANA> ticked 2 checklist items" in body(thread)
    assert "closed when last checked" in body(thread) and "Error rate has no data." in body(thread)
    assert "Details: %%ROLLOUT_STATUS_LINK%%" in body(line)  # the outbox puts the permalink there
    assert (
        "is ready to advance" in body(ready) and ready.blocks[-1]["elements"][0]["value"] == f"{view.id}:0:0"
    )
    assert "is past the planned end of 1% (Tue 3 Mar 09:00" in body(overdue)
    assert "no activity for 3 business days" in body(stale)
    assert "I paused the rollout" in json.dumps(alert.blocks)
    assert alert.text == "Rollback trigger fired: Error rate on checkout-v2, paused"
    assert f"started with the *{view.plan_title}* plan, owner <@U_OWNER>" in json.dumps(started.blocks)
    assert "rollout started by <@U_OWNER> (owner)" in json.dumps(started_line.blocks)
    assert started.text == started_line.text == "Rollout started: checkout-v2, first step 1%"
    assert "checkout-v2" in json.dumps(tab) and "Next gate:" in json.dumps(tab)
    assert report.text == "checkout-v2 cannot advance from 1%: 5 things block it."
    assert report.blocks[-1]["elements"][0]["value"] == f"{view.id}:0:0"


def test_a_gate_that_passed_offers_no_override() -> None:
    gate = dataclasses.replace(_closed_gate(), passed=True, blockers=())
    report = gate_report(
        Outcome(
            rollout_id=1, feature="f", tz="UTC", step_title="1%", gate=gate, moved=None, override_token=None
        )
    )
    assert "Advance anyway" not in json.dumps(report.blocks)


def _closed_gate() -> GateResult:
    return evaluate_gate(
        GateInput(
            metrics=(),
            triggers=(),
            readings={},
            baselines={},
            unchecked_exit_criteria=("Docs updated",),
            step_title="1%",
            step_started_at=T0,
            min_business_days=0,
            now=NOW,
            tz="UTC",
            country="US",
        )
    )


def load_and_render(db: Database, rollout_id: int) -> tuple[int, int, RolloutView]:
    """(statements to load the view, statements to render it, the view)."""
    with statements(db) as loading, db.reading() as session:
        view = view_reads.load_rollout(session=session, rollout_id=rollout_id)
    assert view is not None
    with statements(db) as rendering:
        status_message(view, now=NOW)
        status_message(view, now=NOW, interactive=False)
    return len(loading), len(rendering), view


def test_a_status_message_costs_the_same_few_queries_however_big_the_plan(db: Database) -> None:
    small = add_rollout(db, phases=2, steps=1, items=1)
    big = add_rollout_again(db, phases=10, steps=3, items=20)

    small_loading, small_rendering, small_view = load_and_render(db, small)
    big_loading, big_rendering, big_view = load_and_render(db, big)

    assert sum(len(p.items) for p in small_view.phases) == 2
    assert sum(len(p.items) for p in big_view.phases) == 200
    assert sum(len(p.steps) for p in big_view.phases) == 30
    assert small_loading == big_loading <= 5
    assert small_rendering == big_rendering == 0


def add_rollout_again(db: Database, **plan: int) -> int:
    """A second rollout of the same name: the first one is rolled back to free the name."""
    with db.transaction() as session:
        for row in queries.open_in_team(session=session, team_id="T1"):
            rollouts.roll_back(row, T0)
    return add_rollout(db, **plan)


def test_a_view_of_another_workspace_is_not_found(db: Database) -> None:
    rollout_id = add_rollout(db)
    with db.reading() as session:
        assert view_reads.load_rollout(session=session, rollout_id=rollout_id, team_id="T_OTHER") is None
        mine = view_reads.load_rollout(session=session, rollout_id=rollout_id, team_id="T1")
    assert mine is not None and isinstance(mine.phases[0].items[0], ItemView)
