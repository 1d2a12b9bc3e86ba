from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from storage.db import Database
from storage.models import ChecklistItem, Rollout
from tests.driver import SlackDriver
from tests.fakes.datadog_api import FakeDatadog
from tests.fakes.slack_api import FakeSlack


def test_advance_passes_and_blocks(driver: SlackDriver, slack: FakeSlack, datadog: FakeDatadog, bot_db: Database, channel: str) -> None:
    feature = "adv-" + channel.lower()
    datadog.set_value(f"feature_flag:{feature}", 1.0)
    driver.command(f"start {feature} aggressive")
    slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel)
    import time; time.sleep(1.0)
    driver.command(f"advance {feature}")
    reply = driver.wait_reply(count=2)
    print(reply["text"])
    with bot_db.transaction() as s:
        s.execute(update(Rollout).where(Rollout.feature == feature).values(step_started_at=datetime.now(UTC) - timedelta(days=7)))
        rid = s.query(Rollout.id).filter(Rollout.feature == feature).scalar()
        s.execute(update(ChecklistItem).where(ChecklistItem.rollout_id == rid).values(checked_at=datetime.now(UTC), checked_by="W1"))
    driver.command(f"advance {feature}")
    reply = driver.wait_reply(count=2)
    print(reply["text"])
    assert "advanced" in reply["text"]
