"""The chart of a gate check, from what the gate stored, posted into the status thread; and
the answer's line about it when drawing or the upload fails."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from bot.delivery import charts as posting
from bot.delivery import status_board
from bot.devtools.local_slack import LocalSlack
from bot.metrics import MetricQuery, MetricReading, MetricsSource
from bot.services import Actor, Services
from bot.usecases import advance, charting, controls, lookup, measure
from bot.usecases import start as starting
from storage import queries
from storage.db import Database
from tests.support import Clock, make_services

TEAM, CHANNEL = "T1", "C1"
OWNER = Actor(TEAM, "U_OWNER", CHANNEL)
NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


class Recorded(MetricsSource):
    """Every query answers its value and a series with a gap; control queries answer less."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def snapshot(self, queries: Sequence[MetricQuery], *, now: datetime) -> dict[str, MetricReading]:
        self.asked += [q.name for q in queries]
        out = {}
        for q in queries:
            control = q.name.endswith("#control")
            series = (0.4, 0.41, 0.43, 0.5) if control else (0.4, 0.45, 0.6, 0.7, 0.72)
            out[q.name] = MetricReading(q.name, series[-1], series=series, unit="%")
        return out


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack() as local:
        yield local


@pytest.fixture
def svc(db: Database, slack: LocalSlack) -> Services:
    return make_services(db, slack, Clock(NOW), metrics=Recorded())


def started(svc: Services) -> int:
    rollout_id = starting.start(svc, OWNER, starting.Start(feature="checkout-v2", template="aggressive"))
    status_board.post(svc, rollout_id)
    measure.capture_baseline(svc, rollout_id)
    return rollout_id


def test_a_check_is_drawn_one_panel_per_query_and_uploaded_into_the_status_thread(
    svc: Services, slack: LocalSlack
) -> None:
    rollout_id = started(svc)
    rollout = lookup.load_for(svc, OWNER, rollout_id)
    advance.snapshot(svc, OWNER, rollout)

    drawn = charting.gate_chart(svc, rollout_id, live=True)
    assert drawn is not None
    view, chart = drawn
    # The success metric and the trigger read the same query: one panel, both limits.
    (panel,) = view.panels
    assert panel.role == "success metric and rollback trigger"
    assert [v for _, v in panel.canary] == [0.4, 0.45, 0.6, 0.7, 0.72]
    assert panel.canary[-1][0] == NOW and panel.canary[0][0] == NOW - timedelta(minutes=60)
    assert panel.limit is not None and panel.trigger_limit is not None
    assert view.title.startswith("the gate would not pass at 5%")
    assert Image.open(io.BytesIO(chart.png)).size == (800, 360)

    slack.clear_calls()
    line = posting.after_check(svc, rollout_id)
    assert line.startswith(":chart_with_upwards_trend: The chart of this check follows in <")
    (get_url,) = slack.calls("files.getUploadURLExternal")
    (complete,) = slack.calls("files.completeUploadExternal")
    with svc.db.reading() as session:
        status = queries.status_message(session=session, rollout_id=rollout_id)
    assert status is not None
    assert (complete.params["channel_id"], complete.params["thread_ts"]) == (CHANNEL, status.ts)
    assert str(get_url.params["filename"]).startswith("checkout-v2-gate-")
    (upload,) = slack.calls("upload_url")
    Image.open(io.BytesIO(upload.params["data"])).load()


def test_a_metric_with_a_control_cohort_reads_its_series_once_more(svc: Services, db: Database) -> None:
    rollout_id = started(svc)
    with db.transaction() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        rollout.metrics = [{**m, "control_query": "avg:errors{cohort:control}"} for m in rollout.metrics]
    advance.snapshot(svc, OWNER, lookup.load_for(svc, OWNER, rollout_id))
    source = svc.metrics
    assert isinstance(source, Recorded)
    source.asked.clear()

    drawn = charting.gate_chart(svc, rollout_id, live=True)
    assert drawn is not None
    assert source.asked == ["error_rate#control"]  # only the control, not the whole gate again
    panel = drawn[0].panels[0]
    assert [v for _, v in panel.control] == [0.4, 0.41, 0.43, 0.5]
    assert panel.baseline_label == "control"


def test_when_the_upload_fails_the_answer_says_the_chart_is_missing(svc: Services, slack: LocalSlack) -> None:
    rollout_id = started(svc)
    advance.snapshot(svc, OWNER, lookup.load_for(svc, OWNER, rollout_id))
    slack.fail_next("files.getUploadURLExternal", error="ratelimited")
    assert posting.after_check(svc, rollout_id) == (
        ":warning: The chart of this check is missing: Slack refused the upload (ratelimited)."
    )


def test_when_drawing_fails_the_answer_says_so(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    rollout_id = started(svc)
    advance.snapshot(svc, OWNER, lookup.load_for(svc, OWNER, rollout_id))

    def broken(view: object) -> bytes:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(charting.charts, "gate_chart", broken)
    assert posting.after_check(svc, rollout_id) == (
        ":warning: The chart of this check is missing: it could not be drawn."
    )


def test_progress_has_the_steps_pauses_and_rollback(svc: Services) -> None:
    rollout_id = started(svc)
    clock = svc.clock
    assert isinstance(clock, Clock)
    clock.move(3600)
    controls.pause(svc, OWNER, rollout_id, "support queue")
    clock.move(3600)
    controls.resume(svc, OWNER, rollout_id)
    clock.move(3600)
    controls.roll_back(svc, OWNER, rollout_id, "errors")
    clock.move(3600)

    chart = charting.progress_chart(svc, rollout_id)
    assert chart is not None
    assert Image.open(io.BytesIO(chart.png)).size == (800, 480)
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        view = charting.progress_view(
            rollout,
            queries.events(session=session, rollout_id=rollout_id),
            queries.snapshots(session=session, rollout_id=rollout_id),
            clock(),
        )
    assert [p for _, p in view.percent] == [5.0, 0.0]
    assert view.paused == ((NOW + timedelta(hours=1), NOW + timedelta(hours=2)),)
    assert [m.kind for m in view.markers] == ["rollback"]
