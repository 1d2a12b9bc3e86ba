"""What the status message looks like (messages/blocks.py): data in, Block Kit out, within
Slack's limits, with nothing a user typed able to ping a channel."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain import rollouts
from bot.edge.answers import help_message
from bot.edge.parsing import USAGES
from bot.usecases.views import rollout_view
from messages.blocks import Message
from messages.blocks import status_message as render_status
from messages.text import MAX_BLOCKS, MAX_OPTION_TEXT
from storage.enums import ItemKind
from storage.models import ChecklistItem, Rollout
from tests.domain.test_domain import T0, started
from tests.support import body

ROLLOUT_ID = 42
NOW = T0 + timedelta(hours=2)

Block = dict[str, Any]


def with_ids(rollout: Rollout) -> Rollout:
    """Ids as the database would give them: the checklist's block ids carry the rollout's."""
    rollout.id = ROLLOUT_ID
    for phase in rollout.phases:
        phase.rollout_id = ROLLOUT_ID
    return rollout


def status_message(rollout: Rollout, **options: Any) -> Message:
    """The status message of the rollout's read model, as the bot renders it."""
    return render_status(rollout_view(rollout), **options)


def rollout_with_items(tasks: int, exits: int = 0, text: str = "Task number {n}") -> Rollout:
    """A standard rollout whose first phase has `tasks` tasks and `exits` exit criteria."""
    rollout = with_ids(started())
    phase = rollout.phases[0]
    phase.items = [
        ChecklistItem(id=1000 + n, position=n, kind=ItemKind.TASK, text=text.format(n=n))
        for n in range(tasks)
    ] + [
        ChecklistItem(id=2000 + n, position=tasks + n, kind=ItemKind.EXIT, text=f"Exit criterion {n}")
        for n in range(exits)
    ]
    return rollout


def checklists(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b["type"] == "actions" and b.get("block_id", "").startswith("checklist:")]


def checkboxes(blocks: list[Block]) -> list[Block]:
    return [e for b in checklists(blocks) for e in b["elements"] if e["type"] == "checkboxes"]


def option_values(blocks: list[Block]) -> list[str]:
    return [o["value"] for e in checkboxes(blocks) for o in e["options"]]


def mrkdwn_texts(value: Any) -> list[str]:
    """Every mrkdwn text anywhere in the blocks (plain_text is never parsed for mentions)."""
    found: list[str] = []
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn":
            found.append(body(value))
        for child in value.values():
            found += mrkdwn_texts(child)
    elif isinstance(value, list):
        for child in value:
            found += mrkdwn_texts(child)
    return found


def steps_text(blocks: list[Block]) -> str:
    return next(b["text"]["text"] for b in blocks if b.get("block_id") == "steps")


# -- what it shows -----------------------------------------------------------------------


def test_the_status_message_shows_feature_owner_template_phases_and_where_it_is() -> None:
    rollout = with_ids(started("backend"))
    message = status_message(rollout, now=NOW)
    blocks = message.blocks

    assert blocks[0]["type"] == "header"
    assert "checkout-v2" in blocks[0]["text"]["text"]
    facts = " | ".join(body(e) for e in blocks[1]["elements"])
    assert "<@U_OWNER>" in facts
    assert "Back-end phased rollout" in facts and "`backend`" in facts
    assert "`checkout_v2`" in facts and "<#C_LAUNCH>" in facts

    steps = steps_text(blocks)
    assert steps.splitlines()[0] == (
        "Now: *Canary*, step *1%*, since <!date^1772470800^{date_short_pretty} {time}|Mon 2 Mar 09:00 PST>"
    )
    # The next advance leaves Canary: its unticked exit criteria wait on the owner.
    assert steps.splitlines()[1] == "Waiting on <@U_OWNER>: 2 exit criteria"
    assert steps.splitlines()[2:] == [
        ":arrow_forward: _now_ *Canary*: *1% (500 users)*",
        ":white_circle: _ahead_ *25% - 100%*: 25% (3,000 users) → 50% (6,000 users) → 75% (9,000 users) → 100% (12,000 users)",
    ]


def test_the_current_phases_checklist_is_checkboxes_of_its_item_ids() -> None:
    rollout = with_ids(started("backend"))
    canary = rollout.phases[0]
    rollouts.set_item(rollout, canary.items[1].id, True, "U_ANA", T0 + timedelta(minutes=5))

    blocks = status_message(rollout, now=NOW).blocks

    assert [b["block_id"] for b in checklists(blocks)] == [
        f"checklist:{ROLLOUT_ID}:0:t0",
        f"checklist:{ROLLOUT_ID}:0:e0",
    ]
    tasks, exits = checkboxes(blocks)
    assert {tasks["action_id"], exits["action_id"]} == {"checklist_toggle"}
    assert [(o["value"], o["text"]["text"]) for o in tasks["options"]] == [
        (str(canary.items[0].id), "Turn the feature toggle on for the canary cohort"),
        (str(canary.items[1].id), "Check the success criteria in Datadog"),
    ]
    assert [o["value"] for o in exits["options"]] == [str(canary.items[2].id), str(canary.items[3].id)]
    # Ticked: shown as initial_options, with who and when.
    assert [o["value"] for o in tasks["initial_options"]] == [str(canary.items[1].id)]
    assert tasks["initial_options"][0]["description"]["text"] == (
        "<@U_ANA> · <!date^1772471100^{date_short} {time}|Mon 2 Mar 09:05>"
    )
    assert "initial_options" not in exits
    counts = [body(e) for b in blocks if b["type"] == "context" for e in b["elements"]]
    assert "*Tasks* 1/2" in counts and "*Exit criteria* 0/2" in counts
    # Only the current phase's items: none of the next phase's.
    later_ids = {str(i.id) for i in rollout.phases[1].items}
    assert not later_ids & set(option_values(blocks))


def test_after_an_advance_the_checklist_is_the_new_phases() -> None:
    rollout = with_ids(started("backend"))
    rollouts.move_forward(rollout, T0 + timedelta(days=1))
    blocks = status_message(rollout, now=NOW).blocks
    assert option_values(blocks) == [str(i.id) for i in rollout.phases[1].items]
    assert steps_text(blocks).splitlines()[1] == ":heavy_check_mark: _done_ *Canary*: 1% (500 users)"


# -- escaping ----------------------------------------------------------------------------


@pytest.mark.parametrize("feature", ["<!channel>", "<@U123>", "<!here|here> & <https://evil.example|click>"])
def test_a_hostile_feature_name_pings_nobody(feature: str) -> None:
    rollout = with_ids(started(feature=feature))
    rollout.plan_title = "<!everyone> plan"
    rollout.phases[0].items[0].text = "Tell <!channel> & <@U999>"
    message = status_message(rollout, now=NOW)

    texts = mrkdwn_texts(message.blocks)
    assert texts
    for text in [*texts, message.text]:
        # The bot's own mentions (the owner, the stakeholder channel) are the only ones left.
        # Slack's own date tokens (`<!date^…>`) are the bot's, never the user's.
        assert not re.search(r"<[!@](?!date\^)|<https?:", text.replace("<@U_OWNER>", "")), text
    escaped = feature.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert message.text.startswith(f"{escaped} rollout: Internal Testing, step internal")
    assert "&lt;!everyone&gt; plan" in json.dumps(message.blocks)
    assert any(t == "Tell &lt;!channel&gt; &amp; &lt;@U999&gt;" for t in texts)
    # The header is plain_text (never parsed for mentions) and shows the name as typed.
    assert message.blocks[0]["text"]["type"] == "plain_text"
    assert message.blocks[0]["text"]["text"] == f":rocket: {feature}"


def test_the_owner_and_checker_mentions_are_the_bots_own() -> None:
    rollout = with_ids(started())
    rollouts.set_item(rollout, rollout.phases[0].items[0].id, True, "U_ANA", T0)
    texts = mrkdwn_texts(status_message(rollout, now=NOW).blocks)
    assert "Owner <@U_OWNER>" in texts
    assert any(t.startswith("<@U_ANA> · ") for t in texts)


# -- Slack's limits ----------------------------------------------------------------------


def test_a_phase_of_23_items_is_chunked_10_10_3() -> None:
    rollout = rollout_with_items(23)
    blocks = status_message(rollout, now=NOW).blocks

    assert [b["block_id"] for b in checklists(blocks)] == [
        f"checklist:{ROLLOUT_ID}:0:t0",
        f"checklist:{ROLLOUT_ID}:0:t1",
        f"checklist:{ROLLOUT_ID}:0:t2",
    ]
    assert [len(e["options"]) for e in checkboxes(blocks)] == [10, 10, 3]
    assert option_values(blocks) == [str(1000 + n) for n in range(23)]
    assert "*Tasks* 0/23" in [body(e) for b in blocks if b["type"] == "context" for e in b["elements"]]


def test_ticked_items_are_initial_options_in_their_own_chunk() -> None:
    rollout = rollout_with_items(23, exits=2)
    for item_id in (1003, 1015, 1022, 2001):
        rollouts.set_item(rollout, item_id, True, "U_ANA", T0)
    elements = checkboxes(status_message(rollout, now=NOW).blocks)
    assert [[o["value"] for o in e.get("initial_options", [])] for e in elements] == [
        ["1003"],
        ["1015"],
        ["1022"],
        ["2001"],
    ]
    for element in elements:
        options = element["options"]
        for chosen in element.get("initial_options", []):
            assert chosen in options  # exactly one of its options, description and all


def test_a_phase_of_60_items_stays_within_50_blocks() -> None:
    rollout = rollout_with_items(40, exits=20)
    blocks = status_message(rollout, now=NOW).blocks
    assert len(blocks) <= MAX_BLOCKS
    assert [len(e["options"]) for e in checkboxes(blocks)] == [10, 10, 10, 10, 10, 10]
    assert option_values(blocks) == [str(1000 + n) for n in range(40)] + [str(2000 + n) for n in range(20)]
    assert "More items than one message can hold" not in json.dumps(blocks)


def test_a_checklist_that_fills_exactly_fifty_blocks_is_shown_whole() -> None:
    # header, facts, steps + divider, "Tasks" count, 43 chunks + controls, footer = 50
    blocks = status_message(rollout_with_items(430), now=NOW).blocks
    assert len(blocks) == MAX_BLOCKS
    assert len(option_values(blocks)) == 430
    assert "More items than one message can hold" not in json.dumps(blocks)


def test_a_checklist_too_long_for_one_message_is_cut_with_a_note() -> None:
    blocks = status_message(rollout_with_items(431, exits=40), now=NOW).blocks
    assert len(blocks) == MAX_BLOCKS
    assert all(len(e["options"]) <= 10 for e in checkboxes(blocks))
    shown = option_values(blocks)
    assert shown == [str(1000 + n) for n in range(len(shown))]  # the first items, in order
    assert len(shown) == 420
    assert blocks[-3]["elements"][0]["text"].startswith("More items than one message can hold")
    assert blocks[-2]["block_id"] == "controls"  # the buttons survive the cut
    assert blocks[-1]["elements"][0]["text"].startswith("Updated ")


def test_long_item_texts_are_cut_to_75_characters_and_go_on_in_the_description() -> None:
    long_text = "Verify that " + "every downstream consumer " * 6 + "sees the new schema"
    rollout = rollout_with_items(3, text=long_text + " {n}")
    options = [o for e in checkboxes(status_message(rollout, now=NOW).blocks) for o in e["options"]]
    assert len(options) == 3
    for option in options:
        assert len(option["text"]["text"]) <= MAX_OPTION_TEXT
        assert option["text"]["text"].endswith("…")
        assert len(option["description"]["text"]) <= MAX_OPTION_TEXT


def test_an_item_full_of_ampersands_still_fits_an_option() -> None:
    text = "Latency < 200 ms & errors < 0.1% on checkout & payments & search & cart"
    assert len(text) <= MAX_OPTION_TEXT
    rollout = rollout_with_items(1, text=text)
    options = [o for e in checkboxes(status_message(rollout, now=NOW).blocks) for o in e["options"]]
    assert len(options[0]["text"]["text"]) <= MAX_OPTION_TEXT
    assert "&amp;" in options[0]["text"]["text"]


# -- the fallback text -------------------------------------------------------------------


def test_the_fallback_text_says_where_the_rollout_is() -> None:
    rollout = with_ids(started("backend"))
    rollouts.set_item(rollout, rollout.phases[0].items[0].id, True, "U_ANA", T0)
    message = status_message(rollout, now=NOW)
    assert message.text == "checkout-v2 rollout: Canary, step 1%; 1 of 4 checklist items ticked"
    assert message.as_kwargs() == {"text": message.text, "blocks": message.blocks}

    rollouts.pause(rollout, T0)
    assert (
        status_message(rollout, now=NOW).text
        == "checkout-v2 rollout: Canary, step 1% (paused); 1 of 4 checklist items ticked"
    )
    rollouts.roll_back(rollout, T0)
    finished = status_message(rollout, now=NOW)
    assert finished.text == "checkout-v2 rollout: rolled back"
    assert checklists(finished.blocks) == []  # a finished rollout offers no boxes


def test_a_read_only_copy_shows_the_checklist_as_text_and_links_to_the_live_message() -> None:
    rollout = with_ids(started("backend"))
    rollouts.set_item(rollout, rollout.phases[0].items[0].id, True, "U_ANA", T0)
    message = status_message(rollout, now=NOW, interactive=False, link="https://example.slack.com/p1")
    assert checklists(message.blocks) == []
    texts = mrkdwn_texts(message.blocks)
    assert (
        "*Tasks* 1/2\n:ballot_box_with_check: Turn the feature toggle on for the canary cohort\n"
        ":white_large_square: Check the success criteria in Datadog"
    ) in texts
    assert any("<https://example.slack.com/p1|Open the live status message>" in t for t in texts)


# -- help --------------------------------------------------------------------------------


def test_help_lists_every_subcommand_with_its_form_and_example() -> None:
    message = help_message()
    text = "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")
    text += json.dumps(message.blocks[-1])
    assert message.text
    for name, usage in USAGES.items():
        escaped_form = usage.form.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert f"`{escaped_form}`" in text, name
        assert f"e.g. `{usage.example}`" in text, name
    for template in ("standard", "backend", "conservative", "aggressive"):
        assert f"`{template}`" in text


def test_times_are_shown_in_the_rollouts_zone() -> None:
    rollout = with_ids(started(timezone="Europe/Berlin"))
    message = status_message(rollout, now=datetime(2026, 3, 2, 17, 30, tzinfo=UTC))
    # Each reader sees their own zone; where Slack cannot show that, the rollout's.
    assert (
        steps_text(message.blocks)
        .splitlines()[0]
        .endswith("since <!date^1772470800^{date_short_pretty} {time}|Mon 2 Mar 18:00 CET>")
    )
    assert message.blocks[-1]["elements"][0]["text"] == (
        "Updated <!date^1772472600^{date_short_pretty} {time}|Mon 2 Mar 18:30 CET>"
    )
