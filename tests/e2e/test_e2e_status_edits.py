"""Ten people tick ten boxes of one status message within moments of each other, through the
real app over HTTP, while Slack is slow to take each edit: every tick sticks once, the message
ends showing all ten, and Slack receives fewer edits than clicks (they are coalesced per
message), the last of them the newest revision."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from storage.enums import EventKind
from storage.models import DueJob, Rollout, SlackMessage
from tests.driver import SlackDriver
from tests.e2e.test_e2e_walking_skeleton import events_of, started, ticked, updates_of
from tests.e2e.test_probes_work import add_boxes, checklist_message
from tests.support import wait_until

PEOPLE = 10


def settled(db: Database, rollout_id: int) -> bool:
    """No edit under way or owed, and the message records the committed revision."""
    with db.reading() as session:
        owed = session.scalars(
            select(DueJob.id).where(DueJob.rollout_id == rollout_id, DueJob.kind == "refresh")
        )
        shown = session.scalar(
            select(SlackMessage.rendered_revision).where(SlackMessage.rollout_id == rollout_id)
        )
        committed = session.scalar(select(Rollout.revision).where(Rollout.id == rollout_id))
        return owed.first() is None and shown == committed


def test_ten_quick_ticks_are_fewer_edits_and_the_last_shows_all_ten(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    rollout, posted = started(driver, slack, bot_db, "burst-of-ticks", "burst-of-ticks")
    boxes = add_boxes(bot_db, rollout.id, PEOPLE)
    message = checklist_message(rollout.id, posted["ts"], channel, boxes)
    before = len(updates_of(slack, channel, posted["ts"]))
    slack.set_delay("chat.update", 0.5)  # each edit takes a while, as Slack's do under load
    try:
        with ThreadPoolExecutor(max_workers=PEOPLE) as pool:
            answers = list(
                pool.map(
                    lambda n: driver.toggle(message, str(boxes[n]), user=f"WPERSON{n:02d}"), range(PEOPLE)
                )
            )
        assert [a.status for a in answers] == [200] * PEOPLE

        wanted = {str(b) for b in boxes}
        wait_until(
            lambda: wanted <= ticked(slack.message(channel, posted["ts"])), 30, "all ten boxes shown in Slack"
        )
        wait_until(lambda: settled(bot_db, rollout.id), 30, "the status message settled")
    finally:
        slack.set_delay("chat.update", 0.0)

    edits = updates_of(slack, channel, posted["ts"])[before:]
    assert len(edits) < PEOPLE
    assert wanted <= ticked(edits[-1])
    checks = events_of(bot_db, rollout.id, EventKind.ITEM_CHECKED)
    assert sorted(int(e.data["item_id"]) for e in checks) == sorted(boxes)
