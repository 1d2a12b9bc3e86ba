"""Every message kind held to messages/STYLE.md: a push text that is plain, event first and
short; emoji only from the table, one meaning each; times as Slack date tokens, never a raw
zone; a sparkline never without its words."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from messages.push import PUSH_LIMIT, plain_line, push_text
from messages.render import configure
from messages.symbols import EMOJI
from tests.messages import samples
from tests.messages.kinds import KINDS

EMOJI_CODE = re.compile(r":[a-z][a-z0-9_+\-]*:")
SPARK = re.compile(r"`[▁▂▃▄▅▆▇█]{2,}`")


@pytest.fixture(autouse=True)
def builtin_templates() -> None:
    configure(None)


def texts(node: Any) -> list[str]:
    """Every text a person reads in the blocks."""
    if isinstance(node, dict):
        own = [node["text"]] if isinstance(node.get("text"), str) else []
        return own + [t for v in node.values() if isinstance(v, dict | list) for t in texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in texts(v)]
    return []


# A milestone's or trigger alert's summary: the event in words, then the feature.
SUMMARY = re.compile(
    r"^(Rollout started|Advanced|Advanced past a closed gate|Rollout complete|Paused|Resumed|Rolled back"
    r"|Update on|Rollback trigger fired)\b"
)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_push_text_is_plain_short_and_says_what_happened(kind: str) -> None:
    message = KINDS[kind]()
    assert 0 < len(message.text) <= PUSH_LIMIT
    assert not EMOJI_CODE.search(message.text), message.text
    assert not re.search(r"(?<!\w)[*_~`]\S", message.text), message.text
    assert "<!date" not in message.text and "<http" not in message.text
    # Event first: the push text is the message's own first line, not a summary of something else.
    first = plain_line(texts(message.blocks)[0].splitlines()[0]) if message.blocks else ""
    header = next((b for b in message.blocks if b.get("type") == "header"), None)
    if header is None and not SUMMARY.match(message.text):
        words = [w.strip(",:.") for w in first.split()[:3]]
        assert words == [w.strip(",:.") for w in message.text.split()[:3]], (message.text, first)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_emoji_is_one_of_the_table(kind: str) -> None:
    message = KINDS[kind]()
    used = set(EMOJI_CODE.findall(" ".join(texts(message.blocks))))
    used -= {":date_short_pretty:"}  # not an emoji: never matched, as tokens use braces
    assert used <= set(EMOJI), used - set(EMOJI)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_times_are_in_each_readers_zone_never_a_raw_zone(kind: str) -> None:
    message = KINDS[kind]()
    shown = json.dumps(message.blocks, ensure_ascii=False)
    assert samples.TZ not in shown
    for token in re.findall(r"<!date\^[^>]*>", shown):
        assert re.fullmatch(
            r"<!date\^\d+\^\{date_short(?:_pretty)?\}(?: \{time\})?\|[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2}(?: \d\d:\d\d(?: [A-Z+\-0-9]+)?)?>",
            token,
        ), token
    assert not re.search(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) 0\d ", shown), "one date form: Fri 4 Dec"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_sparkline_has_its_words_beside_it(kind: str) -> None:
    for text in texts(KINDS[kind]().blocks):
        for found in SPARK.finditer(text):
            after = text[found.end() :].split()
            assert after and after[0] in ("rising", "falling", "steady"), text


def test_one_symbol_one_meaning() -> None:
    assert len(set(EMOJI.values())) == len(EMOJI)
    assert ":white_check_mark:" in EMOJI and "passed" in EMOJI[":white_check_mark:"]


def test_the_gate_report_leads_with_its_verdict_and_one_blocker_list() -> None:
    report = KINDS["gate_blocked"]()
    first, blockers, metrics = (texts([b])[0] for b in report.blocks[:3])
    assert first.startswith(":no_entry: *checkout-v2* cannot advance from internal: 3 things block it")
    assert blockers.splitlines()[0] == "• *Error rate* 1.00% → 1.22% (+0.22 points; limit +0.10)"
    # Error rate is a success metric and a trigger: one row, which says both.
    assert metrics.startswith("*3 metrics*")
    assert metrics.count("*Error rate*") == 1
    assert "success metric and rollback trigger" in metrics
    # Passing rows show their change too, and link to Datadog.
    assert "240 ms → 251 ms (+4.6%; limit +10.0%)" in metrics
    assert "Open in Datadog" in metrics


@pytest.mark.parametrize(
    ("mrkdwn", "push"),
    [
        (":rocket: *checkout-v2* started\nmore", "checkout-v2 started"),
        (
            "_Soak_: <!date^1^{time}|Fri 4 Dec 09:00 PST> and <https://x.io/a|the chart>",
            "Soak: Fri 4 Dec 09:00 PST and the chart",
        ),
        ("a &lt;b&gt; " + "word " * 40, None),
        ("<@U1> " + "x" * 200, None),
    ],
)
def test_push_text_rules(mrkdwn: str, push: str | None) -> None:
    text = push_text(mrkdwn)
    assert len(text) <= PUSH_LIMIT
    if push is not None:
        assert text == push
    assert not re.search(r"&[a-z]*…", text), "never cut inside an entity"
