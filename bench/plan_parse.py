"""Time to import a plan document, and whether it grows with the document's size alone.

Builds documents in both hand-written forms (the house template and the back-end
questionnaire, see tests/fixtures/seeds/) and in the exported form with a Metric Gate table,
each holding two plans, and times `parse_plans` on one of about 20,000 lines and on one just
under the largest size the importer accepts (`MAX_DOCUMENT_BYTES`): median of RUNS runs each,
and the time per line. Linear parsing shows as the same time per line at both sizes.

A third document, as large, is a plan of a few lines each 100,000 characters long (runs of
spaces and digits where the patterns read subjects and numbers): the case where a regular
expression that retries a run from each of its characters is quadratic in the line.

No targets: figures and the ratio. Only an error exits non-zero.

Run: .venv/bin/python bench/plan_parse.py          (RUNS=5 by default)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from benchlib import machine_note, median, run_main, table

from bot.domain.plans.markdown import MAX_DOCUMENT_BYTES, parse_plans

RUNS = int(os.environ.get("RUNS", "5"))
GATE_HEADER = (
    "| Kind | Key | Metric | Rule | Threshold | Unit | Worse when | Aggregator | Window (min) | Query | Control query |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def template_phase(n: int) -> str:
    return f"""### Phase {n}: Gradual Rollout {n}
> Incrementally increase the rollout percentage, wave {n}

**Duration:** 3 days

**Tasks:**
- [ ] Increase to 25% → 50% → 100%
- [ ] Monitor metrics at each increment of wave {n}
- [ ] Pause and investigate any anomalies
- [ ] Update stakeholders at each milestone

**Exit Criteria:**
- [ ] All rollout percentages completed without issues
- [ ] Metrics meet or exceed success criteria ({n})
"""


def questionnaire_phase(n: int) -> str:
    return f"""## Phase {n}: Canary (1%)

### Planning
Desired number of users: 3000, 6000, 9000, 12,000
Desired date range or test duration: 2 weeks
How will you make the product available to a limited number of users: feature flag
What metrics-based criteria will you use to evaluate success? (e.g. error rates):
- DataDog: No increase in error rates directly caused by the change in wave {n}
- DataDog: Latency increases by no more than 10% of its baseline
- Support tickets stay flat for wave {n}
"""


def exported_phase(n: int) -> str:
    return f"""### Phase {n}: Wave {n}
> Roll out wave {n}

**Duration:** 2 days

**Steps:**
- 25% — 3000 users, at least 1 business day
- 50% — 6,000 users, at least 1 business day

**Tasks:**
- [ ] Enable the flag for wave {n}

**Exit Criteria:**
- [ ] Dashboards reviewed for wave {n}
"""


def blocks(n: int) -> Iterator[tuple[str, str, str]]:
    """(phase text, a Success Metrics row or gate row, a rollback trigger) for the n-th block."""
    yield (
        template_phase(n) if n % 2 else questionnaire_phase(n),
        f"| Error rate {n} | 0.1% | <0.1% increase | Monitoring |",
        f"- Error rate increases by more than {n % 5 + 1}%" if n % 3 else f"- Someone reports outage {n}",
    )


def document(max_lines: int | None = None, max_bytes: int | None = None) -> str:
    """Two plans (hand-written, then exported with a Metric Gate), blocks added until the next
    would pass the limit; half the blocks go to each plan."""

    def build(count: int) -> str:
        half = max(1, count // 2)
        first = ["# Rollout Plan: Big hand-written", "", "**Owner:** Pat", "", "## Overview", "", "Text.", ""]
        first += ["## Rollout Strategy", ""]
        rows, triggers = [], []
        for n in range(1, half + 1):
            for phase, row, trigger in blocks(n):
                first.append(phase)
                rows.append(row)
                triggers.append(trigger)
        first += [
            "## Success Metrics",
            "",
            "| Metric | Baseline | Target | Method |",
            "|---|---|---|---|",
            *rows,
        ]
        first += ["", "## Rollback Triggers", "", "Immediately halt and rollback if:", *triggers, ""]
        second = ["# Rollout Plan: Big exported", "", "## Rollout Strategy", ""]
        gate, said = [], []
        for n in range(1, count - half + 1):
            second.append(exported_phase(n))
            gate.append(
                f"| rollback trigger | err_{n} | Errors {n} | upper | {n} | | up | sum | 60 | `sum:errors{{wave:{n}}}` | |"
            )
            said.append(f"- Errors {n} goes above {n}")
        second += ["## Rollback Triggers", "", "Immediately halt and rollback if:", *said, ""]
        second += ["## Metric Gate", "", GATE_HEADER, *gate, ""]
        return "\n".join(first + second)

    low, high = 1, 2
    while fits(build(high), max_lines, max_bytes):
        low, high = high, high * 2
    while high - low > 1:  # the most blocks that fit
        mid = (low + high) // 2
        low, high = (mid, high) if fits(build(mid), max_lines, max_bytes) else (low, mid)
    return build(low)


def long_lines(max_bytes: int) -> str:
    """A plan whose phase description, duration, name and rollback triggers are long runs."""
    run = 100_000
    lines = [
        "# Rollout Plan: Long lines",
        "## Rollout Strategy",
        "### Phase 1: Canary" + " " * run + "(1%)",
        "> Roll out to " + "1" * run + " users",
        "**Duration:** " + "2" * run + "x days",
        "## Rollback Triggers",
        "- Error rate" + " " * run + "rises",
        "- DataDog: all" + " " * run + "x",
    ]
    text = "\n".join(lines) + "\n"
    while len(text.encode("utf-8")) + run + 3 <= max_bytes:
        text += "- " + "a " * (run // 2) + "\n"
    return text


def fits(text: str, max_lines: int | None, max_bytes: int | None) -> bool:
    lines_ok = max_lines is None or text.count("\n") + 1 <= max_lines
    return lines_ok and (max_bytes is None or len(text.encode("utf-8")) <= max_bytes)


def timed(text: str) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of RUNS parses. The parse is one thread's work, so
    its CPU time is the figure that other processes on the machine hardly change."""
    wall, cpu = [], []
    for _ in range(RUNS):
        start, start_cpu = time.perf_counter(), time.process_time()
        parse_plans(text, name="bench")
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return median(wall), median(cpu)


def main() -> int:
    print(machine_note())
    documents = (
        ("~20,000 lines", document(max_lines=20_000)),
        (f"largest accepted ({MAX_DOCUMENT_BYTES:,} bytes max)", document(max_bytes=MAX_DOCUMENT_BYTES)),
        ("largest accepted, 100,000-character lines", long_lines(MAX_DOCUMENT_BYTES)),
    )
    rows, per_line = [], []
    for label, text in documents:
        lines, size = text.count("\n"), len(text.encode("utf-8"))
        wall, cpu = timed(text)
        per_line.append(cpu / lines)
        rows.append(
            [
                label,
                f"{lines:,}",
                f"{size:,}",
                f"{wall * 1000:.0f} ms",
                f"{cpu * 1000:.0f} ms",
                f"{cpu / lines * 1e6:.1f} µs",
                f"{cpu / size * 1024 * 1e6:.0f} µs",
            ]
        )
    headers = ["document", "lines", "bytes", "wall", "CPU", "CPU per line", "CPU per KiB"]
    print(f"median of {RUNS} runs each")
    table(headers, rows)
    print(f"CPU per line, largest / 20,000 lines: {per_line[1] / per_line[0]:.2f}x (1.00x is linear)")
    print(machine_note())
    return 0


if __name__ == "__main__":
    run_main(main)
