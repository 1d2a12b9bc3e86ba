"""Every message kind as Slack shows it, recorded: the push text, the message as a person reads
it (messages/plain.py, the shell's own renderer) and the Block Kit sent. A change to any word
shows up in review as a diff of `__snapshots__/`; `pytest --snapshot-update` records it after
the diff is read."""

from __future__ import annotations

import json

import pytest
from syrupy.assertion import SnapshotAssertion

from messages.announcements import STATUS_LINK
from messages.blocks import Message
from messages.home import HomeRow, home_view
from messages.plain import render
from messages.render import configure
from tests.messages.kinds import KINDS


@pytest.fixture(autouse=True)
def builtin_templates() -> None:
    configure(None)  # a team's overrides must not leak into what is recorded


# What the outbox puts for STATUS_LINK when it posts: the status message's permalink.
PERMALINK = "<https://example.slack.com/archives/C_ROLLOUT/p1796022000000100|status thread>"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_message_kind_reads_as_recorded(kind: str, snapshot: SnapshotAssertion) -> None:
    built = KINDS[kind]()
    message = Message(
        text=built.text.replace(STATUS_LINK, PERMALINK),
        blocks=json.loads(json.dumps(built.blocks).replace(STATUS_LINK, PERMALINK)),
    )
    shown, _ = render(message.blocks, message.text, 1)
    recorded = "\n".join(
        [
            f"push: {message.text}",
            "--- as read ---",
            shown,
            "--- blocks ---",
            json.dumps(message.blocks, indent=1, ensure_ascii=False, sort_keys=True),
        ]
    )
    assert recorded == snapshot


def test_the_home_tab_reads_as_recorded(snapshot: SnapshotAssertion) -> None:
    rows = [
        HomeRow(1, "checkout-v2", "C_ROLLOUT", "1%", "Canary", False, 2, 9, "soak met; 2 exit criteria open"),
        HomeRow(
            2, "search-v3", "C_SEARCH", "internal", "Internal Testing", True, 0, 5, "day 1 of 3 business days"
        ),
    ]
    view = home_view(rows)
    shown, _ = render(view["blocks"], "", 1)
    assert shown + "\n--- blocks ---\n" + json.dumps(view["blocks"], indent=1, ensure_ascii=False) == snapshot
