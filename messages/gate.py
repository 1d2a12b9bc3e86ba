"""The answer to an advance or a metrics check: a report a release manager reads in five
seconds.

Rules (messages/STYLE.md, "Gate report"):

- The verdict first, in one line; then, when the gate is closed, one list of what blocks it,
  gravest first (the gate's own order), in plain words: "Error rate 1.00% → 1.22% (+0.22
  points; limit +0.10)".
- Then each metric once: a metric that is both a success metric and a rollback trigger (same
  name) is one row that says so. Every row shows baseline → now and the change, passing rows
  too, with the row's numbers at one fixed number of decimals.
- A row's trend (sparkline) has its words beside it ("rising"), and every row whose query
  Datadog can show links to it ("Open in Datadog").
- Times are Slack date tokens: each reader sees their own zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.domain.calendar import format_business_days
from bot.domain.wording import MINUS
from bot.ids import Action
from messages.blocks import Message, _dicts
from messages.text import MAX_SECTION_TEXT, escape, slack_time, sparkline, truncate

if TYPE_CHECKING:
    from bot.domain.gates import GateResult, MetricVerdict
    from bot.domain.soak import Soak
    from messages.views import Outcome

VERDICT = {
    "pass": ":white_check_mark: Passed",
    "fail": ":x: Failed",
    "no data": ":grey_question: No data",
}
FIRED = ":rotating_light: Fired"


@dataclass(frozen=True)
class Row:
    """One metric as the report shows it: a success metric, a trigger, or both."""

    metric: MetricVerdict | None
    trigger: MetricVerdict | None

    @property
    def shown(self) -> MetricVerdict:
        found = self.metric or self.trigger
        assert found is not None
        return found

    @property
    def role(self) -> str:
        if self.metric and self.trigger:
            return "success metric and rollback trigger"
        return "success metric" if self.metric else "rollback trigger"


def rows(gate: GateResult) -> list[Row]:
    """Each metric once: a trigger named like a success metric joins that metric's row."""
    by_name = {m.name.casefold(): Row(m, None) for m in gate.metrics}
    out = dict(by_name)
    for t in gate.triggers:
        key = t.name.casefold()
        out[key] = Row(out[key].metric, t) if key in by_name else Row(None, t)
    return list(out.values())


def decimals(*values: float | None) -> int:
    """One number of decimals for a row, from its largest number: 0.012 → 3, 1.22 → 2,
    12.3 → 1, 250 → 0."""
    largest = max((abs(v) for v in values if v is not None), default=0.0)
    if largest >= 100:
        return 0
    if largest >= 10:
        return 1
    if largest >= 0.1 or largest == 0:
        return 2
    return 3


def fixed(value: float, places: int, unit: str = "", *, signed: bool = False) -> str:
    text = f"{abs(value) if signed else value:,.{places}f}".replace("-", MINUS)
    if signed:
        text = ("+" if value >= 0 else MINUS) + text
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("%",) else f"{text} {unit}"


def _change_unit(v: MetricVerdict) -> str:
    if v.rule == "relative":
        return "%"
    return "points" if v.unit == "%" else v.unit


def numbers(v: MetricVerdict, limit_of: MetricVerdict | None = None) -> str:
    """ "1.00% → 1.22% (+0.22 points; limit +0.10)": baseline → now, the change, the limit."""
    if v.judgement is not None:
        return escape(v.judgement.summary(v.unit))
    if v.value is None:
        return escape(v.reason)
    places = decimals(v.baseline, v.value)
    now = fixed(v.value, places, v.unit)
    limit_source = limit_of or v
    if v.rule in ("relative", "absolute"):
        unit = _change_unit(v)
        cplaces = 1 if unit == "%" else places
        if v.change is None:
            change = "no baseline" if v.baseline is None else "change cannot be computed"
        else:
            change = fixed(v.change, cplaces, unit, signed=True)
        bound = limit_source.threshold if limit_source.bad_up else -limit_source.threshold
        limit = fixed(bound, cplaces, "%" if unit == "%" else "", signed=True)
        start = f"{fixed(v.baseline, places, v.unit)} → " if v.baseline is not None else ""
        return f"{start}{now} ({change}; limit {limit})"
    # Bounds and zero judge the value itself; the change from the baseline is still shown.
    if limit_source.rule == "zero":
        limit = "must be 0"
    else:
        op = "≤" if limit_source.rule == "upper" else "≥"
        limit = f"limit {op} {fixed(limit_source.threshold, places, v.unit)}"
    if v.baseline is None:
        return f"{now} ({limit})"
    unit = "points" if v.unit == "%" else v.unit
    change = fixed(v.value - v.baseline, places, unit, signed=True)
    return f"{fixed(v.baseline, places, v.unit)} → {now} ({change}; {limit})"


def trend(series: tuple[float, ...]) -> str:
    """The sparkline with its words: "`▁▂▃▅▇` rising"; empty without enough points."""
    bars = sparkline(series)
    if not bars:
        return ""
    points = [p for p in series if p == p]
    first, last = points[0], points[-1]
    spread = max(points) - min(points)
    if spread == 0 or abs(last - first) < spread / 4:
        words = "steady"
    else:
        words = "rising" if last > first else "falling"
    return f"`{bars}` {words}"


def _row_line(row: Row, links: dict[str, str]) -> str:
    v = row.shown
    fired = row.trigger is not None and row.trigger.verdict.value == "fail"
    worst = "fail" if fired else v.verdict.value
    if row.metric and row.trigger and worst == "pass":
        worst = row.trigger.verdict.value
    label = FIRED if fired else VERDICT[worst]
    role = "" if row.role == "success metric" else f" _({row.role})_"
    line = f"{label} · *{escape(v.name)}*{role}: {numbers(v)}"
    if row.metric and row.trigger:
        t = row.trigger
        if t.rule in ("relative", "absolute"):
            unit = _change_unit(t)
            places = 1 if unit == "%" else decimals(t.baseline, t.value)
            bound = t.threshold if t.bad_up else -t.threshold
            line += f"; trigger at {fixed(bound, places, '%' if unit == '%' else '', signed=True)}"
    extras = [trend(v.series)]
    url = links.get(v.key) or (links.get(row.trigger.key) if row.trigger else None)
    if url:
        extras.append(f"<{url}|Open in Datadog>")
    extra = "  ".join(e for e in extras if e)
    return line + (f"\n      {extra}" if extra else "")


def blocker_lines(gate: GateResult, step_title: str, tz: str) -> list[str]:
    """What blocks the gate, gravest first: the gate's own sentences, with a metric's numbers
    in plain words, each metric once (a fired trigger hides the same metric failing), and the
    soak in the reader's own time."""
    triggers = {v.name: v for v in gate.triggers}
    metrics = {v.name: v for v in gate.metrics}
    out: list[str] = []
    named: set[str] = set()
    for index, sentence in enumerate(gate.blockers):
        found = _metric_named(sentence, triggers, metrics)
        if found is not None:
            v, what = found
            if v.name not in named:
                named.add(v.name)
                if what == "no data":
                    out.append(f"*{escape(v.name)}* has no data: {escape(v.reason)}")
                else:
                    out.append(f"*{escape(v.name)}* {numbers(v)}{what}")
        elif index == len(gate.blockers) - 1 and not gate.soak.met:
            out.append(soak_line(gate.soak, step_title, tz))
        else:
            out.append(escape(sentence.rstrip(".")))
    return out


def _metric_named(
    sentence: str, triggers: dict[str, MetricVerdict], metrics: dict[str, MetricVerdict]
) -> tuple[MetricVerdict, str] | None:
    """The metric a blocker sentence of bot.domain.gates is about, and what to add after its
    numbers; None for sentences about something else (they are shown as written)."""
    for name in sorted(triggers, key=len, reverse=True):
        if sentence.startswith(f"Rollback trigger {name} fired:"):
            return triggers[name], " — rollback trigger fired"
    for name in sorted(metrics, key=len, reverse=True):
        if sentence.startswith(f"{name} fails:") and metrics[name].value is not None:
            return metrics[name], ""
    for name in sorted({**metrics, **triggers}, key=len, reverse=True):
        for opening in (f"{name} has no data:", f"Rollback trigger {name} has no data:"):
            if sentence.startswith(opening):
                return metrics.get(name) or triggers[name], "no data"
    return None


def soak_line(soak: Soak, step_title: str, tz: str) -> str:
    """ "Soak: day 2 of 3 business days at 25%; ready <date>" in the reader's own zone."""
    if soak.required_days <= 0:
        return f"Soak: {escape(step_title)} has no minimum soak time"
    if soak.met:
        required = format_business_days(soak.required_days)
        return f"Soak met at {escape(step_title)} ({required}); ready since {slack_time(soak.earliest, tz)}"
    return f"Soak: {soak.progress()} at {escape(step_title)}; ready {slack_time(soak.earliest, tz)}"


def checking(feature: str, count: int) -> Message:
    noun = "metric" if count == 1 else "metrics"
    text = f":hourglass_flowing_sand: Checking {count} {noun} for *{escape(feature)}*…"
    return Message(text=text, blocks=_dicts([SectionBlock(text=MarkdownTextObject(text=text))]))


def _title(outcome: Outcome, blockers: int) -> str:
    gate = outcome.gate
    feature = escape(outcome.feature)
    step = escape(outcome.step_title)
    if outcome.moved is not None:
        moved = outcome.moved
        if moved.completed:
            return f":tada: *{feature}* completed its rollout: the gate passed at {step}."
        return f":arrow_up: *{feature}* advanced from {escape(moved.from_title)} to *{escape(moved.to_title)}*: the gate passed."
    if outcome.rolled_back:
        return f":rewind: *{feature}* rolled back at {step}: a rollback trigger fired, and its plan rolls back on a trigger."
    if outcome.snapshot_only:
        if gate.passed:
            return f":bar_chart: *{feature}* at {step}: the gate would pass now."
        return f":bar_chart: *{feature}* at {step}: the gate would not pass now ({_count(blockers)})."
    if gate.judgement is not None and gate.judgement.verdict.value == "MARGINAL":
        return f":warning: *{feature}* stays at {step}: the canary judgement is marginal ({escape(gate.judgement.reason)})."
    return f":no_entry: *{feature}* cannot advance from {step}: {_count(blockers)}."


def _count(blockers: int) -> str:
    return "1 thing blocks it" if blockers == 1 else f"{blockers} things block it"


def gate_report(outcome: Outcome, *, note: str = "", chart: str = "") -> Message:
    """`note`: what else happened (the flag, the status message), last; `chart`: where the
    chart of this check went, or why it is missing, under the metrics."""
    gate = outcome.gate
    blockers = blocker_lines(gate, outcome.step_title, outcome.tz) if outcome.moved is None else []
    title = _title(outcome, len(blockers))
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=title))]
    if blockers:
        listed = "\n".join(f"• {b}" for b in blockers)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=truncate(listed, MAX_SECTION_TEXT))))
    found = rows(gate)
    if found:
        links = dict(outcome.links)
        noun = "metric" if len(found) == 1 else "metrics"
        lines = "\n".join(_row_line(r, links) for r in found)
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=truncate(f"*{len(found)} {noun}*\n{lines}", MAX_SECTION_TEXT))
            )
        )
    if not blockers or gate.soak.met:
        blocks.append(
            ContextBlock(
                elements=[MarkdownTextObject(text=soak_line(gate.soak, outcome.step_title, outcome.tz))]
            )
        )
    if chart:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=chart)]))
    if outcome.override_token is not None:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text="Advance anyway…",
                        action_id=Action.ADVANCE_ANYWAY,
                        value=outcome.override_token,
                        style="danger",
                    )
                ]
            )
        )
    if note:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note.strip())]))
    return Message(text=title, blocks=_dicts(blocks))
