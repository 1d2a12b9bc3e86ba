"""Block Kit as plain text, for the terminal shell: what a person would read in Slack, with
each button and checkbox numbered so it can be clicked by typing its number."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_USER = re.compile(r"<@([A-Z0-9_]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([A-Z0-9_]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
# Slack's date token shows each reader their own zone; a terminal shows its fallback.
_DATE = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
_EMOJI = {
    ":white_check_mark:": "✓",
    ":heavy_check_mark:": "✔",
    ":bell:": "🔔",
    ":robot_face:": "🤖",
    ":raised_hand:": "✋",
    ":snowflake:": "❄",
    ":alarm_clock:": "⏰",
    ":zzz:": "💤",
    ":newspaper:": "📰",
    ":key:": "🔑",
    ":wastebasket:": "🗑",
    ":x:": "✗",
    ":grey_question:": "?",
    ":rotating_light:": "!",
    ":arrow_forward:": "▶",
    ":white_circle:": "○",
    ":arrow_left:": "←",
    ":rocket:": "🚀",
    ":warning:": "⚠",
    ":no_entry:": "⛔",
    ":no_entry_sign:": "⛔",
    ":tada:": "🎉",
    ":arrow_up:": "↑",
    ":hourglass_flowing_sand:": "…",
    ":bar_chart:": "📊",
    ":ballot_box_with_check:": "☑",
    ":white_large_square:": "☐",
    ":mega:": "📣",
    ":rewind:": "⏪",
    ":double_vertical_bar:": "⏸",
    ":large_green_circle:": "●",
    ":straight_ruler:": "📏",
    ":calendar:": "📅",
    ":scroll:": "📜",
    ":information_source:": "ℹ",
    ":triangular_flag_on_post:": "🚩",
    ":page_facing_up:": "📄",
    ":chart_with_upwards_trend:": "📈",
    ":clock9:": "🕘",
}


@dataclass(frozen=True)
class Control:
    """A clickable thing: a button, or one checkbox option (with whether it is ticked)."""

    kind: str  # "button" | "checkbox"
    action_id: str
    block_id: str
    value: str
    label: str
    checked: bool = False


def mrkdwn_to_text(text: str) -> str:
    text = _DATE.sub(r"\1", text)
    text = _USER.sub(r"@\1", text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _LINK.sub(r"\2 (\1)", text)
    for code, char in _EMOJI.items():
        text = text.replace(code, char)
    text = re.sub(r"(?<!\w)\*([^*\n]+)\*(?!\w)", r"\1", text)
    text = re.sub(r"(?<!\w)~([^~\n]+)~(?!\w)", r"\1 (done)", text)
    text = re.sub(r"(?<!\w)_(\S(?:[^\n]*?\S)?)_(?!\w)", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(obj: Any) -> str:
    if isinstance(obj, dict):
        return mrkdwn_to_text(str(obj.get("text", "")))
    return mrkdwn_to_text(str(obj or ""))


def controls(blocks: list[dict[str, Any]]) -> Iterator[Control]:
    for block in blocks:
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("type") == "button":
                yield Control(
                    "button",
                    element["action_id"],
                    block.get("block_id", ""),
                    element.get("value", ""),
                    _text(element.get("text")),
                )
            elif element.get("type") == "checkboxes":
                ticked = {o["value"] for o in element.get("initial_options") or []}
                for option in element.get("options", []):
                    yield Control(
                        "checkbox",
                        element["action_id"],
                        block.get("block_id", ""),
                        option["value"],
                        _text(option.get("text")),
                        option["value"] in ticked,
                    )


def render(blocks: list[dict[str, Any]], fallback: str, number_from: int) -> tuple[str, list[Control]]:
    """The message as lines of text, and its controls numbered from `number_from`."""
    if not blocks:
        return mrkdwn_to_text(fallback), []
    lines: list[str] = []
    numbered: list[Control] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {_text(block.get('text'))} ==")
        elif kind == "section":
            lines.append(_text(block.get("text")))
        elif kind == "context":
            lines.append("   " + " · ".join(_text(e) for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append("-" * 40)
        for control in controls([block]):
            number = number_from + len(numbered)
            numbered.append(control)
            if control.kind == "checkbox":
                lines.append(f"  [{number}] {'☑' if control.checked else '☐'} {control.label}")
            else:
                lines.append(f"  [{number}] ({control.label})")
    return "\n".join(lines), numbered
