"""What the baseline at start asks Datadog for (`measure.capture_baseline`): each metric's value;
a series only for a judged metric without a control cohort (the one gate input that reads a
stored baseline's series); no control cohort at all. The values stored are those the full read
(`measure.read_metrics`, which asked for every series and cohort) gave, on SQLite and Postgres,
through the real Datadog client against Datadog's stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from bot.domain.plans.model import Metric, Rule
from bot.metrics import DatadogMetricsSource
from bot.services import Actor, Services
from bot.usecases import measure
from bot.usecases import start as starting
from storage import job_queries, queries
from storage.db import Database
from storage.enums import SnapshotKind
from storage.models import Rollout
from tests.fakes.datadog_api import FakeDatadog
from tests.support import make_services

NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
OWNER = Actor("T1", "U_OWNER", "C1")
SERIES = [200.0 + i for i in range(20)]


def judged(key: str, query: str, control: str = "") -> dict[str, object]:
    return Metric(
        key=key, name=key, query=query, control_query=control, rule=Rule.RELATIVE, judge="mann-whitney"
    ).to_dict()


@pytest.fixture
def source(datadog: FakeDatadog) -> Iterator[DatadogMetricsSource]:
    with DatadogMetricsSource("api", "app", api_url=datadog.url) as src:
        yield src


def started(svc: Services, tag: str) -> int:
    """A `standard` rollout (a formula metric, a plain one, two triggers reading the same), plus
    a judged metric without a control cohort, one with, and a plain one with a cohort."""
    rollout_id = starting.start(svc, OWNER, starting.Start(feature=f"base-{tag}", service=f"svc-{tag}"))
    with svc.db.transaction() as session:
        rollout = session.get_one(Rollout, rollout_id)
        cohort = Metric(
            key="saturation",
            name="Saturation",
            query=f"avg:sat{{{tag},flag:on}}",
            control_query=f"avg:sat{{{tag},flag:off}}",
            rule=Rule.RELATIVE,
        ).to_dict()
        metrics = [
            *rollout.metrics,
            judged("judged_alone", f"avg:alone{{{tag}}}"),
            judged("judged_cohort", f"avg:pair{{{tag},flag:on}}", f"avg:pair{{{tag},flag:off}}"),
            cohort,
        ]
        session.execute(update(Rollout).where(Rollout.id == rollout_id).values(metrics=metrics))
    return rollout_id


def test_the_baseline_asks_for_values_and_only_the_series_a_gate_reads(
    db: Database, datadog: FakeDatadog, source: DatadogMetricsSource
) -> None:
    tag = uuid.uuid4().hex[:8]
    for match, value in (
        (f"svc-{tag}", 1.5),
        (f"alone{{{tag}}}", 210.0),
        (f"pair{{{tag}", 205.0),
        (f"sat{{{tag}", 0.5),
    ):
        datadog.set_value(match, value, series=SERIES)
    svc = make_services(db, clock=lambda: NOW, metrics=source)
    rollout_id = started(svc, tag)
    with db.reading() as session:
        rollout = queries.rollout_row(session=session, rollout_id=rollout_id)
    assert rollout is not None
    full, _controls, _ = measure.read_metrics(svc, rollout, NOW)

    before = len(datadog.requests)
    measure.capture_baseline(svc, rollout_id)
    asked = [r for r in datadog.requests[before:] if tag in r.query]

    scalar = sorted(r.query for r in asked if r.endpoint == "scalar")
    series = [r.query for r in asked if r.endpoint == "timeseries"]
    assert series == [f"avg:alone{{{tag}}}"]
    assert not any("flag:off" in q for q in scalar)  # no control cohort at start
    # One value request per distinct query: the error rate's formula, the p95, and the three
    # added metrics' own queries (the triggers read the metrics' queries).
    assert len(scalar) == 5

    with db.reading() as session:
        stored = job_queries.baseline_readings(session=session, rollout_id=rollout_id)
        # What a later gate reads as the judged metric's control: the stored series.
        control = measure.stored_baselines(session, rollout_id)["judged_alone"].series
    assert stored is not None
    assert stored.keys() == full.keys()
    for key, seen in full.items():
        assert stored[key]["value"] == seen.value and stored[key]["problem"] == seen.problem, key
        assert stored[key]["series"] == (SERIES if key == "judged_alone" else []), key
    assert control == full["judged_alone"].series == tuple(SERIES)
    with db.reading() as session:
        snap = queries.latest_snapshot(session=session, rollout_id=rollout_id, kind=SnapshotKind.BASELINE)
        assert snap is not None
        row = (snap.rollout_id, snap.taken_at.replace(tzinfo=UTC), snap.phase_index, snap.step_index)
        assert row == (rollout_id, NOW, 0, 0)
        assert (snap.passed, snap.verdict) == (None, {})
