"""The click's shorter way to its edit, pinned against the old one on SQLite and Postgres: the
tick's own transaction takes the message's `refresh` row (`status_board.refreshing`), the view
and the message's row come in one read (`view_reads.load_with_message`), and letting go is one
conditional DELETE in the usual case. Each ends where a tick followed by `refresh` ends: the
message shows the committed state, no row is left, the shown revision is the committed one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.delivery import status_board
from bot.devtools.local_slack import LocalSlack
from bot.errors import InvalidTransition, RolloutNotFound
from bot.services import Actor, Services
from bot.usecases import checklist, view_reads
from bot.usecases.checklist import ItemChange
from storage import queries
from storage.db import Database
from storage.models import SlackMessage
from tests.delivery.test_status_board import (
    TEAM,
    edits,
    refresh_row,
    shown_and_committed,
    start,
    tick,
    ticked,
)
from tests.support import Clock, make_services


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as fake:
        yield fake


@pytest.fixture
def svc(db: Database, slack: LocalSlack) -> Services:
    return make_services(db, slack, Clock(datetime(2024, 3, 11, 17, 0, tzinfo=UTC)))


def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


def click(svc: Services, where: str, rollout_id: int, item: int, *, team: str = TEAM) -> str | None:
    """What the checklist listener does: the tick and the ask in one transaction."""
    with status_board.refreshing(svc, rollout_id) as refreshing:
        checklist.set_items(
            svc, Actor(team, "WANA", where), rollout_id, [ItemChange(item, True)], then=refreshing
        )
    return refreshing.error


def settled(svc: Services, rollout_id: int) -> None:
    assert refresh_row(svc.db, rollout_id) is None
    shown, committed = shown_and_committed(svc.db, rollout_id)
    assert shown == committed


def test_a_click_asking_in_its_own_transaction_edits_as_a_tick_then_refresh_does(
    svc: Services, slack: LocalSlack
) -> None:
    old_way, new_way = channel(), channel()
    old_id, old_items = start(svc, old_way)
    new_id, new_items = start(svc, new_way)

    assert tick(svc, old_way, "WANA", old_id, old_items[0]) is None
    assert click(svc, new_way, new_id, new_items[0]) is None

    old_sent, new_sent = edits(slack, old_way), edits(slack, new_way)
    assert len(old_sent) == len(new_sent) == 1
    assert ticked(old_sent[-1]) == {old_items[0]} and ticked(new_sent[-1]) == {new_items[0]}
    settled(svc, old_id)
    settled(svc, new_id)
    # The same blocks but for the rollout's own ids and names.
    assert [b["type"] for b in old_sent[-1]["blocks"]] == [b["type"] for b in new_sent[-1]["blocks"]]


def test_a_refused_click_still_puts_the_clickers_view_right(svc: Services, slack: LocalSlack) -> None:
    where = channel()
    rollout_id, items = start(svc, where)

    with pytest.raises(RolloutNotFound):
        click(svc, where, rollout_id, items[0], team="T_OTHER")  # not that workspace's rollout

    sent = edits(slack, where)
    assert len(sent) == 1 and ticked(sent[-1]) == set()
    settled(svc, rollout_id)


def test_a_block_failing_after_its_ask_was_committed_still_edits_at_once(
    svc: Services, slack: LocalSlack
) -> None:
    """The ask committed, then the block raised: the asker finds its own token on the row and
    edits now, instead of leaving the row held until its lease runs out."""
    where = channel()
    rollout_id, items = start(svc, where)

    with pytest.raises(RuntimeError), status_board.refreshing(svc, rollout_id) as refreshing:
        checklist.set_items(
            svc, Actor(TEAM, "WANA", where), rollout_id, [ItemChange(items[1], True)], then=refreshing
        )
        raise RuntimeError("after the commit")

    sent = edits(slack, where)
    assert len(sent) == 1 and ticked(sent[-1]) == {items[1]}
    settled(svc, rollout_id)


def test_letting_go_keeps_the_row_for_a_change_committed_during_the_edit(
    svc: Services, slack: LocalSlack
) -> None:
    """The one-statement let-go must not drop the row when the revision moved on: the holder
    renders once more (here the second tick is committed without asking, as a change by
    another path could be before its own ask)."""
    where = channel()
    rollout_id, items = start(svc, where)
    held = status_board._ask(svc, rollout_id)
    assert held is not None
    token, target = held
    checklist.set_items(svc, Actor(TEAM, "WBOB", where), rollout_id, [ItemChange(items[2], True)])

    assert status_board.hold(svc, rollout_id, token, first=target) is None

    sent = edits(slack, where)
    assert len(sent) == 2  # the view read with the row, then the newest
    assert ticked(sent[0]) == set() and ticked(sent[-1]) == {items[2]}
    settled(svc, rollout_id)


def test_the_view_with_its_message_is_the_view_and_the_messages_row(svc: Services) -> None:
    where = channel()
    rollout_id, items = start(svc, where)
    checklist.set_items(svc, Actor(TEAM, "WANA", where), rollout_id, [ItemChange(items[0], True)])
    with svc.db.reading() as session:
        found = view_reads.load_with_message(session=session, rollout_id=rollout_id, team_id=TEAM)
        alone = view_reads.load_rollout(session=session, rollout_id=rollout_id, team_id=TEAM)
        message = queries.status_message(session=session, rollout_id=rollout_id)
        assert view_reads.load_with_message(session=session, rollout_id=rollout_id, team_id="T_OTHER") is None
        assert view_reads.load_with_message(session=session, rollout_id=rollout_id + 1000) is None
    assert found is not None and message is not None
    view, ref = found
    assert view == alone
    assert ref == (message.id, message.channel_id, message.ts, message.permalink)

    with svc.db.transaction() as session:  # before the message is posted there is no row
        session.execute(SlackMessage.__table__.delete().where(SlackMessage.rollout_id == rollout_id))
    with svc.db.connected() as conn:
        again = view_reads.load_with_message(session=conn, rollout_id=rollout_id)
        ids = conn.execute(select(SlackMessage.id).where(SlackMessage.rollout_id == rollout_id)).all()
    assert again is not None and again[0] == view and again[1] is None and ids == []


def test_a_one_box_tick_reads_its_box_as_a_several_box_tick_does(svc: Services) -> None:
    """The one-box statement (no expanding IN) against the several-box one: the same boxes
    change, and another rollout's box is refused in the domain's words by both."""
    where = channel()
    rollout_id, items = start(svc, where)
    other_id, others = start(svc, channel())
    ana = Actor(TEAM, "WANA", where)

    assert checklist.set_items(svc, ana, rollout_id, [ItemChange(items[0], True)]) == 1
    assert (
        checklist.set_items(svc, ana, rollout_id, [ItemChange(items[1], True), ItemChange(items[2], True)])
        == 2
    )
    assert checklist.set_items(svc, ana, rollout_id, [ItemChange(items[0], True)]) == 0  # already ticked
    for changes in ([ItemChange(others[0], True)], [ItemChange(items[3], True), ItemChange(others[0], True)]):
        with pytest.raises(InvalidTransition, match="not part of this rollout"):
            checklist.set_items(svc, ana, rollout_id, changes)
    with svc.db.reading() as session:
        view = view_reads.load_rollout(session=session, rollout_id=rollout_id)
        other = view_reads.load_rollout(session=session, rollout_id=other_id)
    assert view is not None and other is not None
    assert {i.id for i in view.phases[0].items if i.checked} == set(items[:3])
    assert not any(i.checked for i in other.phases[0].items)


def test_a_view_that_cannot_be_built_with_the_tick_does_not_undo_the_tick(
    svc: Services, slack: LocalSlack, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = channel()
    rollout_id, items = start(svc, where)
    real = status_board._target
    failures = [RuntimeError("a row the view does not expect")]

    def first_fails(session: object, of_rollout: int) -> object:
        if failures:
            raise failures.pop()
        return real(session, of_rollout)  # type: ignore[arg-type]

    # Only the read inside the tick's transaction fails; the edit's own read after it works.
    monkeypatch.setattr(status_board, "_target", first_fails)
    assert click(svc, where, rollout_id, items[0]) is None

    assert not failures
    sent = edits(slack, where)
    assert len(sent) == 1 and ticked(sent[-1]) == {items[0]}  # the tick stuck, and is shown
    settled(svc, rollout_id)
