"""Slack's form-encoded bodies, decoded at C speed: the same result as `urllib.parse.parse_qsl`.

A click's body is its whole message, JSON percent-encoded into one `payload` field (24 KB for
a status message with a checklist): Python 3.11's `unquote` decodes it escape by escape, 2 ms
a click, half the web worker's CPU for it and as much again in the work process
(bench/profile_web.py). Bolt parses every form body with `parse_qsl`; `install` hands it this
one instead, which turns each `%XX` into `\\xXX` and lets the `unicode_escape` codec decode
them all at once.

Exactly `parse_qsl(body, keep_blank_values=True)`, which is how Bolt calls it: a body the
shortcut cannot read the same way (not ASCII, holding a backslash, a `%` without two hex
digits after it, bytes that are not UTF-8) is decoded by `parse_qsl` itself
(tests/edge/test_form_bodies.py compares the two).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl as slow_parse_qsl


def _unquote_plus(value: str) -> str:
    value = value.replace("+", " ")
    if "%" not in value:
        return value
    escaped = value.replace("%", "\\x").encode("ascii").decode("unicode_escape")
    return escaped.encode("latin-1").decode("utf-8")


def parse_qsl(qs: Any, keep_blank_values: bool = False, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
    """`urllib.parse.parse_qsl` for the call Bolt makes; anything else goes to it unchanged."""
    if args or kwargs or not isinstance(qs, str) or not qs.isascii() or "\\" in qs:
        return slow_parse_qsl(qs, keep_blank_values, *args, **kwargs)
    pairs: list[tuple[str, str]] = []
    try:
        for field in qs.split("&"):
            if not field:
                continue
            name, equals, value = field.partition("=")
            if not equals and not keep_blank_values:
                continue
            if value or keep_blank_values:
                pairs.append((_unquote_plus(name), _unquote_plus(value)))
    except UnicodeError:
        return slow_parse_qsl(qs, keep_blank_values)
    return pairs


def install() -> None:
    """Bolt's request parser uses `parse_qsl` above (both processes parse every body)."""
    from slack_bolt.request import internals

    setattr(internals, "parse_qsl", parse_qsl)  # noqa: B010
