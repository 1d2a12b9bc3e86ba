"""A start hands the view of what it committed to the first status message
(`start.opened`, `status_board.post(..., shown)`), which is then not read back: that view must
be the one a read after the commit gives, field by field, for every built-in template and an
imported plan, on SQLite and Postgres; and a change committed between the start and the post
still reaches the message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, update

from bot.delivery import status_board
from bot.devtools.local_slack import LocalSlack
from bot.domain.plans.catalog import builtin_templates
from bot.usecases import plan_store, view_reads
from bot.usecases import start as starting
from storage.db import Database
from storage.models import Rollout
from tests.support import make_services
from tests.usecases.test_start_rows import ACTOR, NOW, command, imported_plan


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.mark.parametrize("template", [*sorted(builtin_templates()), "imported"])
def test_the_view_a_start_hands_on_is_the_one_read_back(db: Database, template: str) -> None:
    svc = make_services(db, clock=lambda: NOW)
    if template == "imported":
        plan_store.save(svc, ACTOR, imported_plan(), source="# imported")
    rollout_id, shown = starting.opened(svc, ACTOR, command(template))
    with db.connected() as conn:
        read = view_reads.load_rollout(session=conn, rollout_id=rollout_id)
    assert shown is not None and read is not None
    assert shown == read
    assert any(phase.items for phase in shown.phases)  # the checklist is in it, not left out


def test_the_first_status_message_is_posted_without_reading_the_plan(db: Database, slack: LocalSlack) -> None:
    svc = make_services(db, slack, clock=lambda: NOW)
    rollout_id, shown = starting.opened(svc, ACTOR, command("standard"))
    assert shown is not None
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        status_board.post(svc, rollout_id, shown)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "FROM phase" in s or "FROM checklist_item" in s]
    (posted,) = slack.calls("chat.postMessage")
    blocks = posted.params["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    with db.connected() as conn:
        read = view_reads.load_rollout(session=conn, rollout_id=rollout_id)
    assert read is not None
    expected = status_board.status_message(read, now=NOW).as_kwargs()["blocks"]
    assert json.loads(json.dumps(expected)) == blocks


def test_a_change_between_the_start_and_its_post_reaches_the_message(db: Database, slack: LocalSlack) -> None:
    svc = make_services(db, slack, clock=lambda: NOW)
    rollout_id, shown = starting.opened(svc, ACTOR, command("standard"))
    assert shown is not None
    with db.transaction() as session:  # committed after the start, before its message is posted
        session.execute(update(Rollout).where(Rollout.id == rollout_id).values(revision=Rollout.revision + 1))
    status_board.post(svc, rollout_id, shown)
    assert slack.calls("chat.postMessage") and slack.calls("chat.update")
