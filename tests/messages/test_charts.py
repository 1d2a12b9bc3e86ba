"""Charts rendered from timeseries as Datadog records them (times in ms, gaps, no data): each
PNG decodes, has the size Slack shows well, and stays small enough to upload at once."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from messages import charts
from messages.views import GateChartView, Marker, MetricPanel, Point, ProgressChartView

FIXTURES = Path(__file__).parent.parent / "fixtures"
END = datetime(2024, 4, 1, 14, 7, 5, tzinfo=UTC)
START = END - timedelta(hours=1)


def recorded() -> tuple[Point, ...]:
    """The v2 timeseries answer recorded from Datadog: three points, a 40-minute gap."""
    body = json.loads((FIXTURES / "v2_query_timeseries_ok.body.json").read_text())
    attributes = body["data"]["attributes"]
    times = [datetime.fromtimestamp(ms / 1000, UTC) for ms in attributes["times"]]
    return tuple(zip(times, (float(v) for v in attributes["values"][0]), strict=True))


def with_gaps(n: int = 60) -> tuple[Point, ...]:
    """A minute-by-minute series where Datadog returned null for minutes 20-29 and 45."""
    return tuple(
        (START + timedelta(minutes=i), None if 20 <= i < 30 or i == 45 else 0.4 + 0.005 * i) for i in range(n)
    )


def decoded(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel, not only the header
    assert image.format == "PNG"
    return image


def colours(image: Image.Image) -> set[tuple[int, int, int]]:
    return {rgb[:3] for _, rgb in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


def panel(name: str = "Error rate", **overrides: object) -> MetricPanel:
    fields: dict[str, object] = {
        "name": name,
        "unit": "%",
        "verdict": "pass",
        "role": "success metric",
        "canary": with_gaps(),
        "value": 0.6,
        "baseline": 0.4,
        "limit": 0.6,
        "trigger_limit": 1.4,
    }
    fields.update(overrides)
    return MetricPanel(**fields)  # type: ignore[arg-type]


def gate(*panels: MetricPanel, **overrides: object) -> GateChartView:
    fields: dict[str, object] = {
        "feature": "checkout-v2",
        "title": "gate closed at 25% (1 blocker)",
        "tz": "America/Los_Angeles",
        "start": START,
        "end": END,
        "panels": panels,
        "markers": (Marker(START + timedelta(minutes=15), "step", "25%"),),
    }
    fields.update(overrides)
    return GateChartView(**fields)  # type: ignore[arg-type]


def test_a_recorded_timeseries_draws_as_a_decodable_png_of_slack_size() -> None:
    series = recorded()
    view = gate(
        panel(
            "Requests", unit="req/s", canary=series, value=87.0, baseline=1.0, limit=None, trigger_limit=None
        ),
        start=series[0][0],
        end=series[-1][0],
    )
    png = charts.gate_chart(view)
    image = decoded(png)
    assert image.size == (800, 360)  # one panel: 8 in × 3.6 in at 100 dpi
    assert 5_000 < len(png) < 300_000
    assert rgb(charts.CANARY) in colours(image)


def test_gaps_control_limits_and_markers_all_draw() -> None:
    control = tuple((at, 0.42) for at, _ in with_gaps())
    view = gate(
        panel(verdict="fail", control=control, baseline_label="control"),
        panel(
            "Latency (p95)", unit="ms", canary=tuple((at, 120.0 + i) for i, (at, _) in enumerate(with_gaps()))
        ),
    )
    image = decoded(charts.gate_chart(view))
    assert image.size == (800, 620)  # two panels, one above the other
    seen = colours(image)
    assert {rgb(charts.CANARY), rgb(charts.CONTROL), rgb(charts.PURPLE)} <= seen


def test_no_data_at_all_still_draws_and_says_so() -> None:
    empty = panel(
        "Checkout conversions", verdict="no data", canary=(), value=None, baseline=None, limit=None,
        problem="Datadog returned 403 Forbidden",
    )  # fmt: skip
    view = gate(empty)
    assert not view.has_data
    image = decoded(charts.gate_chart(view))
    assert image.size == (800, 360)
    assert rgb(charts.CANARY) not in colours(image)


def test_a_value_without_a_series_is_one_point() -> None:
    view = gate(panel(canary=(), value=0.5))
    assert view.has_data
    assert rgb(charts.CANARY) in colours(decoded(charts.gate_chart(view)))


def test_a_step_without_metrics_draws_a_note() -> None:
    decoded(charts.gate_chart(gate()))


def test_many_metrics_are_cut_to_what_a_thumbnail_holds() -> None:
    view = gate(*(panel(f"Metric {i}") for i in range(9)))
    image = decoded(charts.gate_chart(view))
    rows = charts.MAX_PANELS // 2
    assert image.size == (800, int(100 * (1.0 + charts.PANEL_HEIGHT_IN * rows)))


@pytest.mark.filterwarnings("ignore:Glyph")
@pytest.mark.parametrize("name", ["$revenue$ per $user", "x" * 300, "<!channel> *bold*", "日本語の指標"])
def test_names_people_type_do_not_break_drawing(name: str) -> None:
    decoded(charts.gate_chart(gate(panel(name), feature=name)))


def progress(**overrides: object) -> ProgressChartView:
    day0 = END - timedelta(days=9)
    fields: dict[str, object] = {
        "feature": "checkout-v2",
        "tz": "Europe/Berlin",
        "start": day0,
        "end": END,
        "percent": (
            (day0, 0.0),
            (day0 + timedelta(days=1), 1.0),
            (day0 + timedelta(days=3), 25.0),
            (day0 + timedelta(days=6), 0.0),
        ),
        "paused": ((day0 + timedelta(days=4), day0 + timedelta(days=5)),),
        "markers": (Marker(day0 + timedelta(days=6), "rollback", "rolled back"),),
        "metric_name": "Error rate",
        "metric_unit": "%",
        "metric": tuple((day0 + timedelta(days=i), None if i == 4 else 0.4 + 0.05 * i) for i in range(7)),
        "metric_limit": 0.6,
    }
    fields.update(overrides)
    return ProgressChartView(**fields)  # type: ignore[arg-type]


def test_progress_shows_exposure_pauses_rollbacks_and_the_key_metric() -> None:
    image = decoded(charts.progress_chart(progress()))
    assert image.size == (800, 480)
    seen = colours(image)
    assert {rgb(charts.BLUE), rgb(charts.VERMILLION)} <= seen


def test_progress_without_metric_or_checks_draws_exposure_alone() -> None:
    image = decoded(charts.progress_chart(progress(metric_name="", metric=(), metric_limit=None)))
    assert image.size == (800, 300)
    decoded(charts.progress_chart(progress(metric=())))


def test_progress_of_a_rollout_started_a_moment_ago() -> None:
    view = progress(start=END, end=END, percent=((END, 1.0),), paused=(), markers=(), metric=())
    decoded(charts.progress_chart(view))
