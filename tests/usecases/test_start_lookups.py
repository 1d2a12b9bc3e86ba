"""What a start reads besides its own rows: the open rollout of the name it would take
(`storage.queries.open_by_feature`, three columns by a statement built once, which the refusal
names) and the plan's JSON (`plan_to_dict`, kept by identity), each pinned against what the
ORM row and a fresh `asdict` gave, on SQLite and Postgres."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from bot.domain.plans.catalog import get_template, plan_from_dict, plan_to_dict
from bot.errors import DuplicateFeature
from bot.services import Actor
from bot.usecases import start as starting
from storage import queries
from storage.db import Database
from storage.enums import OPEN_STATUSES, RolloutStatus
from storage.models import Rollout
from tests.support import make_services

NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
ALICE = Actor("T1", "U_ALICE", "C_ONE")
BOB = Actor("T1", "U_BOB", "C_TWO")


def orm_open(db: Database, team_id: str, feature_key: str) -> tuple[int, str, str] | None:
    """The same lookup as it was written: the whole ORM row."""
    with db.reading() as session:
        row = session.scalars(
            select(Rollout).where(
                Rollout.team_id == team_id,
                Rollout.feature_key == feature_key,
                Rollout.status.in_(OPEN_STATUSES),
            )
        ).first()
        return None if row is None else (row.id, row.feature, row.channel_id)


def looked_up(db: Database, team_id: str, feature_key: str) -> tuple[int, str, str] | None:
    with db.reading() as session:
        found = queries.open_by_feature(session=session, team_id=team_id, feature_key=feature_key)
    return None if found is None else tuple(found)  # type: ignore[return-value]


def test_a_taken_name_is_refused_naming_the_open_rollout_and_its_channel(db: Database) -> None:
    svc = make_services(db, clock=lambda: NOW)
    first = starting.start(svc, ALICE, starting.Start(feature="Checkout-V2"))
    assert (
        looked_up(db, "T1", "checkout-v2")
        == orm_open(db, "T1", "checkout-v2")
        == (
            first,
            "Checkout-V2",
            "C_ONE",
        )
    )
    assert looked_up(db, "T2", "checkout-v2") is None  # another workspace

    with pytest.raises(DuplicateFeature) as refused:
        starting.start(svc, BOB, starting.Start(feature="checkout-v2"))
    assert refused.value.values == {"feature": "Checkout-V2", "channel": "C_ONE"}

    # Paused is still open; finished frees the name.
    for status, expected in ((RolloutStatus.PAUSED, first), (RolloutStatus.COMPLETED, None)):
        with db.transaction() as session:
            session.execute(update(Rollout).where(Rollout.id == first).values(status=status))
        found = looked_up(db, "T1", "checkout-v2")
        assert found == orm_open(db, "T1", "checkout-v2")
        assert (found[0] if found else None) == expected
    second = starting.start(svc, BOB, starting.Start(feature="checkout-v2"))
    assert looked_up(db, "T1", "checkout-v2") == (second, "checkout-v2", "C_TWO")


def test_the_plan_json_is_what_asdict_gave_and_a_new_dict_each_time() -> None:
    plan = get_template("standard")
    fresh = json.loads(json.dumps(asdict(plan)))
    first, again = plan_to_dict(plan), plan_to_dict(plan)
    assert first == again == fresh and first is not again
    first["phases"].clear()  # a caller's change reaches no later caller
    assert plan_to_dict(plan) == fresh
    assert plan_from_dict(plan_to_dict(plan)) == plan


def test_an_equal_plan_that_writes_differently_gets_its_own_json() -> None:
    plan = get_template("standard")
    step = plan.phases[0].steps[0]
    as_int = replace(plan, phases=(replace(plan.phases[0], steps=(replace(step, percent=0),)),))
    as_float = replace(plan, phases=(replace(plan.phases[0], steps=(replace(step, percent=0.0),)),))
    assert as_int == as_float
    assert plan_to_dict(as_int)["phases"][0]["steps"][0]["percent"] == 0
    assert json.dumps(plan_to_dict(as_float)["phases"][0]["steps"][0]["percent"]) == "0.0"
    assert json.dumps(plan_to_dict(as_int)["phases"][0]["steps"][0]["percent"]) == "0"


def test_the_duplicate_check_seeks_the_unique_index_of_open_names(db: Database) -> None:
    """The check reads the partial unique index on open names (`uq_rollout_open_feature`), not
    every rollout of the team: a database uses a partial index only where the query's own
    condition implies the index's, and `status IN (?, ?)` with bound values never does (SQLite
    then read the team's rows through `ix_rollout_channel`, one start after another)."""
    compiled = queries._OPEN_BY_FEATURE.compile(dialect=db.engine.dialect)
    params = compiled.construct_params({"team_id": "T1", "feature_key": "checkout-v2"})
    with db.connected() as conn:
        if db.dialect == "sqlite":
            values = tuple(params[k] for k in compiled.positiontup or ())
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), values).all()
        else:
            # A small table is read whole by Postgres whatever its indexes: ask for the plan it
            # would take were scans dear, which only an index it may use can give.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = conn.exec_driver_sql("EXPLAIN " + str(compiled), params).all()
    assert "uq_rollout_open_feature" in " ".join(str(row[-1]) for row in plan), plan
