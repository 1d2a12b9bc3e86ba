"""The rollout's rules (bot/rollouts.py) on plain objects made by `new_rollout` from the
built-in templates, and the templates themselves."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain import rollouts
from bot.domain.plans import Plan, UnknownTemplate, get_template, template_names
from bot.errors import InvalidTransition
from storage.enums import ItemKind, RolloutStatus
from storage.models import ChecklistItem, Rollout

T0 = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)  # a Monday, 09:00 in Los Angeles
SEED_TEMPLATE = Path("/work/shared/seeds/rollout-plan-template.md")
SEED_COPY = Path(__file__).parent.parent / "fixtures" / "seeds" / "rollout-plan-template.md"


def started(template: str = "standard", feature: str = "checkout-v2", **overrides: object) -> Rollout:
    """A rollout as `/rollout start` makes it, with ids given to its items as the database would."""
    fields: dict[str, object] = {
        "team_id": "T1",
        "channel_id": "C1",
        "feature": feature,
        "owner_id": "U_OWNER",
        "created_by": "U_STARTER",
        "flag_key": "checkout_v2",
        "service": "web",
        "stakeholders": ["C_LAUNCH"],
        "timezone": "America/Los_Angeles",
        "country": "US",
        "now": T0,
        **overrides,
    }
    rollout = rollouts.new_rollout(get_template(template), **fields)  # type: ignore[arg-type]
    for number, item in enumerate(all_items(rollout), start=101):
        item.id = number
    return rollout


def all_items(rollout: Rollout) -> list[ChecklistItem]:
    return [item for phase in rollout.phases for item in phase.items]


def item_ids(rollout: Rollout, phase: int, kind: ItemKind | None = None) -> list[int]:
    return [i.id for i in rollout.phases[phase].items if kind is None or i.kind is kind]


def where(rollout: Rollout) -> tuple[int, int]:
    return rollout.phase_index, rollout.step_index


def tick_all(rollout: Rollout, phase: int, now: datetime) -> None:
    for item_id in item_ids(rollout, phase):
        rollouts.set_item(rollout, item_id, True, "U_OWNER", now)


# -- starting: the plan is copied --------------------------------------------------------


def test_a_new_rollout_copies_the_standard_plan() -> None:
    plan = get_template("standard")
    rollout = started()

    assert rollout.feature == "checkout-v2"
    assert rollout.feature_key == "checkout-v2"
    assert (rollout.template, rollout.plan_title) == ("standard", plan.title)
    assert (rollout.owner_id, rollout.created_by) == ("U_OWNER", "U_STARTER")
    assert (rollout.flag_key, rollout.service, rollout.stakeholder_channels) == (
        "checkout_v2",
        "web",
        ["C_LAUNCH"],
    )
    assert rollout.status is RolloutStatus.ACTIVE
    assert where(rollout) == (0, 0)
    assert rollout.step_started_at == T0
    assert rollout.revision == 1

    assert [p.name for p in rollout.phases] == [p.name for p in plan.phases]
    assert [p.position for p in rollout.phases] == list(range(len(plan.phases)))
    for phase, plan_phase in zip(rollout.phases, plan.phases, strict=True):
        assert [(s.position, s.percent, s.label, s.min_business_days) for s in phase.steps] == [
            (n, s.percent, s.label, s.min_business_days) for n, s in enumerate(plan_phase.steps)
        ]
        assert [(i.position, i.kind, i.text) for i in phase.items] == [
            *((n, ItemKind.TASK, t) for n, t in enumerate(plan_phase.tasks)),
            *((len(plan_phase.tasks) + n, ItemKind.EXIT, t) for n, t in enumerate(plan_phase.exit_criteria)),
        ]
        assert all(not i.checked and i.checked_by is None for i in phase.items)
        assert all(i.rollout is rollout for i in phase.items)
    # Only the first phase and step have started.
    assert [p.started_at for p in rollout.phases] == [T0, None, None, None]
    assert [s.started_at for p in rollout.phases for s in p.steps] == [T0] + [None] * 5


def test_a_backend_rollout_carries_the_desired_users_of_each_step() -> None:
    rollout = started("backend")
    assert [(s.percent, s.desired_users) for p in rollout.phases for s in p.steps] == [
        (1, 500),
        (25, 3000),
        (50, 6000),
        (75, 9000),
        (100, 12000),
    ]


def test_the_plan_is_a_copy_that_template_edits_cannot_reach() -> None:
    rollout = started()
    rollout.phases[0].items[0].text = "changed in this rollout only"
    assert get_template("standard").phases[0].tasks[0] == "Deploy to staging environment"
    assert started().phases[0].items[0].text == "Deploy to staging environment"


@pytest.mark.parametrize(
    ("feature", "key"),
    [
        ("checkout-v2", "checkout-v2"),
        ("Checkout-V2", "checkout-v2"),
        ("CHECKOUT-V2", "checkout-v2"),
        ("  New   Checkout ", "new checkout"),
        ("Straße", "strasse"),  # casefold, not lower
        ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),
    ],
)
def test_feature_names_are_one_feature_whatever_their_case(feature: str, key: str) -> None:
    assert rollouts.feature_key(feature) == key
    assert started(feature=feature).feature_key == key


# -- the checklist -----------------------------------------------------------------------


def test_ticking_an_item_records_who_and_when() -> None:
    rollout = started()
    item = rollout.phases[0].items[2]
    later = T0 + timedelta(hours=1)

    toggle = rollouts.set_item(rollout, item.id, True, "U_ANA", later)

    assert toggle is not None
    assert (toggle.item, toggle.checked) == (item, True)
    assert (item.checked, item.checked_by, item.checked_at) == (True, "U_ANA", later)
    assert rollout.revision == 2
    assert rollout.updated_at == later
    assert [i.id for i in all_items(rollout) if i.checked] == [item.id]


def test_ticking_a_ticked_item_again_changes_and_records_nothing() -> None:
    rollout = started()
    item = rollout.phases[0].items[0]
    rollouts.set_item(rollout, item.id, True, "U_ANA", T0 + timedelta(minutes=1))

    # Bob's click crossed Ana's: the box is already ticked.
    assert rollouts.set_item(rollout, item.id, True, "U_BOB", T0 + timedelta(minutes=2)) is None

    assert (item.checked_by, item.checked_at) == ("U_ANA", T0 + timedelta(minutes=1))
    assert rollout.revision == 2


def test_unticking_clears_who_and_when_and_is_idempotent_too() -> None:
    rollout = started()
    item = rollout.phases[0].items[0]
    assert rollouts.set_item(rollout, item.id, False, "U_ANA", T0) is None  # never ticked
    assert rollout.revision == 1

    rollouts.set_item(rollout, item.id, True, "U_ANA", T0 + timedelta(minutes=1))
    toggle = rollouts.set_item(rollout, item.id, False, "U_BOB", T0 + timedelta(minutes=2))

    assert toggle is not None and toggle.checked is False
    assert (item.checked, item.checked_by, item.checked_at) == (False, None, None)
    assert rollout.revision == 3
    assert rollouts.set_item(rollout, item.id, False, "U_BOB", T0 + timedelta(minutes=3)) is None


def test_any_phase_item_of_the_rollout_may_be_ticked_but_no_other() -> None:
    rollout = started()
    later_item = rollout.phases[2].items[0]
    assert rollouts.set_item(rollout, later_item.id, True, "U_ANA", T0) is not None
    with pytest.raises(InvalidTransition, match="not part of this rollout"):
        rollouts.set_item(rollout, 99_999, True, "U_ANA", T0)


def _rolled_back(rollout: Rollout) -> None:
    rollouts.roll_back(rollout, T0)


def _completed(rollout: Rollout) -> None:
    rollout.phase_index, rollout.step_index = len(rollout.phases) - 1, 0
    rollouts.complete(rollout, T0)


@pytest.mark.parametrize(("finish", "words"), [(_rolled_back, "rolled back"), (_completed, "completed")])
def test_a_finished_rollouts_checklist_is_closed(finish: object, words: str) -> None:
    rollout = started()
    finish(rollout)  # type: ignore[operator]
    item = rollout.phases[0].items[0]
    with pytest.raises(InvalidTransition, match=f"{words}; its checklist is closed"):
        rollouts.set_item(rollout, item.id, True, "U_ANA", T0)
    assert not item.checked


def test_a_paused_rollouts_checklist_stays_open() -> None:
    rollout = started()
    rollouts.pause(rollout, T0)
    item = rollout.phases[0].items[0]
    assert rollouts.set_item(rollout, item.id, True, "U_ANA", T0) is not None


# -- where an advance goes ---------------------------------------------------------------


def test_next_position_walks_steps_then_phases() -> None:
    rollout = started("backend")
    assert rollouts.next_position(rollout) == rollouts.Position(1, 0)
    assert rollouts.leaves_phase(rollout)

    rollout.phase_index, rollout.step_index = 1, 0
    assert rollouts.next_position(rollout) == rollouts.Position(1, 1)
    assert not rollouts.leaves_phase(rollout)

    rollout.step_index = 3  # 100%, the last step of the last phase
    assert rollouts.next_position(rollout) is None
    assert rollouts.leaves_phase(rollout)


def test_exit_criteria_gate_leaving_a_phase_not_the_steps_inside_it() -> None:
    rollout = started("backend")
    canary_exits = [i.text for i in rollout.phases[0].items if i.kind is ItemKind.EXIT]
    assert (
        rollouts.unchecked_exit_criteria(rollout)
        == canary_exits
        == [
            "Desired number of users reached",
            "Data reaching end users matches expected behaviour",
        ]
    )
    # Tasks do not gate; each exit criterion ticked drops out of the list.
    for task_id in item_ids(rollout, 0, ItemKind.TASK):
        rollouts.set_item(rollout, task_id, True, "U_ANA", T0)
    assert rollouts.unchecked_exit_criteria(rollout) == canary_exits
    rollouts.set_item(rollout, item_ids(rollout, 0, ItemKind.EXIT)[0], True, "U_ANA", T0)
    assert rollouts.unchecked_exit_criteria(rollout) == ["Data reaching end users matches expected behaviour"]
    rollouts.set_item(rollout, item_ids(rollout, 0, ItemKind.EXIT)[1], True, "U_ANA", T0)
    assert rollouts.unchecked_exit_criteria(rollout) == []

    rollouts.move_forward(rollout, T0 + timedelta(days=1))
    # 25% -> 50% stays inside "25% - 100%": its exit criterion does not gate yet...
    assert where(rollout) == (1, 0)
    assert rollouts.unchecked_exit_criteria(rollout) == []
    rollout.step_index = 3
    # ...but leaving 100% leaves the phase (and the rollout), so it does.
    assert rollouts.unchecked_exit_criteria(rollout) == [
        "Data reaching end users matches expected behaviour at every step"
    ]


def test_moving_forward_through_every_step_completes_the_rollout() -> None:
    rollout = started("standard")
    titles = []
    phase_completions = []
    now = T0
    for expected_where in [(1, 0), (2, 0), (2, 1), (2, 2), (3, 0)]:
        now += timedelta(days=1)
        moved = rollouts.move_forward(rollout, now)
        titles.append((moved.from_title, moved.to_title))
        phase_completions.append(moved.phase_completed)
        assert not moved.completed
        assert where(rollout) == expected_where
        assert rollout.step_started_at == now
        assert rollout.current_step.started_at == now
        assert rollout.status is RolloutStatus.ACTIVE

    assert titles == [("internal", "1%"), ("1%", "25%"), ("25%", "50%"), ("50%", "100%"), ("100%", "launch")]
    assert phase_completions == ["Internal Testing", "Canary Release", None, None, "Gradual Rollout"]
    assert [p.completed_at is not None for p in rollout.phases] == [True, True, True, False]
    assert [p.started_at is not None for p in rollout.phases] == [True, True, True, True]
    assert rollouts.progress(rollout) == (5, 6)

    end = now + timedelta(days=2)
    moved = rollouts.move_forward(rollout, end)
    assert moved == rollouts.Moved("launch", "done", "Full Launch", completed=True)
    assert rollout.status is RolloutStatus.COMPLETED
    assert rollout.finished_at == end
    assert all(p.completed_at is not None for p in rollout.phases)
    assert rollouts.progress(rollout) == (6, 6)
    assert rollout.revision == 7  # one per move
    with pytest.raises(InvalidTransition, match="completed; there is nothing to advance"):
        rollouts.move_forward(rollout, end)


def test_a_backend_rollout_walks_one_percent_to_a_hundred() -> None:
    rollout = started("backend")
    seen = [rollouts.display_title(rollout.current_step)]
    while True:
        moved = rollouts.move_forward(rollout, T0)
        if moved.completed:
            break
        seen.append(moved.to_title)
    assert seen == ["1%", "25%", "50%", "75%", "100%"]


# -- pause, resume, roll back, complete --------------------------------------------------


def test_pause_and_resume_keep_the_place() -> None:
    rollout = started("backend")
    rollouts.move_forward(rollout, T0)
    rollouts.pause(rollout, T0 + timedelta(hours=1))
    assert rollout.status is RolloutStatus.PAUSED
    assert rollout.status.is_open  # a paused rollout still holds its name
    assert where(rollout) == (1, 0)

    with pytest.raises(InvalidTransition, match="paused: `/rollout resume` it before you advance"):
        rollouts.move_forward(rollout, T0)
    with pytest.raises(InvalidTransition, match="paused: `/rollout resume` it before you pause"):
        rollouts.pause(rollout, T0)

    rollouts.resume(rollout, T0 + timedelta(hours=2))
    assert rollout.status is RolloutStatus.ACTIVE
    assert where(rollout) == (1, 0)
    with pytest.raises(InvalidTransition, match="is not paused"):
        rollouts.resume(rollout, T0)


def test_rolling_back_finishes_the_rollout_and_frees_its_name() -> None:
    rollout = started()
    rollouts.pause(rollout, T0)
    rollouts.roll_back(rollout, T0 + timedelta(hours=3))  # a paused one may be rolled back
    assert rollout.status is RolloutStatus.ROLLED_BACK
    assert not rollout.status.is_open
    assert rollout.finished_at == T0 + timedelta(hours=3)
    for refused, match in [
        (rollouts.roll_back, "already rolled back"),
        (rollouts.pause, "rolled back; there is nothing to pause"),
        (rollouts.resume, "is not paused"),
        (rollouts.move_forward, "rolled back; there is nothing to advance"),
        (rollouts.complete, "rolled back; there is nothing to complete"),
    ]:
        with pytest.raises(InvalidTransition, match=match):
            refused(rollout, T0)  # type: ignore[operator]
    assert rollout.status is RolloutStatus.ROLLED_BACK


def test_complete_at_full_exposure_closes_the_rollout() -> None:
    rollout = started("backend")
    with pytest.raises(InvalidTransition, match="is at 1%; advance it to 100% first"):
        rollouts.complete(rollout, T0)
    assert rollout.status is RolloutStatus.ACTIVE

    rollout.phase_index, rollout.step_index = 1, 3  # 100%
    rollouts.complete(rollout, T0 + timedelta(days=9))
    assert rollout.status is RolloutStatus.COMPLETED
    assert rollout.finished_at == T0 + timedelta(days=9)
    assert rollout.current_step.completed_at == T0 + timedelta(days=9)
    assert rollout.current_phase.completed_at == T0 + timedelta(days=9)
    with pytest.raises(InvalidTransition, match="completed; there is nothing to complete"):
        rollouts.complete(rollout, T0)
    with pytest.raises(InvalidTransition, match="already completed"):
        rollouts.roll_back(rollout, T0)


def test_a_paused_rollout_cannot_be_completed() -> None:
    rollout = started("backend")
    rollout.phase_index, rollout.step_index = 1, 3
    rollouts.pause(rollout, T0)
    with pytest.raises(InvalidTransition, match="paused"):
        rollouts.complete(rollout, T0)
    assert rollout.status is RolloutStatus.PAUSED


# -- the built-in templates --------------------------------------------------------------


def test_all_four_templates_load() -> None:
    assert {"standard", "backend", "conservative", "aggressive"} <= set(template_names())
    for name in ("standard", "backend", "conservative", "aggressive"):
        plan = get_template(name)
        assert isinstance(plan, Plan)
        assert plan.name == name
        assert plan.title
        assert plan.phases and all(p.steps for p in plan.phases)
        assert all(p.tasks or p.exit_criteria for p in plan.phases), name
        assert plan.percents[-1] == 100, name
        assert plan.percents == sorted(plan.percents), name


def test_template_names_are_case_insensitive_and_unknown_ones_refused() -> None:
    assert get_template("BACKEND") is get_template("backend")
    with pytest.raises(UnknownTemplate) as caught:
        get_template("yolo")
    assert caught.value.name == "yolo"


def _seed_phases(markdown: str) -> list[tuple[str, list[str], list[str]]]:
    """(name, tasks, exit criteria) of each `### Phase N: name` in the plan template."""
    phases = []
    for chunk in re.split(r"^### Phase \d+: ", markdown, flags=re.M)[1:]:
        name = chunk.splitlines()[0].strip()
        tasks_part = chunk.split("**Tasks:**")[1].split("**Exit Criteria:**")[0]
        exit_part = chunk.split("**Exit Criteria:**")[1].split("##")[0]

        def boxes(part: str) -> list[str]:
            return [m.strip() for m in re.findall(r"^- \[ \] (.+)$", part, flags=re.M)]

        phases.append((name, boxes(tasks_part), boxes(exit_part)))
    return phases


def _matches_seed(seed_text: str, text: str) -> bool:
    """The seed's `[X]` blanks are filled in by the template; everything else is kept."""
    parts = re.split(r"\[[^\]]*\]", seed_text)
    return re.fullmatch(".+?".join(re.escape(p) for p in parts), text) is not None


def test_standard_is_the_seed_plan_template() -> None:
    seed_path = SEED_TEMPLATE if SEED_TEMPLATE.exists() else SEED_COPY
    seed = _seed_phases(seed_path.read_text(encoding="utf-8"))
    assert [name for name, _, _ in seed] == [
        "Internal Testing",
        "Canary Release",
        "Gradual Rollout",
        "Full Launch",
    ]
    assert [(len(t), len(e)) for _, t, e in seed] == [(5, 4), (5, 4), (4, 2), (5, 3)]

    plan = get_template("standard")
    assert [p.name for p in plan.phases] == [name for name, _, _ in seed]
    for phase, (name, tasks, exits) in zip(plan.phases, seed, strict=True):
        assert len(phase.tasks) == len(tasks), name
        assert len(phase.exit_criteria) == len(exits), name
        for seed_text, text in zip(tasks + exits, phase.tasks + phase.exit_criteria, strict=True):
            assert _matches_seed(seed_text, text), (name, seed_text, text)
    # The one blank the template fills: the canary's share.
    assert plan.phases[1].tasks[0] == "Enable feature flag for 1% of users"
    assert [s.percent for s in plan.phases[2].steps] == [25, 50, 100]


def test_backend_is_the_seed_back_end_plan() -> None:
    plan = get_template("backend")
    steps = [s for p in plan.phases for s in p.steps]
    assert [(s.percent, s.desired_users) for s in steps] == [
        (1, 500),
        (25, 3000),
        (50, 6000),
        (75, 9000),
        (100, 12000),
    ]
    assert all(s.min_business_days == 1 for s in steps)
    assert [len(p.steps) for p in plan.phases] == [1, 4]
