"""Plan documents by size: the import refuses a document over MAX_DOCUMENT_BYTES and says so,
and the work it does grows linearly with the document.

Work is counted, not timed: the number of Python bytecode instructions run while parsing (a
`sys.settrace` opcode counter), which is the same on every run and every machine. It sees
loops written in Python (a scan of every row per row, a search that starts over each time);
work inside one C call (a set copied, a regular expression backtracking) is one instruction,
and is covered by bench/plan_parse.py and the patterns' comments instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from bot.domain.plans.markdown import MAX_DOCUMENT_BYTES, DocumentTooLarge, parse_plan, parse_plans


def test_a_document_over_the_limit_is_refused_and_the_message_says_the_limit():
    text = "# Rollout Plan: Big\n\n## Overview\n\n" + "x" * MAX_DOCUMENT_BYTES
    for parse in (parse_plan, parse_plans):
        with pytest.raises(DocumentTooLarge) as refused:
            parse(text, name="big")
        assert f"{MAX_DOCUMENT_BYTES:,} bytes (1 MiB)" in str(refused.value)
        assert f"{len(text):,} bytes" in str(refused.value)


def test_the_limit_counts_bytes_of_utf8_not_characters():
    head = "# Rollout Plan: Big\n\n## Overview\n\n"
    fits = head + "x" * (MAX_DOCUMENT_BYTES - len(head))
    assert parse_plan(fits, name="big").plan.title == "Big"
    too_big = head + "é" * ((MAX_DOCUMENT_BYTES - len(head)) // 2 + 1)  # 2 bytes each
    assert len(too_big) < MAX_DOCUMENT_BYTES
    with pytest.raises(DocumentTooLarge):
        parse_plan(too_big, name="big")


def block(n: int) -> tuple[list[str], list[str], str, str]:
    """Two phases (the template's form and the questionnaire's), a Success Metrics row and a
    rollback trigger. Metrics and triggers repeat their names, so that every one needs a key
    of its own (error_rate, error_rate_2, …)."""
    phases = [
        f"### Phase {2 * n}: Gradual {n}",
        f"> Roll out 25% → 50% → 100%, wave {n}",
        "",
        "**Duration:** 3 days",
        "",
        "**Steps:**",
        "- 25% — 3000 users, at least 1 business day",
        "- 50% — 6,000 users",
        "",
        "**Tasks:**",
        f"- [ ] Deploy wave {n}",
        "- [ ] Watch the dashboards",
        "",
        "**Exit Criteria:**",
        "- [ ] No P0 bugs",
        "",
        f"## Phase {2 * n + 1}: Canary (1%)",
        "### Planning",
        "Desired number of users: 3000, 6000",
        "Desired date range or test duration: 2 weeks",
        "What metrics-based criteria will you use? (e.g. error rates):",
        "- DataDog: No increase in error rates",
        "- DataDog: Latency increases by no more than 10% of its baseline",
        "",
    ]
    gate = [
        f"### Phase {n}: Wave {n}",
        "**Steps:**",
        "- 25% — 3000 users",
        "",
    ]
    return (
        phases,
        gate,
        "| Error rate | 0.1% | <0.1% increase | Monitoring |",
        "- Error rate increases by more than 2%",
    )


def document(blocks: int) -> str:
    """Two plans: a hand-written one, then an exported one whose Metric Gate holds one trigger
    per block and whose Rollback Triggers restate them."""
    first = ["# Rollout Plan: Hand-written", "**Owner:** Pat", "## Overview", "Text.", "## Rollout Strategy"]
    second = ["# Rollout Plan: Exported", "## Rollout Strategy"]
    rows, triggers, gate, said = [], [], [], []
    for n in range(1, blocks + 1):
        phases, exported, row, trigger = block(n)
        first += phases
        second += exported
        rows.append(row)
        triggers.append(trigger)
        gate.append(f"| rollback trigger | errors_{n} | Errors {n} | upper | {n} | | up | sum | 60 | `q` | |")
        said.append(f"- Errors {n} goes above {n}")
    first += ["## Success Metrics", "| Metric | Baseline | Target | Method |", "|---|---|---|---|", *rows]
    first += ["## Rollback Triggers", "Immediately halt and rollback if:", *triggers]
    first += ["## Unknown Section", "Some words."]
    second += ["## Rollback Triggers", *said, "## Metric Gate"]
    second += [
        "| Kind | Key | Metric | Rule | Threshold | Unit | Worse when | Aggregator | Window (min) | Query |"
    ]
    second += ["|---|---|---|---|---|---|---|---|---|---|", *gate]
    return "\n".join(first + second) + "\n"


def instructions(parse: Callable[[], Any]) -> int:
    """Bytecode instructions run by `parse()`, counted with an opcode tracer."""
    count = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "call":
            frame.f_trace_opcodes = True
        elif event == "opcode":
            count += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        parse()
    finally:
        sys.settrace(previous)
    return count


def test_the_work_grows_linearly_with_the_document():
    n = 10
    lines = {}
    work = {}
    for blocks in (n, 2 * n, 4 * n):
        text = document(blocks)
        lines[blocks] = text.count("\n")
        results = parse_plans(text, name="big")
        assert len(results[0].plan.metrics) == 3 * blocks  # the document is read as meant
        assert {m.key for m in results[0].plan.triggers} >= {"error_rate_spike", f"error_rate_spike_{blocks}"}
        assert len(results[1].plan.triggers) == blocks
        work[blocks] = instructions(lambda text=text: parse_plans(text, name="big"))
    assert lines[4 * n] > 3.8 * lines[n]  # n and 4n lines, give or take the headings
    # Each block added costs the same, however many there are already: the last 2n blocks
    # cost twice the n before them (a quadratic part would make them cost more than twice).
    first, second = work[2 * n] - work[n], work[4 * n] - work[2 * n]
    assert second <= 2 * first * 1.01, (work, second / first / 2)
    assert work[4 * n] <= 4 * work[n], work
