"""What `/rollout ...` text means: good forms become typed commands, bad ones a UsageError that
says what was wrong and which subcommand's right form to show."""

from __future__ import annotations

import re

import pytest

from bot.domain.names import MAX_FEATURE_LEN
from bot.edge.parsing import (
    USAGES,
    Help,
    ListRollouts,
    Start,
    Status,
    UsageError,
    parse_command,
    usage_of,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("   ", Help()),
        ("help", Help()),
        ("HELP", Help()),
        ("list", ListRollouts()),
        ("List", ListRollouts()),
        ("status", Status()),
        ("status checkout-v2", Status("checkout-v2")),
        ('status "checkout v2"', Status("checkout v2")),
        ("status \u201ccheckout v2\u201d", Status("checkout v2")),  # Slack's smart quotes
        ("start", Start()),  # no arguments: open the form
        ("START", Start()),
        ("start checkout-v2", Start(feature="checkout-v2")),
        ("start Checkout-V2", Start(feature="Checkout-V2")),  # the name keeps its case
        ("start checkout-v2 backend", Start(feature="checkout-v2", template="backend")),
        ("start checkout-v2 BACKEND", Start(feature="checkout-v2", template="backend")),
        ('start "new checkout" standard', Start(feature="new checkout", template="standard")),
        ("start 'new checkout'", Start(feature="new checkout")),
        ("start \u2018new checkout\u2019", Start(feature="new checkout")),
        ("start checkout-v2 --owner <@U123ABC|ana>", Start(feature="checkout-v2", owner_id="U123ABC")),
        ("start checkout-v2 --owner <@W42>", Start(feature="checkout-v2", owner_id="W42")),
        ("start checkout-v2 --OWNER <@U1>", Start(feature="checkout-v2", owner_id="U1")),
        (
            "start checkout-v2 --stakeholders <#C111|launches> <#G222|leads>",
            Start(feature="checkout-v2", stakeholders=("C111", "G222")),
        ),
        (
            # a channel named twice is one stakeholder
            "start checkout-v2 --stakeholders <#C111|launches> <#C111>",
            Start(feature="checkout-v2", stakeholders=("C111",)),
        ),
        (
            "start checkout-v2 --flag checkout_v2.enabled:web-1",
            Start(feature="checkout-v2", flag="checkout_v2.enabled:web-1"),
        ),
        ("start checkout-v2 --service doc-service", Start(feature="checkout-v2", service="doc-service")),
        ("start checkout-v2 --tz Europe/Berlin", Start(feature="checkout-v2", timezone="Europe/Berlin")),
        (
            # options before the positional words, a single-valued option ends after its value
            "start --owner <@U1> checkout-v2 backend --flag ff",
            Start(feature="checkout-v2", template="backend", owner_id="U1", flag="ff"),
        ),
        (
            "start checkout-v2 backend --owner <@U1|ana> --stakeholders <#C1|a> <#C2|b> --flag checkout_v2",
            Start(
                feature="checkout-v2",
                template="backend",
                owner_id="U1",
                stakeholders=("C1", "C2"),
                flag="checkout_v2",
            ),
        ),
        ("start " + "x" * MAX_FEATURE_LEN, Start(feature="x" * MAX_FEATURE_LEN)),
        ("start <!channel>", Start(feature="<!channel>")),  # parsed as a name; escaped when shown
    ],
)
def test_good_forms(text: str, expected: object) -> None:
    assert parse_command(text) == expected


def _as_slack_sends_it(example: str) -> str:
    """Slack escapes the mentions a user picks (the manifest sets should_escape)."""
    text = example.removeprefix("/rollout ")
    text = re.sub(r"@(\w+)", r"<@U0ANA|\1>", text)
    return re.sub(r"#(\w+)", r"<#C0LAUNCH|\1>", text)


SKELETON_COMMANDS = {"start": Start, "status": Status, "list": ListRollouts, "help": Help}


@pytest.mark.parametrize("name", list(USAGES))
def test_every_usage_example_parses(name: str) -> None:
    parsed = parse_command(_as_slack_sends_it(USAGES[name].example))
    if name in SKELETON_COMMANDS:
        assert isinstance(parsed, SKELETON_COMMANDS[name])


def test_the_start_example_means_what_it_says() -> None:
    assert parse_command(_as_slack_sends_it(USAGES["start"].example)) == Start(
        feature="checkout-v2",
        template="backend",
        owner_id="U0ANA",
        stakeholders=("C0LAUNCH",),
        flag="checkout_v2",
    )


@pytest.mark.parametrize(
    ("text", "subcommand", "problem"),
    [
        ("frobnicate checkout-v2", None, "`frobnicate` is not a /rollout subcommand"),
        ("Stats", None, "`Stats` is not a /rollout subcommand"),
        ('start "checkout v2', None, "a quote is not closed"),
        ("status 'checkout", None, "a quote is not closed"),
        ("start --owner <@U1>", "start", "the feature name is missing"),
        ("start --flag ff", "start", "the feature name is missing"),
        (
            "start " + "x" * (MAX_FEATURE_LEN + 1),
            "start",
            f"the feature name is 81 characters; the limit is {MAX_FEATURE_LEN}",
        ),
        ("status " + "y" * 100, "status", "the feature name is 100 characters; the limit is 80"),
        ('start "  "', "start", "the feature name is empty"),
        ('start "two\nlines"', "start", "the feature name must be on one line, without control characters"),
        (
            "start new checkout standard",
            "start",
            "unexpected `standard`: quote a feature name that has spaces",
        ),
        (
            "start checkout-v2 --owner ana",
            "start",
            "`ana` is not a Slack user: pick the person from the @ suggestions",
        ),
        (
            "start checkout-v2 --owner @ana",
            "start",
            "`@ana` is not a Slack user: pick the person from the @ suggestions",
        ),
        (
            "start checkout-v2 --owner <#C1|x>",
            "start",
            "`<#C1|x>` is not a Slack user: pick the person from the @ suggestions",
        ),
        ("start checkout-v2 --owner", "start", "`--owner` needs a value"),
        ("start checkout-v2 --stakeholders", "start", "`--stakeholders` needs a value"),
        (
            "start checkout-v2 --stakeholders launches",
            "start",
            "`launches` is not a Slack channel: pick it from the # suggestions",
        ),
        (
            "start checkout-v2 --flag 'bad key'",
            "start",
            "`bad key` is not a flag key (letters, digits, _ . : -)",
        ),
        ("start checkout-v2 --flag -x", "start", "`-x` is not a flag key (letters, digits, _ . : -)"),
        ("start checkout-v2 --colour red", "start", "`--colour` is not an option of `start`"),
        ("start checkout-v2 --owner <@U1> --owner <@U2>", "start", "`--owner` is given twice"),
        ("status a b", "status", "give one feature name; quote a name that has spaces"),
        ("status checkout-v2 --owner <@U1>", "status", "`--owner` is not an option of `status`"),
    ],
)
def test_bad_forms(text: str, subcommand: str | None, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_command(text)
    assert caught.value.problem == problem
    assert caught.value.subcommand == subcommand
    assert str(caught.value) == problem


def test_a_usage_error_carries_the_right_form_of_its_subcommand() -> None:
    with pytest.raises(UsageError) as caught:
        parse_command("start checkout-v2 --owner ana")
    assert usage_of(caught.value) is USAGES["start"]
    assert usage_of(caught.value).form.startswith("/rollout start <feature> [template] [--owner @user]")


def test_an_unknown_subcommand_has_no_form_of_its_own() -> None:
    with pytest.raises(UsageError) as caught:
        parse_command("frobnicate")
    assert usage_of(caught.value) is None


def test_every_subcommand_has_a_form_an_example_and_a_summary() -> None:
    assert set(SKELETON_COMMANDS) <= set(USAGES)
    for name, usage in USAGES.items():
        assert usage.form.startswith(f"/rollout {name}")
        assert usage.example.startswith(f"/rollout {name}")
        assert usage.summary
