"""The answer to an advance or a snapshot: a table a release manager can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.ids import Action
from messages.blocks import Message, _dicts
from messages.text import MAX_SECTION_TEXT, escape, number, sparkline, truncate

if TYPE_CHECKING:
    from bot.domain.gates import MetricVerdict
    from messages.views import Outcome

ICON = {"pass": ":white_check_mark:", "fail": ":x:", "no data": ":grey_question:"}
TRIGGER_ICON = {"pass": ":white_check_mark:", "fail": ":rotating_light:", "no data": ":grey_question:"}


def _line(v: MetricVerdict, icons: dict[str, str]) -> str:
    if v.judgement is not None:
        # A judged metric is its test in one line: the shift, its interval, the classification.
        line = f"{icons[v.verdict.value]} *{escape(v.name)}*: {escape(v.judgement.summary(v.unit))}"
        trend = sparkline(v.series)
        return line + (f"  `{trend}`" if trend else "")
    now = number(v.value, v.unit)
    parts = [f"{icons[v.verdict.value]} *{escape(v.name)}* {now}"]
    if v.baseline is not None:
        parts.append(f"baseline {number(v.baseline, v.unit)}")
    parts.append(f"rule: {escape(v.allowed)}")
    trend = sparkline(v.series)
    line = " · ".join(parts) + (f"  `{trend}`" if trend else "")
    if v.verdict.value != "pass":
        line += f"\n      _{escape(v.reason)}_"
    return line


def checking(feature: str, count: int) -> Message:
    noun = "metric" if count == 1 else "metrics"
    text = f":hourglass_flowing_sand: Checking {count} {noun} for *{escape(feature)}*…"
    return Message(text=text, blocks=_dicts([SectionBlock(text=MarkdownTextObject(text=text))]))


def gate_report(outcome: Outcome, *, note: str = "", chart: str = "") -> Message:
    """`note`: what else happened (the flag, the status message), last; `chart`: where the
    chart of this check went, or why it is missing, under the soak line."""
    gate = outcome.gate
    feature = escape(outcome.feature)
    if outcome.moved is not None:
        moved = outcome.moved
        title = (
            f":tada: *{feature}* completed its rollout."
            if moved.completed
            else f":arrow_up: *{feature}* advanced from {escape(moved.from_title)} to *{escape(moved.to_title)}*."
        )
    elif outcome.rolled_back:
        title = (
            f":rewind: *{feature}* was rolled back at {escape(outcome.step_title)}: a rollback trigger "
            "fired, and its plan says to roll back on a trigger."
        )
    elif outcome.snapshot_only:
        verdict = "would pass" if gate.passed else "would not pass"
        title = f":bar_chart: *{feature}* at {escape(outcome.step_title)}: the gate {verdict} now."
    elif gate.judgement is not None and gate.judgement.verdict.value == "MARGINAL":
        title = (
            f":warning: *{feature}* stays at {escape(outcome.step_title)}: the canary judgement is "
            f"marginal ({escape(gate.judgement.reason)})."
        )
    else:
        title = f":no_entry: *{feature}* stays at {escape(outcome.step_title)}: the gate is closed."
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=title))]
    if gate.metrics:
        lines = "\n".join(_line(v, ICON) for v in gate.metrics)
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=truncate("*Success metrics*\n" + lines, MAX_SECTION_TEXT))
            )
        )
    if gate.triggers:
        lines = "\n".join(_line(v, TRIGGER_ICON) for v in gate.triggers)
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=truncate("*Rollback triggers*\n" + lines, MAX_SECTION_TEXT))
            )
        )
    if gate.unchecked:
        lines = "\n".join(f":white_large_square: {escape(t)}" for t in gate.unchecked)
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=truncate("*Exit criteria not ticked*\n" + lines, MAX_SECTION_TEXT)
                )
            )
        )
    blocks.append(
        ContextBlock(
            elements=[MarkdownTextObject(text=escape(gate.soak.describe(outcome.step_title, outcome.tz)))]
        )
    )
    if chart:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=chart)]))
    if outcome.moved is None and gate.blockers:
        blocks.append(DividerBlock())
        blockers = "\n".join(f"• {escape(b)}" for b in gate.blockers)
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=truncate("*Why not*\n" + blockers, MAX_SECTION_TEXT)))
        )
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
    fallback = title.replace("*", "")
    if gate.blockers and outcome.moved is None:
        # The push notification shows this text, and Slack parses it like any mrkdwn: the
        # blockers carry exit criteria and metric names people typed.
        fallback += " " + " ".join(escape(b) for b in gate.blockers)
    return Message(text=truncate(fallback, 3000), blocks=_dicts(blocks))
