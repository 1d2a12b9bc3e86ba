"""`/rollout help` through the running bot: sections by what a person wants to do, each
subcommand with an example, and one subcommand in full on asking."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.edge.parsing import USAGES
from tests.driver import SlackDriver

pytestmark = pytest.mark.e2e


def sections(body: dict[str, Any]) -> dict[str, str]:
    """Each section of the answer by its first line."""
    out = {}
    for block in body["blocks"]:
        if block["type"] == "section":
            text = block["text"]["text"]
            out[text.splitlines()[0].strip("*")] = text
    return out


def test_help_comes_in_sections_each_with_examples(driver: SlackDriver) -> None:
    response = driver.command("help")
    assert response.status == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert body["text"] == "Rollout Bot help: the /rollout subcommands, by what you want to do"
    found = sections(body)
    wrong = found["When something looks wrong"]
    assert "`/rollout pause [feature] [reason]`" in wrong
    assert "e.g. `/rollout pause checkout-v2 support queue spiking`" in wrong
    assert "/rollout rollback" in wrong and "/rollout advance" not in wrong
    assert "/rollout advance" in found["Move it forward"]
    # No one wall of text: every section is short enough to scan.
    assert all(len(text) < 1200 for text in found.values()), {k: len(v) for k, v in found.items()}
    everything = json.dumps(body["blocks"])
    for name, usage in USAGES.items():
        assert json.dumps(usage.example)[1:-1] in everything, name


def test_help_for_one_subcommand_shows_it_in_full(driver: SlackDriver) -> None:
    body = driver.command("help rollback").json()
    [block] = body["blocks"]
    assert block["text"]["text"] == (
        "*/rollout rollback*: Stop and roll the feature back.\n"
        "Use: `/rollout rollback [feature] [reason]`\n"
        "For example: `/rollout rollback checkout-v2 error rate doubled`"
    )


def test_help_for_a_subcommand_that_does_not_exist_says_so(driver: SlackDriver) -> None:
    reply = driver.command("help frobnicate").json()  # answered in the ack: no work to do
    shown = json.dumps(reply["blocks"])
    assert "there is no subcommand `frobnicate`" in shown
    assert "/rollout help [subcommand]" in shown
