"""`bot.domain.windows.decide`, row by row of its decision table, and the times it gives:
the next allowed time across hours, holidays and freezes, in the rollout's time zone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest

from bot.domain import windows
from bot.domain.gates import GateResult, MetricVerdict
from bot.domain.gates import Verdict as GateVerdict
from bot.domain.judgement import Score
from bot.domain.judgement import Verdict as JudgementVerdict
from bot.domain.plans.catalog import builtin_templates, plan_problems
from bot.domain.plans.markdown import parse_plan
from bot.domain.soak import Soak
from bot.domain.windows import Answer, Ask, Calendar, Freeze, Gate, Who
from messages.plan_document import export_plan

TZ = "Europe/Berlin"
HOURS = windows.parse_hours("mon-fri", "09:00-17:00")
HOLIDAY_FREEZE = Freeze("holiday freeze", date(2026, 12, 21), date(2027, 1, 4))
CAL = Calendar(TZ, "DE", HOURS, (HOLIDAY_FREEZE,))

MON_10 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # Mon 7 Dec 10:00 in Berlin
MON_18 = datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # after hours
SAT_11 = datetime(2026, 12, 12, 10, 0, tzinfo=UTC)  # a Saturday
IN_FREEZE = datetime(2026, 12, 22, 9, 0, tzinfo=UTC)  # Tue 22 Dec 10:00: frozen
WHIT_MONDAY = datetime(2026, 5, 25, 9, 0, tzinfo=UTC)  # a public holiday in Germany


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=windows.ZoneInfo(TZ)).astimezone(UTC)


GREEN = {"gate": Gate.GREEN, "auto_on": True}
# (row of the table, who, now, what else holds, the answer, its time)
TABLE = [
    ("1 paused", Who.PERSON, MON_10, {"active": False}, Answer.STOP, None),
    ("1 paused, auto", Who.AUTO, MON_10, {"active": False, **GREEN}, Answer.STOP, None),
    ("2 override in a freeze", Who.OVERRIDE, IN_FREEZE, {}, Answer.GO, None),
    ("3 auto off", Who.AUTO, MON_10, {"gate": Gate.GREEN}, Answer.STOP, None),
    (
        "4 checkpoint",
        Who.AUTO,
        MON_10,
        {"checkpoint": "Full Launch is a checkpoint", **GREEN},
        Answer.STOP,
        None,
    ),
    ("5 drift", Who.AUTO, MON_10, {"drift": True, **GREEN}, Answer.WAIT, MON_10 + windows.RECHECK),
    (
        "6 soak",
        Who.AUTO,
        MON_10,
        {"soak_until": MON_10 + timedelta(hours=3), **GREEN},
        Answer.WAIT,
        MON_10 + timedelta(hours=3),
    ),
    ("7 person in a freeze", Who.PERSON, IN_FREEZE, {}, Answer.REFUSE, at(date(2027, 1, 5), 9)),
    ("8 person after hours", Who.PERSON, MON_18, {}, Answer.REFUSE, at(date(2026, 12, 8), 9)),
    ("8 person on a Saturday", Who.PERSON, SAT_11, {}, Answer.REFUSE, at(date(2026, 12, 14), 9)),
    ("8 person on a holiday", Who.PERSON, WHIT_MONDAY, {}, Answer.REFUSE, at(date(2026, 5, 26), 9)),
    ("9 auto in a freeze", Who.AUTO, IN_FREEZE, GREEN, Answer.WAIT, at(date(2027, 1, 5), 9)),
    ("9 auto after hours", Who.AUTO, MON_18, GREEN, Answer.WAIT, at(date(2026, 12, 8), 9)),
    ("10 person inside the hours", Who.PERSON, MON_10, {}, Answer.GO, None),
    ("11 auto, gate unread", Who.AUTO, MON_10, {"auto_on": True}, Answer.CHECK, None),
    (
        "12 auto, gate not green",
        Who.AUTO,
        MON_10,
        {"auto_on": True, "gate": Gate.NOT_GREEN},
        Answer.WAIT,
        MON_10 + windows.RECHECK,
    ),
    ("13 auto, gate green", Who.AUTO, MON_10, GREEN, Answer.GO, None),
]


@pytest.mark.parametrize(("row", "who", "now", "holds", "answer", "until"), TABLE, ids=[r[0] for r in TABLE])
def test_the_decision_table(
    row: str, who: Who, now: datetime, holds: dict[str, object], answer: Answer, until: datetime | None
) -> None:
    decision = windows.decide(Ask(who=who, now=now, calendar=CAL, **holds))  # type: ignore[arg-type]
    assert decision.answer is answer, decision.why
    if until is not None:
        assert decision.until == until


def test_a_refusal_in_a_freeze_names_it_and_its_end_in_the_rollouts_zone() -> None:
    decision = windows.decide(Ask(Who.PERSON, IN_FREEZE, CAL))
    assert decision.freeze == HOLIDAY_FREEZE
    assert decision.why == "freeze “holiday freeze” until Tue 5 Jan 09:00 CET"


def test_without_hours_any_time_is_allowed_but_freezes_still_hold() -> None:
    open_cal = Calendar(TZ, "DE")
    assert windows.decide(Ask(Who.PERSON, SAT_11, open_cal)).go
    assert windows.decide(Ask(Who.PERSON, WHIT_MONDAY, open_cal)).go
    frozen = replace(open_cal, freezes=(HOLIDAY_FREEZE,))
    decision = windows.decide(Ask(Who.AUTO, IN_FREEZE, frozen, auto_on=True, gate=Gate.GREEN))
    assert (decision.answer, decision.until) == (Answer.WAIT, at(date(2027, 1, 5), 0))


def test_hours_follow_the_wall_clock_across_daylight_saving() -> None:
    cal = Calendar("America/Los_Angeles", "US", windows.parse_hours("mon-fri", "09:00-17:00"))
    # Fri 6 Mar 2026 18:00 PST -> Mon 9 Mar 09:00 PDT (clocks went forward on Sunday 8 Mar)
    friday_evening = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)
    assert windows.next_open(cal, friday_evening) == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)


def test_back_to_back_freezes_and_a_weekend_are_skipped_together() -> None:
    cal = Calendar(
        TZ,
        "DE",
        HOURS,
        (
            Freeze("a", date(2026, 12, 7), date(2026, 12, 9)),
            Freeze("b", date(2026, 12, 10), date(2026, 12, 11)),
        ),
    )
    assert windows.next_open(cal, MON_10) == at(date(2026, 12, 14), 9)


@pytest.mark.parametrize(
    ("days", "span", "problem"),
    [
        ("fri-mon", "09:00-17:00", "runs backwards"),
        ("weekdays", "09:00-17:00", "not days"),
        ("mon-fri", "17:00-09:00", "ends before it starts"),
        ("mon-fri", "9-5", "not hours"),
    ],
)
def test_hours_that_cannot_be_read_say_why(days: str, span: str, problem: str) -> None:
    with pytest.raises(windows.BadWindow, match=problem):
        windows.parse_hours(days, span)


def test_freezes_that_cannot_be_read_say_why() -> None:
    with pytest.raises(windows.BadWindow, match="before it starts"):
        windows.parse_freeze("2027-01-04", "2026-12-21", "x")
    with pytest.raises(windows.BadWindow, match="not dates"):
        windows.parse_freeze("21/12/2026", "2027-01-04", "x")
    with pytest.raises(windows.BadWindow, match="name"):
        windows.parse_freeze("2026-12-21", "2027-01-04", "   ")


def test_hours_round_trip_and_describe_themselves() -> None:
    hours = windows.parse_hours("mon,wed,fri", "10:00-24:00")
    assert windows.Hours.from_dict(hours.to_dict()) == hours
    assert hours.describe() == "Mon, Wed, Fri 10:00–24:00"
    assert HOURS.describe() == "Mon–Fri 09:00–17:00"


@pytest.mark.parametrize(
    ("plan", "where", "mode"),
    [
        ({"phases": [{"steps": [{}, {}]}]}, (0, 1), "auto"),
        ({"advance": "manual", "phases": [{"steps": [{}]}]}, (0, 0), "manual"),
        ({"phases": [{"advance": "manual", "steps": [{}, {"advance": "auto"}]}]}, (0, 0), "manual"),
        ({"phases": [{"advance": "manual", "steps": [{}, {"advance": "auto"}]}]}, (0, 1), "auto"),
    ],
)
def test_a_steps_mode_is_its_own_else_its_phases_else_the_plans(
    plan: dict[str, object], where: tuple[int, int], mode: str
) -> None:
    assert windows.advance_mode(plan, *where) == mode


def test_checkpoints() -> None:
    kw = {"target": "Full Launch", "completes": False, "leaves_phase": False, "phase_stops": False}
    assert windows.checkpoint(mode="auto", **kw) == ""  # type: ignore[arg-type]
    assert "checkpoint" in windows.checkpoint(mode="manual", **kw)  # type: ignore[arg-type]
    assert "completing" in windows.checkpoint(mode="auto", **{**kw, "completes": True})  # type: ignore[arg-type]
    assert windows.checkpoint(mode="auto", **{**kw, "leaves_phase": True}) == ""  # type: ignore[arg-type]
    assert "new phase" in windows.checkpoint(mode="auto", **{**kw, "leaves_phase": True, "phase_stops": True})  # type: ignore[arg-type]


# --- the plan's `advance` setting --------------------------------------------------------------


def test_a_phases_advance_setting_round_trips_through_the_markdown_export() -> None:

    standard = builtin_templates()["standard"]
    assert [p.advance for p in standard.phases][-1] == "manual"  # the seed's Full Launch stays manual
    text = export_plan(standard)
    assert "### Phase 4: Full Launch" in text and "**Advance:** manual" in text
    again = parse_plan(text, name="standard")
    assert again.plan == standard and again.problems == []
    assert plan_problems(replace(standard, advance="sometimes")) == [
        'the plan: advance is "auto" or "manual", not \'sometimes\''
    ]


def test_a_steps_advance_setting_round_trips_on_its_step_line() -> None:
    standard = builtin_templates()["standard"]
    gradual = standard.phases[2]
    steps = (gradual.steps[0], replace(gradual.steps[1], advance="manual"), *gradual.steps[2:])
    plan = replace(
        standard, phases=(*standard.phases[:2], replace(gradual, steps=steps), *standard.phases[3:])
    )
    text = export_plan(plan)
    assert "- 50% — at least 1 business day, manual advance" in text
    again = parse_plan(text, name="standard")
    assert again.plan == plan and again.problems == []
    assert windows.advance_mode({"phases": [{"steps": [{}, {"advance": "manual"}]}]}, 0, 1) == "manual"


def test_an_unknown_advance_setting_in_a_document_is_reported_on_its_line() -> None:

    text = export_plan(builtin_templates()["standard"]).replace("**Advance:** manual", "**Advance:** later")
    result = parse_plan(text, name="standard")
    assert any("advance is “auto” or “manual”, not “later”" in str(p) for p in result.problems)


# --- fully green ------------------------------------------------------------------------------


def _verdict(name: str, verdict: GateVerdict, *, incomputable: bool = False) -> MetricVerdict:
    return MetricVerdict(
        key=name.lower(),
        name=name,
        verdict=verdict,
        value=1.0,
        baseline=1.0,
        change=0.0,
        allowed="",
        reason="",
        unit="",
        incomputable=incomputable,
    )


SOAKED = Soak(required_days=1, elapsed_days=2, earliest=MON_10, met=True)
GREEN_GATE = GateResult(
    passed=True,
    metrics=(_verdict("Error rate", GateVerdict.PASS),),
    triggers=(_verdict("Error spike", GateVerdict.PASS),),
    fired=(),
    unchecked=(),
    soak=SOAKED,
    blockers=(),
)


def test_a_passing_gate_with_nothing_pending_is_fully_green() -> None:
    assert windows.not_green(GREEN_GATE) == []
    assert windows.green_words(GREEN_GATE) == "Error rate passes, no trigger fired, soak met"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"passed": False, "judgement": Score(80.0, JudgementVerdict.MARGINAL, "80; a person decides")},
            "the canary judgement is marginal (80; a person decides)",
        ),
        ({"fired": (_verdict("Error spike", GateVerdict.FAIL),)}, "trigger Error spike fired"),
        (
            {"triggers": (_verdict("Error spike", GateVerdict.NO_DATA, incomputable=True),)},
            "trigger Error spike cannot be computed",
        ),
        ({"unchecked": ("Support briefed",)}, "1 exit criteria not ticked"),
        ({"soak": replace(SOAKED, met=False)}, "the soak is not over"),
    ],
)
def test_anything_short_of_fully_green_holds_the_tick(change: dict[str, object], reason: str) -> None:
    assert reason in windows.not_green(replace(GREEN_GATE, **change))  # type: ignore[arg-type]
