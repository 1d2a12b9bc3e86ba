"""Text helpers shared by every message: Slack escaping, lengths, times."""

from __future__ import annotations

from datetime import datetime

from bot.domain.calendar import format_day, format_local

# Block Kit limits (https://docs.slack.dev/reference/block-kit): enforced here, not hoped for.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_OPTION_TEXT = 75
MAX_OPTIONS_PER_CHECKBOXES = 10
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_TEXT = 4000


def escape(value: object) -> str:
    """Slack's own escaping for mrkdwn: user text can never become a `<!channel>` or a link."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escaped_within(value: str, limit: int) -> tuple[str, int]:
    """Escapes `value` and cuts it to `limit` characters *after* escaping (an `&` becomes five),
    never inside an entity. Returns the text and how many characters of `value` it shows."""
    escaped = escape(value)  # once: a status message escapes every checklist item here
    if len(escaped) <= limit:
        return escaped, len(value)
    out, used = "", 0
    for ch in value:
        piece = escape(ch)
        if len(out) + len(piece) > limit - 1:
            break
        out, used = out + piece, used + 1
    return out.rstrip() + "…", used


def truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def local_time(moment: datetime | None, tz: str, *, with_zone: bool = False) -> str:
    """A time for text that is not Slack (the export, the shell) or where a date token cannot
    go: "Fri 4 Dec 23:07", with the zone's abbreviation when `with_zone`."""
    if moment is None:
        return ""
    text = format_local(moment, tz)
    return text if with_zone else text.rsplit(" ", 1)[0]


def slack_time(moment: datetime | None, tz: str, *, compact: bool = False) -> str:
    """A time every reader sees in their own zone: Slack's date token, with the rollout's own
    zone as the fallback ("Fri 4 Dec 23:07 PST") where the token cannot be shown. `compact`
    fits a checkbox's 75 characters: "Dec 4 23:07", its fallback without the zone."""
    if moment is None:
        return ""
    if compact:
        fallback = format_local(moment, tz).rsplit(" ", 1)[0]
        return f"<!date^{int(moment.timestamp())}^{{date_short}} {{time}}|{fallback}>"
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{format_local(moment, tz)}>"


def slack_day(moment: datetime | None, tz: str) -> str:
    """A date in the reader's own zone: "Fri 4 Dec" as the fallback."""
    if moment is None:
        return ""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}}|{format_day(moment, tz)}>"


def percent(value: float) -> str:
    return f"{value:g}%"


SPARK_BARS = "▁▂▃▄▅▆▇█"


def sparkline(series: tuple[float, ...] | list[float], width: int = 16) -> str:
    """A small trend of the window, e.g. ▁▂▂▃▅▇; empty when there are too few points."""
    points = [p for p in series if p == p][-width:]  # p == p drops NaN
    if len(points) < 2:
        return ""
    low, high = min(points), max(points)
    if high == low:
        return SPARK_BARS[3] * len(points)
    scale = (len(SPARK_BARS) - 1) / (high - low)
    return "".join(SPARK_BARS[round((p - low) * scale)] for p in points)


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if unit == "%":
        return f"{text}%"
    return f"{text} {unit}".strip()
