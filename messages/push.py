"""The push text: the top-level `text` of every message the bot posts, and the one thing a
phone's notification, a screen reader's summary and Slack's search result show of it.

Rules (messages/STYLE.md, "Push texts"):

- Event first: the first line of the message, which every message opens with what happened.
- Plain: no `*bold*`, `_italic_`, `~strike~`, backticks or `:emoji:` codes (a notification
  shows them raw); a link `<url|label>` becomes its label and a date token
  `<!date^…|fallback>` its fallback. Mentions (`<@U…>`, `<#C…>`) stay: Slack shows them as
  names in a notification, and a mention in the text is what notifies that person.
- At most `PUSH_LIMIT` characters, cut at a word and never inside an entity or a `<…>` token.
- Escaping is kept: the text is mrkdwn to Slack, so `&lt;` must stay `&lt;`.

`messages.blocks.Message` passes every text through `push_text`, so no post can skip it.
"""

from __future__ import annotations

import re

PUSH_LIMIT = 120

_EMOJI = re.compile(r":[a-z0-9_+\-]+:")
_DATE = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]*)\|([^>]*)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^|>]*)>")
_WRAPPED = re.compile(r"(?<![\w*_~`])([*_~`])(?=\S)(.+?)(?<=\S)\1(?![\w*_~`])")


def plain_words(value: object) -> str:
    """A person's or a plan's own words (a feature, a reason, a trigger's name) made safe to put
    into a push text: no mrkdwn marks, no emoji codes, and no `<`/`>`, so typed text can never
    become a mention or a link in a notification."""
    text = " ".join(_EMOJI.sub("", str(value)).split())
    for mark in ("*", "_", "~", "`", "<", ">"):
        text = text.replace(mark, "")
    return text.replace("&", "and")


def plain_line(mrkdwn: str) -> str:
    """`mrkdwn` without its markup (see the module docstring), spaces collapsed."""
    text = mrkdwn
    if "<" in text:  # each pattern runs only where its mark is: every message passes here
        text = _BARE_LINK.sub(r"\1", _LINK.sub(r"\2", _DATE.sub(r"\1", text)))
    if ":" in text:
        text = _EMOJI.sub("", text)
    for _ in range(3):  # nested emphasis, e.g. *_x_*; a pass that changes nothing ends it
        unwrapped = _WRAPPED.sub(r"\2", text)
        if unwrapped == text:
            break
        text = unwrapped
    return " ".join(text.replace("`", "").split())


def push_text(mrkdwn: str, limit: int = PUSH_LIMIT) -> str:
    """The push text of a message whose body is `mrkdwn`: its first non-empty line, plain, at
    most `limit` characters."""
    text = ""
    for line in mrkdwn.splitlines():  # the first line with something left once plain
        text = plain_line(line)
        if text:
            break
    if len(text) <= limit:
        return text
    out = ""
    for token in text.split(" "):  # a mention or an entity holds no space: never cut
        candidate = f"{out} {token}" if out else token
        if len(candidate) > limit - 1:
            break
        out = candidate
    return (out.rstrip(" ,;:—-") or text[: limit - 1]) + "…"
