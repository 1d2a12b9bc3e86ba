"""`storage.rows.insert_new` with objects of one class that hold different attributes (a start's
never do: each of its tables' rows hold the same ones): each row is what the ORM's unit of work
writes for the same object, a column one object leaves out is NULL in its row, and the object
holds None for it, as it holds its defaults and id. A column that would not be NULL there (a
server default, JSON's `null`) is refused rather than written otherwise than the ORM would."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.enums import EventKind
from storage.models import Event, TeamRules
from storage.rows import insert_new, plain
from tests.delivery.test_job_reads import T0, _rollout

COLUMNS = (Event.rollout_id, Event.at, Event.actor_id, Event.kind, Event.data)


def _values(rollout_id: int) -> list[dict[str, Any]]:
    """Three events: one with an actor and data, one with neither, one whose actor is None."""
    return [
        {"rollout_id": rollout_id, "kind": EventKind.PAUSED, "actor_id": "U1", "at": T0, "data": {"a": 1}},
        {
            "rollout_id": rollout_id,
            "kind": EventKind.RESUMED,
            "at": T0 + timedelta(seconds=1),
        },  # no actor, no data
        {"rollout_id": rollout_id, "kind": EventKind.ADVANCED, "actor_id": None, "at": T0},  # None: left out
    ]


def test_objects_that_hold_different_columns_write_the_rows_the_orm_writes(db: Database) -> None:
    rollout_id = _rollout(db)

    def last_three() -> list[tuple[Any, ...]]:
        with db.reading() as session:
            query = select(*COLUMNS).where(Event.rollout_id == rollout_id).order_by(Event.id.desc()).limit(3)
            return [tuple(row) for row in session.execute(query)][::-1]

    with db.transaction() as session:
        session.add_all([Event(**values) for values in _values(rollout_id)])
    by_orm = last_three()
    objects = [plain(Event, values) for values in _values(rollout_id)]
    with db.transaction() as session:
        insert_new(session, objects)
    assert last_three() == by_orm
    assert [row[2] for row in by_orm] == ["U1", None, None]
    # Each object holds what its row holds: the id, the default (`data`), None for a NULL.
    with db.reading() as session:
        for obj in objects:
            row = session.execute(select(*COLUMNS).where(Event.id == obj.__dict__["id"])).one()
            assert tuple(obj.__dict__[c.key] for c in COLUMNS) == tuple(row)
    assert objects[1].__dict__["data"] == {} and objects[1].__dict__["actor_id"] is None


def test_objects_that_leave_out_a_json_column_others_set_are_refused(db: Database) -> None:
    """The ORM writes SQL NULL for a JSON column an object leaves out; an executemany of one set
    of keys would write JSON `null` there (`IS NULL` false): refused, nothing written."""
    objects = [
        plain(TeamRules, {"team_id": "T1", "advance_hours": {"mon": [9, 17]}}),
        plain(TeamRules, {"team_id": "T2"}),
    ]
    with pytest.raises(ValueError, match="advance_hours"), db.transaction() as session:
        insert_new(session, objects, ids=False)
    with db.reading() as session:
        assert session.scalars(select(TeamRules.team_id)).all() == []
