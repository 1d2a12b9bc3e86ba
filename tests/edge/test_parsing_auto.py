"""What `/rollout auto|hours|freeze|checkpoints …` text becomes, and the answers to text that
is not one of those forms."""

from __future__ import annotations

from datetime import date, time

import pytest

from bot.domain.windows import Freeze, Hours
from bot.edge.parsing import parse_command
from bot.edge.parsing_auto import AdvanceHours, Auto, Checkpoints, Freezes
from bot.errors import UsageError

WEEKDAYS = Hours(frozenset(range(5)), time(9), time(17))


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("auto on", Auto(True)),
        ("auto off checkout-v2", Auto(False, "checkout-v2")),
        ("auto checkout-v2 ON", Auto(True, "checkout-v2")),
        ("hours", AdvanceHours(team=False)),
        ("hours checkout-v2", AdvanceHours(team=False, feature="checkout-v2")),
        ("hours team mon-fri 09:00-17:00", AdvanceHours(team=True, hours=WEEKDAYS, change=True)),
        ("hours checkout-v2 mon-fri 9:00-17:00", AdvanceHours(False, "checkout-v2", WEEKDAYS, change=True)),
        ("hours team any", AdvanceHours(team=True, change=True)),
        ("hours checkout-v2 any", AdvanceHours(False, "checkout-v2", None, change=True)),
        (
            'freeze add 2026-12-21 2027-01-04 "holiday freeze"',
            Freezes("add", Freeze("holiday freeze", date(2026, 12, 21), date(2027, 1, 4))),
        ),
        (
            "freeze add 2026-12-21 2027-01-04 “launch week” --for checkout-v2",
            Freezes(
                "add", Freeze("launch week", date(2026, 12, 21), date(2027, 1, 4)), feature="checkout-v2"
            ),
        ),
        ("freeze", Freezes("list")),
        ("freeze list", Freezes("list")),
        ("freeze remove 3", Freezes("remove", freeze_id=3)),
        ("checkpoints team phases", Checkpoints(True)),
        ("checkpoints team steps", Checkpoints(False)),
    ],
)
def test_commands(text: str, command: object) -> None:
    assert parse_command(text) == command


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("auto", "say `on` or `off`"),
        ("auto on off", "say `on` or `off`"),
        ("hours team fri-mon 09:00-17:00", "runs backwards"),
        ("hours team mon-fri 17:00-09:00", "ends before it starts"),
        ('freeze add 2027-01-04 2026-12-21 "x"', "ends (2026-12-21) before it starts"),
        ('freeze add 21.12.2026 2027-01-04 "x"', "not dates"),
        ("freeze add 2026-12-21 2027-01-04", 'say `add <first day> <last day> "name"`'),
        ('freeze add 2026-12-21 2027-01-04 "x" --for', "`--for` takes one feature name"),
        ("freeze remove three", 'say `add <first day> <last day> "name"`'),
        ("checkpoints phases", "say `team phases` or `team steps`"),
    ],
)
def test_what_is_not_a_form_says_why(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_command(text)
    assert problem in refused.value.problem
    assert refused.value.subcommand == text.split()[0]
