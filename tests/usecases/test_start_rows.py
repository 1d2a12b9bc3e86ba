"""`/rollout start` writes its rows with Core inserts (bot/usecases/start.py, storage/rows.py)
from the plain objects of `rollouts.new_rows`: every row of every table, ids and defaults, the
announcement's message JSON and the due work included, is what the ORM's unit of work wrote for
the same start from `rollouts.new_rollout`'s object graph, on SQLite and Postgres, for each
built-in template and an imported plan."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from bot.domain import rollouts
from bot.domain.plans.catalog import builtin_templates
from bot.domain.plans.markdown.assembly import parse_plan
from bot.domain.plans.model import Plan
from bot.services import Actor, Services
from bot.usecases import announcing, plan_store, schedule
from bot.usecases import start as starting
from storage.db import Database
from storage.enums import EventKind
from storage.models import Base
from tests.support import make_services

NOW = datetime(2026, 3, 10, 14, 30, 15, 123456, tzinfo=UTC)
ACTOR = Actor(team_id="T0ROWS", user_id="UOWNER", channel_id="CMAIN")
SEED = Path(__file__).parents[1] / "fixtures" / "seeds" / "rollout-plan-template.md"


def command(template: str) -> starting.Start:
    return starting.Start(
        feature="Checkout v2",
        template=template,
        owner_id="UOTHER",
        stakeholders=("CSTAKE1", "CMAIN", "CSTAKE2"),  # the rollout's own channel is no stakeholder
        service="checkout",
        timezone="Europe/Berlin",
    )


def start_with_the_orm(svc: Services, actor: Actor, cmd: starting.Start) -> int:
    """The start's transaction as it was written with the ORM (object graph, flush)."""
    assert cmd.feature is not None and cmd.template is not None
    plan = plan_store.resolve(svc, actor.team_id, cmd.template)
    with svc.db.transaction() as session:
        rollout = rollouts.new_rollout(
            plan,
            team_id=actor.team_id,
            channel_id=actor.channel_id,
            feature=cmd.feature,
            owner_id=cmd.owner_id or actor.user_id,
            created_by=actor.user_id,
            flag_key=cmd.flag,
            service=cmd.service,
            stakeholders=list(cmd.stakeholders),
            timezone=cmd.timezone or svc.settings.default_timezone,
            country=svc.settings.default_country,
            now=NOW,
        )
        session.add(rollout)
        session.flush()
        session.add(
            rollouts.event(
                rollout, EventKind.STARTED, actor.user_id, NOW, template=plan.name, channel=actor.channel_id
            )
        )
        announcing.announce(
            session, rollout, "started", "started", NOW, actor=actor.user_id, before_status=True
        )
        schedule.reschedule(session, rollout, NOW, watch_minutes=svc.settings.watch_minutes)
        return rollout.id


def every_row(db: Database) -> dict[str, list[dict[str, Any]]]:
    with db.reading() as session:
        return {
            table.name: [
                dict(row._mapping) for row in session.execute(select(table).order_by(*table.primary_key))
            ]
            for table in Base.metadata.sorted_tables
        }


def empty(db: Database) -> None:
    """Every table emptied, ids starting again from 1 (SQLite reuses them once a table is empty)."""
    with db.transaction() as session:
        if db.dialect == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(table.delete())


def imported_plan() -> Plan:
    result = parse_plan(SEED.read_text(), name="imported")
    return result.plan


@pytest.mark.parametrize("template", [*sorted(builtin_templates()), "imported"])
def test_a_start_writes_the_rows_the_orm_wrote(db: Database, template: str) -> None:
    svc = make_services(db, clock=lambda: NOW)
    written = []
    for run in (start_with_the_orm, starting.start):
        empty(db)
        if template == "imported":
            plan_store.save(svc, ACTOR, imported_plan(), source="# imported")
        rollout_id = run(svc, ACTOR, command(template))
        written.append((rollout_id, every_row(db)))

    (orm_id, orm_rows), (core_id, core_rows) = written
    assert core_id == orm_id
    for name, rows in orm_rows.items():
        assert core_rows[name] == rows, name
    touched = {name for name, rows in core_rows.items() if rows}
    assert {"rollout", "phase", "step", "checklist_item", "event", "outbox_message", "due_job"} <= touched
    assert len(core_rows["outbox_message"]) == 3  # the thread, and each stakeholder channel once


@pytest.mark.parametrize("template", [*sorted(builtin_templates()), "imported"])
def test_the_objects_a_start_inserted_hold_what_their_rows_hold(db: Database, template: str) -> None:
    """After `_insert_plan`, each plain object holds every column of its row in its __dict__,
    equal to the row read back: ids, foreign keys, defaults, and None where the row is NULL (an
    attribute it did not hold would read as None too, but through the ORM's slow path, which
    the start's view of its rows paid some 150 times; storage/rows.py)."""
    plan = imported_plan() if template == "imported" else builtin_templates()[template]
    cmd = command(template)
    assert cmd.feature is not None
    with db.transaction() as session:
        rollout = rollouts.new_rows(
            plan,
            team_id=ACTOR.team_id,
            channel_id=ACTOR.channel_id,
            feature=cmd.feature,
            owner_id=ACTOR.user_id,
            created_by=ACTOR.user_id,
            flag_key=None,
            service=cmd.service,
            stakeholders=list(cmd.stakeholders),
            timezone="Europe/Berlin",
            country="US",
            now=NOW,
        )
        starting._insert_plan(session, rollout)
    objects: list[Any] = [
        rollout,
        *rollout.phases,
        *(step for phase in rollout.phases for step in phase.steps),
        *(item for phase in rollout.phases for item in phase.items),
    ]
    assert objects[-1].checked_at is None  # (an item: a NULL column)
    with db.reading() as session:
        for obj in objects:
            table = obj.__table__
            row = session.execute(select(table).where(table.c.id == obj.id)).one()._mapping
            for prop in inspect(type(obj)).column_attrs:
                assert prop.key in obj.__dict__, (table.name, prop.key)
                assert obj.__dict__[prop.key] == row[prop.columns[0].key], (table.name, prop.key)
