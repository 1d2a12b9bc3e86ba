"""Plan documents: the two hand-written seed forms import into sensible plans, every line is
accounted for, and an exported plan (with or without a run's results) imports back unchanged."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.plans.catalog import builtin_templates
from bot.domain.plans.markdown import ImportResult, parse_plan, parse_plans
from bot.domain.plans.model import Comparison, Direction, Metric, Phase, Plan, Rule, Step, SuccessMetricRow
from bot.domain.plans.results import (
    Decision,
    PhaseResults,
    Reading,
    RolloutResults,
    Snapshot,
    StepReached,
    Tick,
)
from messages.plan_document import export_plan

SEEDS = Path(__file__).parent.parent / "fixtures" / "seeds"
TEMPLATE = (SEEDS / "rollout-plan-template.md").read_text(encoding="utf-8")
BACKEND = (SEEDS / "backend-tables-and-doc-service-rollouts.md").read_text(encoding="utf-8")
FILL_IN = "fill in its Datadog query with `/rollout metrics`"


def steps(phase: Phase) -> list[tuple[float, int | None, float, str]]:
    return [(s.percent, s.desired_users, s.min_business_days, s.label) for s in phase.steps]


def problem_lines(result: ImportResult) -> list[int]:
    return [p.line for p in result.problems]


# --- the house template ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> ImportResult:
    return parse_plan(TEMPLATE, name="feature")


def test_the_template_header_overview_and_strategy(template):
    plan = template.plan
    assert plan.name == "feature"
    assert plan.title == "[Feature Name]"
    assert plan.header == (
        ("Created", "[Date]"),
        ("Status", "Draft"),
        ("Owner", "[PM Name]"),
        ("Team Size", "[Number]"),
        ("Timeline", "[X weeks]"),
        ("Risk Tolerance", "[low / medium / high]"),
    )
    assert plan.owner == ""  # still the template's blank
    assert plan.description == "[Brief description of the feature and why it's being rolled out]"
    assert plan.strategy == "[Conservative / Standard / Aggressive] rollout with [N] phases."


def test_the_template_phases_and_their_steps(template):
    internal, canary, gradual, launch = template.plan.phases
    assert [p.name for p in template.plan.phases] == [
        "Internal Testing",
        "Canary Release",
        "Gradual Rollout",
        "Full Launch",
    ]
    assert steps(internal) == [(0, None, 0, "internal")]
    assert steps(canary) == [(1, None, 0, "")]  # "[1-10]%" is a blank: the low end, reported
    assert steps(gradual) == [(25, None, 0, ""), (50, None, 0, ""), (100, None, 0, "")]
    assert steps(launch) == [(100, None, 0, "launch")]
    assert internal.description == "Deploy to internal team members and dogfood the feature"
    assert internal.duration == "[X days]"
    assert internal.tasks[0] == "Deploy to staging environment"
    assert len(internal.tasks) == 5 and len(internal.exit_criteria) == 4
    assert gradual.tasks[0] == "Increase to 25% → 50% → 100%"
    assert launch.exit_criteria == (
        "Documentation published",
        "Retrospective completed",
        "Success metrics confirmed",
    )


def test_the_template_success_table_metrics_and_triggers(template):
    plan = template.plan
    assert plan.success_table[0] == SuccessMetricRow(
        "Error rate", "[current]", "<0.1% increase", "Monitoring"
    )
    assert [r.metric for r in plan.success_table] == [
        "Error rate",
        "Latency (p95)",
        "User adoption",
        "Support tickets",
    ]
    # Rows read in Datadog (Monitoring, APM) with a threshold become metrics; Support does not.
    # "<0.1% increase" is strict, as written: exactly +0.1 pp fails.
    strict = Comparison.STRICT
    assert plan.metrics == (
        Metric("error_rate", "Error rate", "", Rule.ABSOLUTE, 0.1, Direction.UP, unit="%", comparison=strict),
        Metric(
            "latency_p95", "Latency (p95)", "", Rule.RELATIVE, 10, Direction.UP, unit="ms", comparison=strict
        ),
    )
    assert plan.triggers == (
        Metric("error_rate_spike", "Error rate", "", Rule.ABSOLUTE, 0.5, Direction.UP, unit="%"),
        Metric("latency_p95_spike", "Latency (p95)", "", Rule.RELATIVE, 50, Direction.UP, unit="ms"),
    )
    assert plan.manual_triggers == (
        "Any data corruption detected",
        "Critical security vulnerability discovered",
    )


def test_the_template_problems_by_line(template):
    assert [(p.line, p.text) for p in template.problems] == [
        (39, "> Roll out to [1-10]% of users"),
        (92, "| Error rate | [current] | <0.1% increase | Monitoring |"),
        (93, "| Latency (p95) | [current] | <10% increase | APM |"),
        (100, "- Error rate increases by more than 0.5%"),
        (101, "- P95 latency increases by more than 50%"),
    ]
    canary, *queries = template.problems
    assert "assumed 1%" in canary.reason
    assert all(FILL_IN in p.reason for p in queries)


# --- the back-end questionnaire ----------------------------------------------------------------


@pytest.fixture(scope="module")
def backend() -> list[ImportResult]:
    return parse_plans(BACKEND, name="backend")


def test_the_backend_document_holds_two_plans(backend):
    assert [r.plan.name for r in backend] == ["backend-1", "backend-2"]
    assert [r.plan.title for r in backend] == [
        "Phased rollout of back-end tables",
        "Phased rollout of document service migration",
    ]


def test_the_document_service_plan(backend):
    plan = backend[1].plan
    canary, expansion = plan.phases
    assert canary.name == "Canary"
    assert steps(canary) == [(1, 500, 0, "")]
    assert canary.dates == ""
    assert expansion.name == "25% - 100%"
    assert steps(expansion) == [(25, 3000, 1, ""), (50, 6000, 1, ""), (75, 9000, 1, ""), (100, 12000, 1, "")]
    assert expansion.dates == "3/11/24 - 3/25/24"
    assert expansion.description.startswith("In this phase we will expand the release at increments of 25%")
    assert plan.availability == "feature toggle"
    assert plan.metrics == (
        Metric(
            "records_not_of_type_5103",
            "Records not of type 5103",
            "",
            Rule.ZERO,
            aggregator="sum",
            unit="records",
        ),
        # "No increase in error rates": no *significant* increase, judged by Mann-Whitney; a
        # threshold of 0 would be failed by noise forever.
        Metric(
            "error_rate", "Error rate", "", Rule.ABSOLUTE, 0.0, Direction.UP, unit="%", judge="mann-whitney"
        ),
    )
    # The sentence after the 5103 check is a thing to look at by hand: an exit criterion.
    assert expansion.exit_criteria == (
        "Note any discrepancies in metadata that would indicate the wrong letter typse are getting pulled into DDL",
    )
    assert plan.triggers == () and plan.manual_triggers == ()


def test_the_back_end_tables_plan_has_no_users_for_its_second_phase(backend):
    canary, expansion = backend[0].plan.phases
    assert steps(canary) == [(1, 500, 0, "")]
    assert steps(expansion) == [(25, None, 1, ""), (50, None, 1, ""), (75, None, 1, ""), (100, None, 1, "")]
    assert expansion.dates == ""


def test_the_backend_problems_by_line(backend):
    tables, documents = backend
    assert problem_lines(tables) == [24, 25]
    assert problem_lines(documents) == [50, 51]
    zero, error_rate = documents.problems
    assert "“Records not of type 5103” (must be 0)" in zero.reason and FILL_IN in zero.reason
    assert "“Error rate” (absolute, +0 pp vs baseline)" in error_rate.reason
    assert (
        error_rate.text
        == "- DataDog: No increase in error rates directly caused by addition of this letter type"
    )


def test_parse_plan_of_a_two_plan_document_imports_the_first_and_reports_the_second(backend):
    result = parse_plan(BACKEND, name="backend")
    assert result.plan == replace(backend[0].plan, name="backend")
    assert result.problems[-1].line == 27
    assert "only the first plan" in result.problems[-1].reason


@pytest.mark.parametrize("text", [TEMPLATE, BACKEND], ids=["template", "backend"])
def test_every_non_blank_line_is_understood_or_reported(text):
    results = parse_plans(text, name="seed")
    accounted: set[int] = set()
    for result in results:
        assert all(p.reason != "not understood" for p in result.problems)  # none fell through
        accounted |= result.understood | set(problem_lines(result))
    non_blank = {n for n, line in enumerate(text.splitlines(), 1) if line.strip()}
    assert non_blank <= accounted


def test_lines_the_importer_does_not_know_are_reported_by_number():
    text = (
        "# Rollout Plan: Search v2\n"
        "**Owner:** Ana\n"
        "An aside under the title\n"
        "## Rollout Strategy\n"
        "### Phase 1: Canary\n"
        "> Roll out to 5% of users\n"
        "**Soak:** forever\n"
        "Desired number of users: lots\n"
        "## Risks\n"
        "- The index may lag\n"
    )
    result = parse_plan(text, name="search")
    assert result.plan.owner == "Ana"
    assert steps(result.plan.phases[0]) == [(5, None, 0, "")]
    assert problem_lines(result) == [3, 7, 8, 9, 10]


def test_durations_and_users_from_prose():
    text = (
        "# Rollout Plan: Search v2\n"
        "### Phase 1: Gradual Rollout\n"
        "**Duration:** 2 weeks\n"
        "**Tasks:**\n"
        "- [ ] Increase to 10% -> 50% -> 100%\n"
        "Desired number of users: 100, 500\n"
    )
    result = parse_plan(text, name="search")
    # Two weeks shared by three steps, rounded up to half days; two numbers for three steps.
    assert steps(result.plan.phases[0]) == [(10, 100, 3.5, ""), (50, 500, 3.5, ""), (100, None, 3.5, "")]
    assert problem_lines(result) == [6]


# --- export and round trips ---------------------------------------------------------------------


def imported_seeds() -> list[Plan]:
    return [parse_plan(TEMPLATE, name="template").plan] + [
        r.plan for r in parse_plans(BACKEND, name="backend")
    ]


ALL_PLANS = [*builtin_templates().values(), *imported_seeds()]


@pytest.mark.parametrize("plan", ALL_PLANS, ids=[p.name for p in ALL_PLANS])
def test_an_exported_plan_imports_back_unchanged(plan):
    result = parse_plan(export_plan(plan), name=plan.name)
    assert result.plan == plan
    assert result.problems == []


def test_the_export_has_the_template_form():
    text = export_plan(builtin_templates()["standard"])
    assert text.startswith("# Rollout Plan: Standard rollout\n")
    for part in (
        "## Overview",
        "### Phase 1: Internal Testing\n> Deploy to internal team members and dogfood the feature",
        "**Duration:** 3 business days",
        "**Steps:**\n- 25% — at least 1 business day\n- 50% — at least 1 business day",
        "**Tasks:**\n- [ ] Deploy to staging environment",
        "**Exit Criteria:**\n- [ ] No P0 or P1 bugs remaining",
        "| Error rate | [current] | <0.1% increase | Monitoring |",
        "## Rollback Triggers\n\nImmediately halt and rollback if:\n- Error rate increases by more than 0.5 pp",
        "- Latency (p95) increases by more than 50% of its baseline\n- Any data corruption detected",
        # The error rate is errors ÷ requests in %, one formula over two queries.
        "| rollback trigger | error_rate_spike | Error rate | absolute | 0.5 | % | up | sum | 60 | "
        "`100 * errors / hits; errors = sum:trace.http.request.errors{service:{service},feature_flag:{flag}}"
        ".as_count(); hits = sum:trace.http.request.hits{service:{service},feature_flag:{flag}}.as_count()` |",
    ):
        assert part in text
    assert "#### Results" not in text


def test_the_export_fills_in_the_planning_of_an_imported_questionnaire():
    text = export_plan(parse_plans(BACKEND, name="backend")[1].plan)
    assert "**Availability:** feature toggle" in text
    assert "### Phase 2: 25% - 100%" in text
    assert "**Dates:** 3/11/24 - 3/25/24" in text
    assert "- 100% — 12000 users, at least 1 business day" in text


def test_the_export_is_plain_markdown_not_slack_mrkdwn():
    plan = builtin_templates()["aggressive"]
    phase = plan.phases[0]
    odd = Phase(phase.name, phase.steps, tasks=("Ping <!channel> & check p95 < 200 ms | p99",))
    text = export_plan(Plan(plan.name, "A & B <beta>", (odd,)))
    assert "# Rollout Plan: A & B <beta>" in text
    assert "- [ ] Ping <!channel> & check p95 < 200 ms | p99" in text
    assert parse_plan(text, name=plan.name).plan.phases[0].tasks == odd.tasks


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, tzinfo=UTC)


RESULTS = RolloutResults(
    time_zone="Europe/Berlin",
    phases=(
        PhaseResults(
            started=at(11, 8),
            completed=at(14, 16),
            steps=(StepReached("internal", None, at(11, 8)),),
            checked={"Deploy to staging environment": Tick("ana", at(12, 9, 2))},
            snapshots=(
                Snapshot(
                    at(14, 15),
                    (
                        Reading(
                            "Error rate", 0.42, 0.4, "change vs baseline ≤ +0.1 pp (absolute)", "pass", "%"
                        ),
                        Reading(
                            "Latency (p95)",
                            None,
                            200,
                            "change vs baseline ≤ +10% (relative)",
                            "no data",
                            "ms",
                        ),
                    ),
                ),
            ),
            decisions=(
                Decision(
                    at(14, 16),
                    "ben",
                    "Advanced to Canary Release over the gate",
                    "latency has no data; checked by hand",
                ),
            ),
        ),
        PhaseResults(
            started=at(14, 16),
            steps=(StepReached("1%", 120, at(14, 16)),),
            decisions=(Decision(at(15, 10), "ana", "Paused", "support queue spiking"),),
        ),
    ),
)


def test_an_export_with_results_says_what_happened():
    text = export_plan(builtin_templates()["standard"], results=RESULTS)
    first, second = text.split("#### Results")[1:3]
    assert "Times are in Europe/Berlin." in first
    assert "**Started:** Mon 11 Mar 2024 09:00\n**Completed:** Thu 14 Mar 2024 17:00" in first
    assert "- internal — reached Mon 11 Mar 2024 09:00" in first
    assert "- [x] Deploy to staging environment — @ana, Tue 12 Mar 2024 10:02" in first
    assert "- [ ] Internal team testing with real workflows" in first
    assert "*Thu 14 Mar 2024 16:00*" in first
    assert "| Error rate | 0.42% | 0.4% | change vs baseline ≤ +0.1 pp (absolute) | pass |" in first
    assert "| Latency (p95) | no data | 200 ms | change vs baseline ≤ +10% (relative) | no data |" in first
    assert (
        "- Thu 14 Mar 2024 17:00 — @ben: Advanced to Canary Release over the gate — reason: latency has no data; checked by hand"
        in first
    )
    assert "**Completed:** not yet" in second
    assert "- 1% — 120 users — reached Thu 14 Mar 2024 17:00" in second
    assert "@ana: Paused — reason: support queue spiking" in second
    assert text.count("#### Results") == 2  # phases not reached have none


@pytest.mark.parametrize("plan", [builtin_templates()["standard"], *imported_seeds()], ids=lambda p: p.name)
def test_results_do_not_change_what_is_imported(plan):
    result = parse_plan(export_plan(plan, results=RESULTS), name=plan.name)
    assert result.plan == plan
    assert result.problems == []


def test_an_edited_trigger_sentence_that_disagrees_with_the_metric_gate_is_reported():
    plan = builtin_templates()["standard"]
    text = export_plan(plan).replace(
        "Error rate increases by more than 0.5 pp", "Error rate increases by more than 2 pp"
    )
    result = parse_plan(text, name=plan.name)
    assert result.plan == plan  # the table wins
    (problem,) = result.problems
    assert problem.text == "- Error rate increases by more than 2 pp"
    assert "disagrees with the Metric Gate table" in problem.reason


# --- round trip of any plan -------------------------------------------------------------------

# Text with the characters Markdown and the importer care about: pipes, brackets, %, arrows.
words = (
    st.text(st.sampled_from("abcdefghij KLM-&<>/'():%|*[]x0123.,→_"), min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)
numbers = st.sampled_from([0, 0.5, 1, 2.5, 10, 33.3, 100])
metrics = st.builds(
    Metric,
    key=st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
    name=words,
    query=st.sampled_from(["", "avg:x{service:{service}}", "sum:a.b{flag:{flag}} | top"]),
    rule=st.sampled_from(list(Rule)),
    threshold=numbers,
    bad=st.sampled_from(list(Direction)),
    aggregator=st.sampled_from(["avg", "sum", "max"]),
    window_minutes=st.sampled_from([5, 60]),
    unit=st.sampled_from(["", "%", "ms", "records"]),
)
phases = st.builds(
    Phase,
    name=words,
    steps=st.lists(
        st.builds(
            Step,
            percent=numbers,
            desired_users=st.none() | st.integers(0, 50000),
            min_business_days=numbers,
            label=st.sampled_from(["", "internal", "launch"]),
        ),
        min_size=1,
        max_size=4,
    ).map(tuple),
    description=st.just("") | words,
    duration=st.just("") | words,
    tasks=st.lists(words, max_size=3).map(tuple),
    exit_criteria=st.lists(words, max_size=3).map(tuple),
    dates=st.just("") | words,
)


def test_a_trigger_whose_text_starts_like_a_checkbox_keeps_it() -> None:
    # "- [ ] errors …" reads as a checkbox and the text after it; the export must not let a
    # metric named "[ ]" or a manual trigger "[x] pager fires" lose their first characters.
    boxed = Metric(key="a", name="[ ]", query="", rule=Rule.RELATIVE, threshold=0, bad=Direction.UP)
    phase = Phase(name="Canary", steps=(Step(percent=1),))
    plan = Plan("p", "Boxes", (phase,), "", (), (boxed,), ("[x] pager fires", "[X]"))
    assert parse_plan(export_plan(plan), name="p").plan == plan


@settings(max_examples=150, deadline=None)
@given(
    title=words,
    description=st.just("") | words,
    phase_list=st.lists(phases, min_size=1, max_size=3).map(tuple),
    metric_list=st.lists(metrics, max_size=3).map(tuple),
    trigger_list=st.lists(metrics, max_size=3).map(tuple),
    manual=st.lists(words, max_size=2).map(tuple),
)
def test_any_plan_round_trips(title, description, phase_list, metric_list, trigger_list, manual):
    plan = Plan("p", title, phase_list, description, metric_list, trigger_list, manual)
    assert parse_plan(export_plan(plan), name="p").plan == plan
