"""Charts as PNG bytes: data in (the read models of messages/views.py), picture out. Pure: no
database, no Slack, no clock.

Drawn for Slack's thumbnail (about 360 px wide in the channel): few panels, large type, the
verdict in the title, the unit on each value axis, and the Okabe–Ito palette, which people
with any common colour blindness tell apart; lines also differ by style (solid canary, dashed
control, dotted baseline), so nothing depends on colour alone.

matplotlib is imported inside the functions that draw, never at import time: `rollout-bot
--help` and the web process's start-up must not pay for it (only the work process draws).
The object API (Figure + the Agg canvas) is used rather than pyplot, which keeps global
state and is not safe across the work process's threads.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from messages.views import GateChartView, Marker, MetricPanel, Point, ProgressChartView

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design".
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#7F7F7F"

CANARY = VERMILLION
CONTROL = BLUE
LIMIT = BLACK
VERDICT_COLOUR = {"pass": GREEN, "fail": VERMILLION, "no data": GREY}
VERDICT_WORD = {"pass": "PASS", "fail": "FAIL", "no data": "NO DATA"}
MARKER_COLOUR = {"step": GREY, "pause": ORANGE, "resume": GREEN, "rollback": VERMILLION}

DPI = 100
WIDTH_IN = 8.0  # 800 px: sharp when opened, legible when Slack shrinks it
PANEL_HEIGHT_IN = 2.6
TITLE_PT = 15
LABEL_PT = 12
TICK_PT = 11
MAX_PANELS = 6  # more would not be readable in a thumbnail; the title says how many are left out


def gate_chart(view: GateChartView) -> bytes:
    """One picture of a gate check: a panel per metric (canary, control or baseline, the
    limit, step changes within the window)."""
    panels = view.panels[:MAX_PANELS]
    columns = 1 if len(panels) <= 2 else 2
    rows = max(1, math.ceil(len(panels) / columns))
    height = 1.0 + PANEL_HEIGHT_IN * rows
    figure = _figure(WIDTH_IN, height, top_in=0.95)
    left_out = view.left_out + len(view.panels) - len(panels)
    more = f" (+{left_out} more metrics not shown)" if left_out else ""
    figure.suptitle(_fit(f"{view.feature}: {view.title}{more}", 70), fontsize=TITLE_PT, fontweight="bold")
    if not panels:
        axes = figure.add_subplot(1, 1, 1)
        _empty(axes, "this step has no metrics")
        return _png(figure)
    grid = figure.add_gridspec(rows, columns)
    first: Axes | None = None
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(grid[index // columns, index % columns], sharex=first)
        first = first or axes
        # Times read along the bottom row only: fewer labels to draw, nothing lost.
        bottom = index + columns >= len(panels)
        _panel(axes, panel, view, bottom=bottom)
    # One legend for every panel, under the title: the same lines mean the same in each.
    _figure_legend(figure, y=1 - 0.5 / height)
    return _png(figure)


def progress_chart(view: ProgressChartView) -> bytes:
    """A rollout's exposure by day, pauses shaded, rollbacks marked; below it, the key metric
    at each gate check."""
    with_metric = bool(view.metric_name)
    figure = _figure(WIDTH_IN, 4.8 if with_metric else 3.0)
    figure.suptitle(_fit(f"{view.feature}: progress", 70), fontsize=TITLE_PT, fontweight="bold")
    if with_metric:
        grid = figure.add_gridspec(2, 1, height_ratios=(3, 2))
        top = figure.add_subplot(grid[0])
        bottom = figure.add_subplot(grid[1], sharex=top)
    else:
        top = figure.add_subplot(1, 1, 1)
        bottom = None
    times = [_naive(at, view.tz) for at, _ in view.percent]
    values = [p for _, p in view.percent]
    if times:
        times.append(_naive(view.end, view.tz))
        values.append(values[-1])
        top.plot(times, values, color=BLUE, linewidth=2.5, drawstyle="steps-post", label="exposure")
    for start, end in view.paused:
        top.axvspan(_naive(start, view.tz), _naive(end, view.tz), color=ORANGE, alpha=0.25, hatch="//")
    _markers(top, [m for m in view.markers if m.kind == "rollback"], view.tz, view.start, view.end)
    top.set_ylim(-3, 103)
    top.set_ylabel("users exposed (%)", fontsize=LABEL_PT)
    _style(top)
    _legend_patches(
        top, paused=bool(view.paused), rolled_back=any(m.kind == "rollback" for m in view.markers)
    )
    if bottom is not None:
        unit = view.metric_unit
        _series(bottom, view.metric, view.tz, color=CANARY, label=view.metric_name, style="-")
        if view.metric_limit is not None:
            bottom.axhline(view.metric_limit, color=LIMIT, linestyle="--", linewidth=1.5, label="limit")
        if not any(v is not None for _, v in view.metric):
            _note(bottom, "no gate check with data yet")
        bottom.set_ylabel(_unit_label(unit), fontsize=LABEL_PT)
        bottom.set_title(_fit(view.metric_name, 60), fontsize=LABEL_PT, loc="left", y=1.0, pad=6)
        _style(bottom)
        _legend(bottom)
    _time_axis(bottom or top, view.start, view.end, view.tz, days=True)
    return _png(figure)


def warm_up() -> None:
    """Imports matplotlib and draws a blank chart: the work process calls it at start-up so
    that no one's first chart waits for the import and the font cache."""
    try:
        _png(_figure(WIDTH_IN, 3.0))  # the smallest real chart: its margins fit (1 × 1 in would not)
    except Exception:  # a failed warm-up only leaves the cost to the first chart
        logging.getLogger(__name__).exception("charts could not be warmed up")


# --- panels ------------------------------------------------------------------------------------


def _panel(axes: Axes, panel: MetricPanel, view: GateChartView, *, bottom: bool) -> None:
    verdict = panel.verdict if panel.verdict in VERDICT_WORD else "no data"
    axes.set_title(
        _fit(f"{VERDICT_WORD[verdict]} · {panel.name}", 40),
        fontsize=LABEL_PT,
        loc="left",
        color=VERDICT_COLOUR[verdict],
        fontweight="bold",
        y=1.0,  # a fixed place: finding one clear of the ticks costs a layout pass
        pad=6,
    )
    drawn = _series(axes, panel.canary, view.tz, color=CANARY, label="canary", style="-")
    drawn |= _series(axes, panel.control, view.tz, color=CONTROL, label="control", style="--")
    if panel.value is not None and not drawn:
        # A number without a series: the gate's reading as one point at the check's time.
        axes.plot([_naive(view.end, view.tz)], [panel.value], "o", color=CANARY, markersize=8, label="canary")
        drawn = True
    if panel.baseline is not None and (not panel.control or not drawn):
        axes.axhline(panel.baseline, color=CONTROL, linestyle=":", linewidth=2, label=panel.baseline_label)
    if panel.limit is not None:
        axes.axhline(panel.limit, color=LIMIT, linestyle="--", linewidth=1.5, label="gate limit")
    if panel.trigger_limit is not None:
        axes.axhline(
            panel.trigger_limit, color=PURPLE, linestyle="-", linewidth=1.5, label="rollback trigger"
        )
    _markers(axes, view.markers, view.tz, view.start, view.end)
    axes.set_ylabel(_unit_label(panel.unit), fontsize=LABEL_PT)
    _time_axis(axes, view.start, view.end, view.tz, days=False, labelled=bottom)
    _style(axes)
    if not drawn:
        _note(axes, "no data" + (f": {panel.problem}" if panel.problem else ""))


def _series(axes: Axes, points: Sequence[Point], tz: str, *, color: str, label: str, style: str) -> bool:
    """Draws a line with gaps where values are missing; True if anything was drawn."""
    if not any(v is not None for _, v in points):
        return False
    times = [_naive(at, tz) for at, _ in points]
    values = [math.nan if v is None or not math.isfinite(v) else v for _, v in points]
    # Markers show lone points between gaps, which a line alone would hide.
    small = sum(1 for v in values if not math.isnan(v)) <= 30
    axes.plot(
        times,
        values,
        linestyle=style,
        color=color,
        linewidth=2.2,
        marker="o" if small else None,
        markersize=3.5,
        label=label,
    )
    return True


def _markers(axes: Axes, markers: Sequence[Marker], tz: str, start: datetime, end: datetime) -> None:
    for marker in markers:
        if not start <= marker.at <= end:
            continue
        at = _naive(marker.at, tz)
        colour = MARKER_COLOUR.get(marker.kind, GREY)
        axes.axvline(at, color=colour, linestyle="-.", linewidth=1.4)
        axes.annotate(
            _fit(marker.label, 18),
            xy=(at, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            ha="left",
            fontsize=TICK_PT - 1,
            color=colour,
        )


# --- shared drawing ----------------------------------------------------------------------------


@functools.cache
def _quiet_missing_glyphs() -> None:
    """DejaVu Sans, the font matplotlib ships, has no CJK glyphs: such a name draws as boxes,
    which is no reason to warn on every chart."""
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)


def _figure_legend(figure: Figure, *, y: float) -> None:
    """One row under the title: a short stroke in each line's own style, then its name.

    Drawn as plain lines and texts at estimated widths rather than with matplotlib's Legend,
    whose packing measures every text it holds: that measuring was a fifth of a two-panel
    chart's cost (bench/chart_render.py). The estimate errs wide (DejaVu Sans averages about
    0.55 em a character); a row that would not fit is set in smaller type."""
    from matplotlib.lines import Line2D

    seen: dict[str, Any] = {}
    for axes in figure.axes:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if not seen:
        return
    width_in = figure.get_figwidth()
    labels = [_fit(label, 24) for label in seen]
    char = TICK_PT * 0.62 / 72 / width_in  # figure fraction per character
    stroke, gap, spacing = 0.4 / width_in, 0.08 / width_in, 0.16 / width_in
    total = sum(stroke + gap + char * len(label) for label in labels) + spacing * (len(labels) - 1)
    scale = min(1.0, 0.94 / total)
    x = 0.5 - total * scale / 2
    for label, handle in zip(labels, seen.values(), strict=True):
        marker = handle.get_marker() if hasattr(handle, "get_marker") else None
        figure.add_artist(
            Line2D(
                [x, x + stroke * scale / 2, x + stroke * scale],
                [y, y, y],
                transform=figure.transFigure,
                color=handle.get_color(),
                linestyle=handle.get_linestyle(),
                linewidth=handle.get_linewidth(),
                marker=marker if marker not in (None, "None", "") else None,
                markevery=[1],
                markersize=handle.get_markersize(),
            )
        )
        figure.text(x + (stroke + gap) * scale, y, label, va="center", ha="left", fontsize=TICK_PT * scale)
        x += (stroke + gap + char * len(label) + spacing) * scale


def _figure(width: float, height: float, *, top_in: float = 0.62) -> Figure:
    from matplotlib.figure import Figure

    _quiet_missing_glyphs()

    # Fixed margins rather than a layout engine: the constrained layout measured every text
    # twice and doubled the cost of a chart (bench/chart_render.py).
    figure = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    top = 1 - top_in / height
    figure.subplots_adjust(
        left=0.1, right=0.96, top=top, bottom=0.62 / height, hspace=0.9 / PANEL_HEIGHT_IN * 2.2, wspace=0.3
    )
    return figure


def _png(figure: Figure) -> bytes:
    """Draws once and encodes the pixels as an RGB PNG at zlib level 1: a white picture
    compresses well at any level, and the alpha channel carries nothing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    size = canvas.get_width_height()
    image = Image.frombuffer("RGBA", size, canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _style(axes: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(nbins=4))
    axes.grid(True, color="#DDDDDD", linewidth=0.8)
    axes.tick_params(labelsize=TICK_PT)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _legend(axes: Axes) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=TICK_PT - 1, loc="upper left", frameon=False)  # "best" costs a search


def _legend_patches(axes: Axes, *, paused: bool, rolled_back: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Line2D([], [], color=BLUE, linewidth=2.5, label="exposure")]
    if paused:
        handles.append(Patch(facecolor=ORANGE, alpha=0.25, hatch="//", label="paused"))
    if rolled_back:
        handles.append(Line2D([], [], color=VERMILLION, linestyle="-.", label="rolled back"))
    axes.legend(handles=handles, fontsize=TICK_PT - 1, loc="upper left", frameon=False)


def _time_axis(
    axes: Axes, start: datetime, end: datetime, tz: str, *, days: bool, labelled: bool = True
) -> None:
    from matplotlib.dates import DateFormatter
    from matplotlib.ticker import FixedLocator

    left, right = _naive(start, tz), _naive(end, tz)
    if right <= left:  # one moment only: a minute either side, so it has somewhere to sit
        left, right = left - 1 / 1440, right + 1 / 1440
    axes.set_xlim(left, right)
    # Five evenly spaced ticks: the automatic date locator costs more than the whole line.
    span = right - left
    axes.xaxis.set_major_locator(FixedLocator([left + span * i / 4 for i in range(5)]))
    long = days and span >= 2
    axes.xaxis.set_major_formatter(DateFormatter("%d %b" if long else "%d %b %H:%M" if days else "%H:%M"))
    if not labelled:
        axes.tick_params(labelbottom=False)
        return
    zone = tz if tz else "UTC"
    axes.set_xlabel(f"time ({zone})", fontsize=TICK_PT)


def _empty(axes: Axes, text: str) -> None:
    axes.set_axis_off()
    _note(axes, text)


def _note(axes: Axes, text: str) -> None:
    axes.text(
        0.5,
        0.5,
        _fit(text, 42),
        transform=axes.transAxes,
        ha="center",
        va="center",
        fontsize=TICK_PT,
        color=GREY,
    )


def _unit_label(unit: str) -> str:
    return unit if unit else "value"


EPOCH = datetime(1970, 1, 1)  # matplotlib's date epoch: its x values are days since then


def _naive(moment: datetime, tz: str) -> float:
    """Local wall-clock time as matplotlib's date number, so ticks read in the rollout's zone."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(ZoneInfo(tz or "UTC")).replace(tzinfo=None)
    return (moment - EPOCH) / timedelta(days=1)


def _fit(text: str, limit: int) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # matplotlib reads $…$ as mathtext: a metric named "$ revenue" must print as typed.
    return text.replace("$", r"\$")
