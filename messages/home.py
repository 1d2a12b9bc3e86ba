"""The App Home tab: a person's open rollouts, how far each has come, and its next gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.ids import Action
from messages.text import escape

BAR_WIDTH = 12


@dataclass(frozen=True)
class HomeRow:
    rollout_id: int
    feature: str
    channel_id: str
    step_title: str
    phase_name: str
    paused: bool
    done: int
    total: int
    next_gate: str  # e.g. "soak met; 2 exit criteria open"
    auto: str = ""  # mrkdwn: "auto: next check at …", "waiting: freeze “x” until …"; "" when off
    skipped: tuple[str, ...] = ()  # phases left past a closed gate: skipped by override, not done


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else 0
    return "▓" * filled + "░" * (width - filled)


def home_view(rows: Sequence[HomeRow]) -> dict[str, Any]:
    blocks: list[Any] = [HeaderBlock(text="Your rollouts")]
    if not rows:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text="No open rollouts of yours. Start one in a channel with `/rollout start <feature>`."
                )
            )
        )
    for row in rows[:30]:  # a Home tab holds 100 blocks; three per rollout
        state = " · :double_vertical_bar: Paused" if row.paused else ""
        # The bar is a picture; the words beside it ("2 of 9 steps done") are what it says.
        text = (
            f"*{escape(row.feature)}* in <#{row.channel_id}>{state}\n"
            f"`{progress_bar(row.done, row.total)}` {row.done} of {row.total} steps done · "
            f"now: *{escape(row.phase_name)}*, step *{escape(row.step_title)}*"
        )
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=text),
                accessory=ButtonElement(
                    text="Open", action_id=Action.OPEN_ROLLOUT, value=str(row.rollout_id)
                ),
            )
        )
        facts = [f"Next gate: {escape(row.next_gate)}"]
        if row.skipped:
            facts.append("Skipped by override ⚠: " + ", ".join(escape(name) for name in row.skipped))
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f) for f in facts]))
        if row.auto:
            blocks.append(ContextBlock(elements=[MarkdownTextObject(text=row.auto)]))
        blocks.append(DividerBlock())
    return View(type="home", blocks=blocks).to_dict()


def status_modal(title: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title[:24]},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": blocks[:100],
    }
