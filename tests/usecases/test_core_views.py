"""`view_reads.load_rollout` reads the status message's read model with plain Core statements; it
must give exactly the view the ORM rows give (`views.rollout_view` of a loaded `Rollout`), field
by field, on SQLite and Postgres: for every built-in template as it starts, and for rollouts
that moved on by override (a step and a whole phase skipped), with approvers added out of
alphabetical order, ticked and unticked items, a flag service's view of the flag, auto-advance
on (with and without its due row), paused, rolled back and done."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import flagging, rollouts
from bot.domain.plans.catalog import builtin_templates, get_template
from bot.domain.schedule import Kind
from bot.usecases import view_reads, views
from messages.views import RolloutView
from storage import queries
from storage.db import Database
from storage.models import Approver, DueJob, Phase, Rollout

T0 = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def start(db: Database, template: str, feature: str, **shape: bool) -> int:
    with db.transaction() as session:
        rollout = rollouts.new_rollout(
            get_template(template),
            team_id="T1",
            channel_id="C1",
            feature=feature,
            owner_id="U_OWNER",
            created_by="U_OWNER",
            flag_key=f"{feature}_flag" if shape.get("flag") else None,
            service="web",
            stakeholders=["C_LAUNCH", "C_SUPPORT"],
            timezone="America/Los_Angeles",
            country="US",
            now=T0,
        )
        if shape.get("stepless_phase"):
            rollout.phases.append(Phase(position=len(rollout.phases), name="Afterwards", steps=[]))
        session.add(rollout)
        session.flush()
        return rollout.id


def change(db: Database, rollout_id: int, apply: Callable[[Rollout], None]) -> None:
    with db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        apply(rollout)


def both(db: Database, rollout_id: int) -> tuple[RolloutView | None, RolloutView | None]:
    """(the Core view, the ORM rows' view), each read in a session of its own."""
    with db.reading() as session:
        core = view_reads.load_rollout(session=session, rollout_id=rollout_id, team_id="T1")
    with db.reading() as session:
        row = queries.get_rollout(session=session, rollout_id=rollout_id)
        orm = None if row is None else views.rollout_view(row)
    return core, orm


def assert_same(db: Database, rollout_id: int) -> RolloutView:
    core, orm = both(db, rollout_id)
    assert core is not None and orm is not None
    for field in dataclasses.fields(RolloutView):
        assert getattr(core, field.name) == getattr(orm, field.name), field.name
    assert dataclasses.asdict(core) == dataclasses.asdict(orm)
    assert core == orm
    return core


@pytest.mark.parametrize("template", sorted(builtin_templates()))
def test_a_fresh_rollout_of_each_template_reads_the_same(db: Database, template: str) -> None:
    view = assert_same(db, start(db, template, f"fresh-{template}"))
    assert view.phases and all(p.steps for p in view.phases)


def test_a_rollout_moved_on_by_override_with_marks_and_approvers_reads_the_same(db: Database) -> None:
    rollout_id = start(db, "standard", "override", flag=True, stepless_phase=True)

    def shape(rollout: Rollout) -> None:
        # Out of alphabetical order, so an order by name would show.
        rollout.approvers = [Approver(user_id="U_ZED"), Approver(user_id="U_AMY"), Approver(user_id="U_MID")]
        first, second = rollout.phases[0].items[0], rollout.phases[0].items[1]
        rollouts.set_item(rollout, first.id, True, "U_AMY", T0 + timedelta(minutes=1))
        rollouts.set_item(rollout, second.id, True, "U_AMY", T0 + timedelta(minutes=2))
        rollouts.set_item(rollout, second.id, False, "U_ZED", T0 + timedelta(minutes=3))
        rollouts.move_forward(rollout, T0 + timedelta(hours=1), overridden=True)  # leaves phase 0
        rollouts.move_forward(rollout, T0 + timedelta(hours=2), overridden=True)  # leaves phase 1
        rollouts.move_forward(rollout, T0 + timedelta(hours=3))  # a step of phase 2, by the gate
        flagging.see(rollout, percent=7.5, enabled=True, strategy_id="s1", now=T0 + timedelta(hours=3))
        rollout.flag_adopted_percent = 7.5
        rollout.flag_problem = "the flag service timed out"
        rollout.digest, rollout.digest_time = "weekly", "16:30"

    change(db, rollout_id, shape)
    view = assert_same(db, rollout_id)
    assert view.approvers == ("U_ZED", "U_AMY", "U_MID")
    assert view.phases[0].left_by_override and view.phases[1].left_by_override
    assert view.phases[0].items[1].unchecked_by == "U_ZED"
    assert view.flag_percent == 7.5 and view.phases[-1].steps == ()


def test_auto_advance_with_and_without_its_row_reads_the_same(db: Database) -> None:
    waiting = start(db, "backend", "auto-waiting")
    bare = start(db, "backend", "auto-bare")
    checking = start(db, "backend", "auto-checking")
    for rollout_id in (waiting, bare, checking):
        change(db, rollout_id, lambda r: setattr(r, "auto_advance", True))
    planned = T0 + timedelta(days=1)
    with db.transaction() as session:
        session.add(
            DueJob(
                rollout_id=waiting,
                kind=Kind.AUTO.value,
                due_at=planned,
                data={"next": planned.isoformat(), "why": "outside the allowed hours"},
            )
        )
        # A claimed look: due_at a lease past the planned time.
        session.add(
            DueJob(
                rollout_id=checking,
                kind=Kind.AUTO.value,
                due_at=planned + timedelta(minutes=5),
                data={"at": planned.isoformat()},
            )
        )
        # Another kind of due row is no auto-advance row.
        session.add(DueJob(rollout_id=bare, kind=Kind.DIGEST.value, due_at=planned, data={}))
    assert assert_same(db, waiting).auto_why == "outside the allowed hours"
    assert assert_same(db, bare).auto_due is None
    assert assert_same(db, checking).auto_checking


@pytest.mark.parametrize("end", ["paused", "rolled_back", "completed"])
def test_paused_rolled_back_and_done_read_the_same(db: Database, end: str) -> None:
    rollout_id = start(db, "aggressive", f"end-{end}", flag=True)

    def finish(rollout: Rollout) -> None:
        at = T0 + timedelta(hours=1)
        if end == "paused":
            rollouts.pause(rollout, at, by="U_OWNER", reason="error budget")
        elif end == "rolled_back":
            rollouts.move_forward(rollout, at)
            rollouts.roll_back(rollout, at + timedelta(hours=1), reason="")
        else:
            while rollout.status.is_open:
                rollouts.move_forward(rollout, at)
                at += timedelta(hours=1)

    change(db, rollout_id, finish)
    view = assert_same(db, rollout_id)
    assert view.status == end


def test_a_custom_plan_with_labels_and_wanted_users_reads_the_same(db: Database) -> None:
    rollout_id = start(db, "backend", "custom")

    def relabel(rollout: Rollout) -> None:
        first, second = rollout.phases[1].steps[:2]
        first.percent, first.label, first.desired_users = 0, "internal", 40
        second.percent, second.desired_users = 12.5, None

    change(db, rollout_id, relabel)
    view = assert_same(db, rollout_id)
    assert [s.title for s in view.phases[1].steps][:2] == ["internal", "12.5%"]


def test_another_workspace_or_a_missing_rollout_is_none(db: Database) -> None:
    rollout_id = start(db, "backend", "elsewhere")
    with db.reading() as session:
        assert view_reads.load_rollout(session=session, rollout_id=rollout_id, team_id="T_OTHER") is None
        assert view_reads.load_rollout(session=session, rollout_id=rollout_id + 1000) is None
        assert view_reads.load_rollout(session=session, rollout_id=rollout_id) is not None


def test_without_items_the_view_is_the_whole_one_less_its_items(db: Database) -> None:
    """The reminders' view (`items=False`): every field of the whole view, approvers and the
    stepless phase too, but no checklist item; what a reminder says is the same from either."""
    from messages import digest as texts

    rollout_id = start(db, "standard", "no-items", flag=True, stepless_phase=True)
    change(
        db, rollout_id, lambda r: r.approvers.extend([Approver(user_id="U_ZED"), Approver(user_id="U_AMY")])
    )
    whole = assert_same(db, rollout_id)
    with db.reading() as session:
        bare = view_reads.load_rollout(session=session, rollout_id=rollout_id, items=False)
    assert bare is not None and any(p.items for p in whole.phases)
    assert all(p.items == () for p in bare.phases)
    assert bare == dataclasses.replace(
        whole, phases=tuple(dataclasses.replace(p, items=()) for p in whole.phases)
    )
    said = {"days": 3, "since": "Monday", "planned_end": "Friday"}
    for kind in ("ready", "overdue", "stale"):
        assert texts.reminder(kind, bare, **said) == texts.reminder(kind, whole, **said)
    assert texts.reminder("ready", bare, advance=True) == texts.reminder("ready", whole, advance=True)


@pytest.mark.parametrize("moves", [0, 1, 3, 99])
def test_the_status_view_is_the_whole_less_other_phases_items_and_shows_the_same(
    db: Database, moves: int
) -> None:
    """`load_with_message`: only the current phase keeps its items, and the status message, live
    and as a copy, is the same as from the whole view (it shows no other phase's checklist)."""
    from messages.blocks import status_message

    rollout_id = start(db, "standard", f"status-{moves}", flag=True)

    def shape(rollout: Rollout) -> None:
        at = T0
        for _ in range(moves):
            if not rollout.status.is_open:
                break
            # Marks in every phase it passes through, ticked and unticked.
            first, second = rollout.current_phase.items[:2]
            rollouts.set_item(rollout, first.id, True, "U_AMY", at + timedelta(minutes=1))
            rollouts.set_item(rollout, second.id, True, "U_AMY", at + timedelta(minutes=2))
            rollouts.set_item(rollout, second.id, False, "U_ZED", at + timedelta(minutes=3))
            rollouts.move_forward(rollout, at + timedelta(hours=1), overridden=True)
            at += timedelta(hours=1)

    change(db, rollout_id, shape)
    whole = assert_same(db, rollout_id)
    with db.reading() as session:
        found = view_reads.load_with_message(session=session, rollout_id=rollout_id, team_id="T1")
    assert found is not None
    shown, ref = found
    assert ref is None  # not posted here
    assert shown == dataclasses.replace(
        whole,
        phases=tuple(
            p if p.position == whole.phase_index else dataclasses.replace(p, items=()) for p in whole.phases
        ),
    )
    assert sum(len(p.items) for p in shown.phases) < sum(len(p.items) for p in whole.phases)
    for interactive in (True, False):
        for link in (None, "https://slack.example/archives/C1/p1"):
            assert status_message(shown, now=T0, interactive=interactive, link=link) == status_message(
                whole, now=T0, interactive=interactive, link=link
            )
