"""Charts end to end: the real `rollout-bot serve`, the local Slack, the Datadog stand-in. An
advance uploads the chart of its check into the status thread (files.getUploadURLExternal,
the bytes, files.completeUploadExternal) and its answer says so; a refused upload leaves the
advance and its answer standing, saying the chart is missing."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from storage.enums import EventKind
from tests.driver import SlackDriver
from tests.e2e_rollouts import Scenario, texts
from tests.fakes.datadog_api import FakeDatadog

pytestmark = pytest.mark.e2e


@pytest.fixture
def sc(
    driver: SlackDriver, slack: LocalSlack, datadog: FakeDatadog, bot_db: Database, channel: str
) -> Scenario:
    return Scenario(driver, slack, datadog, bot_db, channel)


def ready_to_advance(sc: Scenario) -> None:
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.start("aggressive")
    sc.datadog.set_value(sc.errors_match, 1.1, series=[1.0, 1.05, 1.1, 1.2, 1.1])
    sc.ready()


def test_an_advance_uploads_the_chart_of_its_check_into_the_status_thread(sc: Scenario) -> None:
    ready_to_advance(sc)

    reply = sc.advance()

    assert sc.where() == ("active", 1, 0)
    # The local Slack serves every test of the session: only this rollout's calls count.
    (asked,) = [
        c
        for c in sc.slack.calls("files.getUploadURLExternal")
        if str(c.params["filename"]).startswith(f"{sc.feature}-")
    ]
    assert str(asked.params["filename"]).startswith(f"{sc.feature}-gate-")
    (done,) = [
        c for c in sc.slack.calls("files.completeUploadExternal") if c.params["channel_id"] == sc.channel
    ]
    assert done.params["thread_ts"] == sc.status_ts()
    assert done.params["initial_comment"] == f"{sc.feature}: gate passed at 5%"
    (file_id,) = [f["id"] for f in done.params["files"]]
    (upload,) = [c for c in sc.slack.calls("upload_url") if c.params["file_id"] == file_id]
    image = Image.open(io.BytesIO(upload.params["data"]))
    image.load()
    assert image.size == (800, 360)  # the metric and its trigger read one query: one panel
    # The answer came after the upload and says where the chart is.
    assert done.at <= max(c.at for c in sc.slack.calls("response_url"))
    assert any(
        t.startswith(":chart_with_upwards_trend: The chart of this check follows in <") for t in texts(reply)
    )


def test_a_refused_upload_still_answers_and_says_the_chart_is_missing(sc: Scenario) -> None:
    ready_to_advance(sc)
    sc.slack.fail_next("files.completeUploadExternal", error="not_in_channel")

    reply = sc.advance()

    assert sc.where() == ("active", 1, 0)
    assert len(sc.events(EventKind.ADVANCED)) == 1
    assert (
        ":warning: The chart of this check is missing: Slack refused the upload (not_in_channel)."
        in texts(reply)
    )
