"""The database on both backends: the migrated schema, the one-open-rollout-per-name rule,
UTC timestamps, row locks, and many people ticking one rollout's checklist at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from bot.domain import rollouts
from bot.domain.plans import get_template
from bot.services import Actor
from bot.usecases import checklist
from bot.usecases import start as starting
from bot.usecases.checklist import ItemChange
from storage import queries
from storage.db import Database
from storage.enums import EventKind, RolloutStatus
from storage.migrate import upgrade
from storage.models import Base, ChecklistItem, Event, Phase, Rollout, Step
from tests.support import make_services

T0 = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def add_rollout(
    db: Database,
    feature: str = "checkout-v2",
    team_id: str = "T1",
    template: str = "standard",
    channel_id: str = "C1",
) -> int:
    with db.transaction() as session:
        rollout = rollouts.new_rollout(
            get_template(template),
            team_id=team_id,
            channel_id=channel_id,
            feature=feature,
            owner_id="U_OWNER",
            created_by="U_OWNER",
            flag_key=None,
            service=None,
            stakeholders=[],
            timezone="America/Los_Angeles",
            country="US",
            now=T0,
        )
        session.add(rollout)
        session.flush()
        session.add(rollouts.event(rollout, EventKind.STARTED, "U_OWNER", T0, template=template))
        return rollout.id


def set_status(db: Database, rollout_id: int, status: RolloutStatus) -> None:
    with db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        rollout.status = status


services = make_services


# -- the schema --------------------------------------------------------------------------


def test_the_migrations_make_the_models_schema(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_the_migrations_create_the_partial_unique_index(db: Database) -> None:
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            sql = conn.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_rollout_open_feature'")
            )
        else:
            sql = conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'uq_rollout_open_feature'"))
    assert sql is not None
    assert "UNIQUE" in sql.upper()
    assert "active" in sql and "paused" in sql


# -- one open rollout per feature name and workspace -------------------------------------


def test_a_second_open_rollout_of_one_feature_is_refused(db: Database) -> None:
    add_rollout(db, "checkout-v2")
    with pytest.raises(IntegrityError):
        add_rollout(db, "checkout-v2")
    with pytest.raises(IntegrityError):
        add_rollout(db, "Checkout-V2")  # one name whatever its case
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Rollout)) == 1


def test_a_paused_rollout_still_holds_its_name(db: Database) -> None:
    first = add_rollout(db, "checkout-v2")
    set_status(db, first, RolloutStatus.PAUSED)
    with pytest.raises(IntegrityError):
        add_rollout(db, "checkout-v2")


@pytest.mark.parametrize("finished", [RolloutStatus.COMPLETED, RolloutStatus.ROLLED_BACK])
def test_a_finished_rollout_frees_its_name(db: Database, finished: RolloutStatus) -> None:
    first = add_rollout(db, "checkout-v2")
    set_status(db, first, finished)
    second = add_rollout(db, "checkout-v2")
    set_status(db, second, finished)
    third = add_rollout(db, "CHECKOUT-V2")
    with db.reading() as session:
        assert queries.open_by_feature(session=session, team_id="T1", feature_key="checkout-v2").id == third
        latest = queries.latest_by_feature(session=session, team_id="T1", feature_key="checkout-v2")
        assert latest is not None and latest.id == third
    # a fourth open one is refused again
    with pytest.raises(IntegrityError):
        add_rollout(db, "checkout-v2")


def test_the_channel_lookup_finds_only_the_open_rollouts_of_its_channel(db: Database) -> None:
    active, paused = add_rollout(db, "a"), add_rollout(db, "b")
    set_status(db, paused, RolloutStatus.PAUSED)
    for feature, finished in (("c", RolloutStatus.COMPLETED), ("d", RolloutStatus.ROLLED_BACK)):
        set_status(db, add_rollout(db, feature), finished)
    add_rollout(db, "e", channel_id="C2")
    add_rollout(db, "f", team_id="T2")
    with db.connected() as conn:
        found = queries.open_in_channel(session=conn, team_id="T1", channel_id="C1")
    assert sorted(n.id for n in found) == [active, paused]


@pytest.mark.parametrize("still_open", [RolloutStatus.ACTIVE, RolloutStatus.PAUSED])
def test_the_name_lookup_prefers_the_open_rollout_to_a_finished_one(
    db: Database, still_open: RolloutStatus
) -> None:
    finished = add_rollout(db, "checkout-v2")
    set_status(db, finished, RolloutStatus.COMPLETED)
    current = add_rollout(db, "checkout-v2")
    set_status(db, current, still_open)
    with db.connected() as conn:
        latest = queries.latest_by_feature(session=conn, team_id="T1", feature_key="checkout-v2")
    assert latest is not None and latest.id == current


@pytest.mark.parametrize("name", ["_OPEN_IN_CHANNEL", "_LATEST_BY_FEATURE"])
def test_the_lookups_name_the_open_statuses_in_sql(db: Database, name: str) -> None:
    """Every command naming a rollout runs one of these: an expanding `IN` list would be
    rendered into the statement again at each run (`queries.OPEN_WHERE` is plain SQL)."""
    compiled = getattr(queries, name).compile(dialect=db.engine.dialect)
    assert not any(bind.expanding for bind in compiled.binds.values())


def test_another_workspace_may_use_the_same_name(db: Database) -> None:
    first = add_rollout(db, "checkout-v2", team_id="T1")
    second = add_rollout(db, "checkout-v2", team_id="T2")
    assert first != second
    with db.reading() as session:
        assert queries.open_by_feature(session=session, team_id="T2", feature_key="checkout-v2").id == second


def test_an_80_character_name_is_stored_on_every_backend(db: Database) -> None:
    rollout_id = add_rollout(db, "x" * 80)
    with db.reading() as session:
        assert queries.get_rollout(session=session, rollout_id=rollout_id).feature_key == "x" * 80


def test_a_name_that_grows_when_casefolded_is_stored(db: Database) -> None:
    name = "Straße-" + "ß" * 73  # 80 characters, as the parser allows
    assert len(name) == 80
    rollout_id = add_rollout(db, name)
    with db.reading() as session:
        assert queries.get_rollout(session=session, rollout_id=rollout_id).feature == name


# -- time --------------------------------------------------------------------------------


def test_timestamps_come_back_aware_utc(db: Database) -> None:
    rollout_id = add_rollout(db)
    berlin_evening = datetime(2026, 3, 2, 21, 15, 30, 123456, tzinfo=timezone(timedelta(hours=1)))
    with db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        rollout.phases[0].items[0].checked_at = berlin_evening
        rollout.phases[0].items[0].checked_by = "U_ANA"
        rollout.finished_at = berlin_evening
    with db.reading() as session:
        again = queries.get_rollout(session=session, rollout_id=rollout_id)
        for moment in (
            again.created_at,
            again.step_started_at,
            again.finished_at,
            again.phases[0].items[0].checked_at,
        ):
            assert moment is not None
            assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
        assert again.created_at == T0
        assert again.finished_at == berlin_evening
        assert again.finished_at.hour == 20  # the same instant, told in UTC
        event = queries.events(session=session, rollout_id=rollout_id)[0]
        assert event.at == T0 and event.at.tzinfo is not None


def test_a_naive_datetime_is_refused(db: Database) -> None:
    rollout_id = add_rollout(db)
    with pytest.raises(StatementError, match="naive datetime"), db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        rollout.finished_at = datetime(2026, 3, 2, 12, 0)
        session.flush()


# -- locking -----------------------------------------------------------------------------


def test_lock_rollout_makes_a_second_locker_wait_for_the_first_commit(db: Database) -> None:
    rollout_id = add_rollout(db)
    first_locked = threading.Event()
    second_trying = threading.Event()
    second_got_it = threading.Event()
    seen_by_second: list[int] = []

    def first() -> None:
        with db.transaction() as session:
            rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
            first_locked.set()
            assert second_trying.wait(5)
            time.sleep(0.2)  # time for the second to get the lock, if it wrongly could
            assert not second_got_it.is_set(), "the second locker did not wait"
            rollout.touch(T0)

    def second() -> None:
        assert first_locked.wait(5)
        second_trying.set()
        with db.transaction() as session:
            rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
            second_got_it.set()
            seen_by_second.append(rollout.revision)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(first), pool.submit(second)]
        for future in futures:
            future.result(timeout=30)

    # It waited, and then saw the first one's change, not the row as it was before.
    assert seen_by_second == [2]


def test_lock_rollout_of_an_unknown_rollout_is_none(db: Database) -> None:
    with db.transaction() as session:
        assert queries.lock_rollout(session=session, rollout_id=12345) is None


# -- many ticks at once ------------------------------------------------------------------


def test_twenty_people_ticking_different_items_at_once_all_stick(db: Database) -> None:
    rollout_id = add_rollout(db)  # the standard plan: 32 items in all
    with db.reading() as session:
        items = [
            i.id for p in queries.get_rollout(session=session, rollout_id=rollout_id).phases for i in p.items
        ]
    chosen = items[:20]
    svc = services(db)
    start = threading.Barrier(20)

    def tick(n: int) -> int:
        actor = Actor(team_id="T1", user_id=f"U{n:02d}", channel_id="C1")
        start.wait(10)
        return checklist.set_items(svc, actor, rollout_id, [ItemChange(chosen[n], True)])

    with ThreadPoolExecutor(20) as pool:
        changed = list(pool.map(tick, range(20), timeout=60))

    assert changed == [1] * 20
    with db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        by_id = {i.id: i for p in rollout.phases for i in p.items}
        assert {i for i, item in by_id.items() if item.checked} == set(chosen)
        assert {by_id[chosen[n]].checked_by for n in range(20)} == {f"U{n:02d}" for n in range(20)}
        assert all(by_id[chosen[n]].checked_by == f"U{n:02d}" for n in range(20))
        assert rollout.revision == 21
        ticks = [
            e
            for e in queries.events(session=session, rollout_id=rollout_id)
            if e.kind is EventKind.ITEM_CHECKED
        ]
        assert sorted((e.data["item_id"], e.actor_id) for e in ticks) == sorted(
            (chosen[n], f"U{n:02d}") for n in range(20)
        )


def test_the_same_box_ticked_by_ten_people_at_once_is_one_event(db: Database) -> None:
    rollout_id = add_rollout(db)
    with db.reading() as session:
        item_id = queries.get_rollout(session=session, rollout_id=rollout_id).phases[0].items[0].id
    svc = services(db)
    start = threading.Barrier(10)

    def tick(n: int) -> int:
        start.wait(10)
        return checklist.set_items(svc, Actor("T1", f"U{n}", "C1"), rollout_id, [ItemChange(item_id, True)])

    with ThreadPoolExecutor(10) as pool:
        changed = list(pool.map(tick, range(10), timeout=60))

    assert sorted(changed) == [0] * 9 + [1]
    with db.reading() as session:
        events = queries.events(session=session, rollout_id=rollout_id)
        assert [e.kind for e in events].count(EventKind.ITEM_CHECKED) == 1
        winner = next(e for e in events if e.kind is EventKind.ITEM_CHECKED).actor_id
        item = session.get(ChecklistItem, item_id)
        assert item.checked_by == winner


def test_set_items_records_each_change_with_its_item_and_phase(db: Database) -> None:
    rollout_id = add_rollout(db)
    with db.reading() as session:
        first, second = queries.get_rollout(session=session, rollout_id=rollout_id).phases[0].items[:2]
    svc = services(db)
    ana = Actor("T1", "U_ANA", "C1")
    assert (
        checklist.set_items(svc, ana, rollout_id, [ItemChange(first.id, True), ItemChange(second.id, True)])
        == 2
    )
    assert checklist.set_items(svc, ana, rollout_id, [ItemChange(first.id, False)]) == 1
    with db.reading() as session:
        events = [
            e
            for e in queries.events(session=session, rollout_id=rollout_id)
            if e.kind is not EventKind.STARTED
        ]
    assert [(e.kind, e.actor_id, e.data["item_id"], e.data["text"], e.data["phase"]) for e in events] == [
        (EventKind.ITEM_CHECKED, "U_ANA", first.id, "Deploy to staging environment", "Internal Testing"),
        (
            EventKind.ITEM_CHECKED,
            "U_ANA",
            second.id,
            "Internal team testing with real workflows",
            "Internal Testing",
        ),
        (EventKind.ITEM_UNCHECKED, "U_ANA", first.id, "Deploy to staging environment", "Internal Testing"),
    ]


def test_set_items_on_another_workspaces_rollout_is_not_found(db: Database) -> None:
    from bot.errors import RolloutNotFound

    rollout_id = add_rollout(db, team_id="T1")
    with db.reading() as session:
        item_id = queries.get_rollout(session=session, rollout_id=rollout_id).phases[0].items[0].id
    with pytest.raises(RolloutNotFound):
        checklist.set_items(
            services(db), Actor("T_OTHER", "U1", "C1"), rollout_id, [ItemChange(item_id, True)]
        )
    with db.reading() as session:
        assert not session.get(ChecklistItem, item_id).checked


def test_discard_leaves_nothing_of_the_rollout(db: Database) -> None:
    rollout_id = add_rollout(db)
    keep = add_rollout(db, "other-feature")
    starting.discard(services(db), rollout_id)
    with db.reading() as session:
        for model in (Phase, ChecklistItem, Event):
            assert (
                session.scalar(select(func.count()).select_from(model).where(model.rollout_id == rollout_id))
                == 0
            )
        assert session.get(Rollout, rollout_id) is None
        assert session.scalar(select(func.count()).select_from(Step)) == 6  # the other rollout's
        assert session.get(Rollout, keep) is not None


# -- SQLite ------------------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    upgrade(url)
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 2  # FAST
    finally:
        database.dispose()
