"""A text-only message's one section (`text_message`, `text_blocks`, `Message(text=...)`) is a
plain dict now: it must be exactly what slack_sdk's `SectionBlock(text=MarkdownTextObject(...))`
gave, for any text, an empty one (the model leaves the text out) and one past Slack's limit
(cut first, as before) included. (A milestone's messages, built from `text_blocks`, are in the
snapshots of tests/messages/test_message_snapshots.py, push text and all.)"""

from __future__ import annotations

import pytest
from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

from messages.blocks import Message, text_blocks, text_message
from messages.text import MAX_SECTION_TEXT, truncate

TEXTS = [
    "",
    " ",
    "a",
    "*Checkout v2* started by <@U1> :rocket:\nnext: 25% of <#C1>",
    "&lt;!channel&gt; `code` _it_ ~s~",
    "é" * MAX_SECTION_TEXT,
    "x " * MAX_SECTION_TEXT,  # past the limit: cut
]


def _model(text: str) -> dict[str, object]:
    return SectionBlock(text=MarkdownTextObject(text=truncate(text, MAX_SECTION_TEXT))).to_dict()


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_a_text_section_is_the_models(text: str) -> None:
    assert text_blocks(text) == [_model(text)]
    assert text_message(text).blocks == [_model(text)]
    if text.strip():  # a message of blank text has no blocks
        assert Message(text=text).blocks == [_model(text)]
