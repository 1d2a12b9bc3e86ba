"""Time to draw a chart: the gate check's picture (messages/charts.py) with 1, 2, 4 and 6
metric panels of 60 points each (minute points over the gate's hour, with gaps), and the
digest's progress chart (nine days, a pause, a rollback, the key metric at each check).

Median wall and CPU time of RUNS draws each, in this process, after one warm-up draw; the
cost of the first chart in a fresh process (importing matplotlib and loading its font cache,
which the work process pays once) is measured apart, in a subprocess. The target, 150 ms per
chart, applies to the gate check as the built-in templates shape it (a metric and its trigger
read one query: one or two panels); the wider pictures are figures. The verdict is on CPU time:
drawing is pure CPU work in one thread, so its CPU time is what a chart costs the work process,
and it is what stays put when other processes share the two cores (the wall time, printed
beside it, then includes waiting for a core).

Run: .venv/bin/python bench/chart_render.py          (RUNS=30 by default)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from benchlib import machine_note, median, run_main, table, verdict

from messages.charts import gate_chart, progress_chart
from messages.views import GateChartView, Marker, MetricPanel, ProgressChartView

RUNS = int(os.environ.get("RUNS", "30"))
TARGET_MS = 150.0
END = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
START = END - timedelta(hours=1)


def panel(n: int) -> MetricPanel:
    canary = tuple(
        (START + timedelta(minutes=i), None if 20 <= i < 26 else 0.4 + 0.004 * i + 0.01 * (i % 3))
        for i in range(60)
    )
    control = tuple((at, 0.41 + 0.002 * (i % 5)) for i, (at, _) in enumerate(canary))
    return MetricPanel(
        name=f"Metric {n}",
        unit="%",
        verdict="fail" if n % 2 else "pass",
        role="success metric and rollback trigger",
        canary=canary,
        value=0.64,
        control=control if n % 2 == 0 else (),
        baseline=0.41,
        baseline_label="control" if n % 2 == 0 else "baseline (at start)",
        limit=0.61,
        trigger_limit=1.41,
    )


def gate_view(panels: int) -> GateChartView:
    return GateChartView(
        feature="checkout-v2",
        title="gate closed at 25% (1 blocker)",
        tz="America/Los_Angeles",
        start=START,
        end=END,
        panels=tuple(panel(n) for n in range(panels)),
        markers=(Marker(START + timedelta(minutes=12), "step", "25%"),),
    )


def progress_view() -> ProgressChartView:
    day0 = END - timedelta(days=9)
    return ProgressChartView(
        feature="checkout-v2",
        tz="America/Los_Angeles",
        start=day0,
        end=END,
        percent=(
            (day0, 0.0),
            (day0 + timedelta(days=1), 1.0),
            (day0 + timedelta(days=3), 25.0),
            (day0 + timedelta(days=6), 0.0),
            (day0 + timedelta(days=7), 25.0),
        ),
        paused=((day0 + timedelta(days=4), day0 + timedelta(days=5)),),
        markers=(Marker(day0 + timedelta(days=6), "rollback", "rolled back"),),
        metric_name="Error rate",
        metric_unit="%",
        metric=tuple((day0 + timedelta(hours=6 * i), 0.4 + 0.01 * (i % 7)) for i in range(36)),
        metric_limit=0.5,
    )


def timed(draw: object) -> tuple[float, float, int]:
    assert callable(draw)
    draw()  # warm-up: fonts and glyph caches
    walls, cpus, size = [], [], 0
    for _ in range(RUNS):
        wall, cpu = time.perf_counter(), time.process_time()
        size = len(draw())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return median(walls), median(cpus), size


def first_chart_in_a_fresh_process() -> float:
    probe = (
        "import sys; sys.path[:0] = ['bench', '.']\n"
        "from chart_render import gate_view\n"
        "from messages.charts import gate_chart\n"
        "import time; t = time.perf_counter(); gate_chart(gate_view(2)); print(time.perf_counter() - t)\n"
    )
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return median(runs)


def main() -> int:
    print(machine_note())
    rows = []
    cpu_medians: dict[str, float] = {}
    cases = [
        (f"gate check, {n} panel{'s' if n > 1 else ''}", lambda n=n: gate_chart(gate_view(n)))
        for n in (1, 2, 4, 6)
    ]
    cases.append(("progress (digest, export)", lambda: progress_chart(progress_view())))
    for label, draw in cases:
        wall, cpu, size = timed(draw)
        cpu_medians[label] = cpu
        rows.append([label, f"{wall * 1000:.1f} ms", f"{cpu * 1000:.1f} ms", f"{size / 1024:.0f} KiB",
                     f"{cpu * 1000 / TARGET_MS:.2f}x"])  # fmt: skip
    print(
        f"median of {RUNS} draws each, after one warm-up; ratio of the CPU time to the {TARGET_MS:g} ms target"
    )
    table(["chart", "wall", "CPU", "PNG", "vs target"], rows)
    cold = first_chart_in_a_fresh_process()
    print(f"first chart in a fresh process (import matplotlib, fonts): {cold * 1000:.0f} ms, median of 3")
    print("targets:")
    for label in ("gate check, 1 panel", "gate check, 2 panels", "progress (digest, export)"):
        verdict(label, cpu_medians[label] * 1000 / TARGET_MS, 1.0, higher_is_better=False)
    print(machine_note())
    return 0


if __name__ == "__main__":
    run_main(main)
