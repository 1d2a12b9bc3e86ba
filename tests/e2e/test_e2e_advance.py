"""`/rollout advance` and the controls around it, end to end: signed Slack requests to the
real `rollout-bot serve` (SQLite and Postgres), Datadog answered by the local fake, and the
bot's own database read back. Time is moved by setting `step_started_at` back; exit
criteria are ticked in the database.

Plans used (bot/plans/templates):
- aggressive: 5% (Canary Release) -> 50% -> 100% (Gradual Rollout); one query for the
  success metric "Error rate" (absolute, +0.2 pp) and the trigger "Error rate" (+1 pp).
- standard: internal (Internal Testing) -> 1% -> ...; "Error rate" (absolute, +0.1 pp) and
  "Latency (p95)" (relative, +10%), triggers at +0.5 pp and +50%.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.devtools.local_slack import LocalSlack
from bot.domain.calendar import format_local
from storage.db import Database
from storage.enums import EventKind, SnapshotKind
from tests.driver import SlackDriver
from tests.e2e_rollouts import Scenario, buttons, new_user, section, steps_text, texts
from tests.fakes.datadog_api import FakeDatadog
from tests.support import wait_until

pytestmark = pytest.mark.e2e

ERROR_RULE = "change vs baseline ≤ +0.2 pp (absolute)"
ERROR_TRIGGER_RULE = "change vs baseline ≤ +1 pp (absolute)"


@pytest.fixture
def sc(
    driver: SlackDriver, slack: LocalSlack, datadog: FakeDatadog, bot_db: Database, channel: str
) -> Scenario:
    return Scenario(driver, slack, datadog, bot_db, channel)


def started(sc: Scenario, template: str = "aggressive", **values: float | None) -> Scenario:
    """Starts a rollout whose baseline is `values` (errors=, latency=)."""
    if "errors" in values:
        sc.datadog.set_value(sc.errors_match, values["errors"])
    if "latency" in values:
        sc.datadog.set_value(sc.latency_match, values["latency"])
    sc.start(template)
    return sc


def advanced_text(feature: str, from_step: str = "5%", to_step: str = "50%") -> str:
    return f":arrow_up: {feature} advanced from {from_step} to {to_step}."


def error_line(
    icon: str, value: str, rule: str, *, baseline: str = "1%", trend: str = "", why: str = ""
) -> str:
    line = f"{icon} *Error rate* {value} · baseline {baseline} · rule: {rule}"
    line += f"  `{trend}`" if trend else ""
    return line + (f"\n      _{why}_" if why else "")


def blockers_of(reply: dict) -> list[str]:
    why = section(reply, "*Why not*")
    return [line.removeprefix("• ") for line in why.split("\n")[1:]]


# --- the gate passes ------------------------------------------------------------------


def test_passing_gate_advances_stores_the_gate_and_updates_the_status_message(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.1, series=[1.0, 1.1, 1.2, 1.3])
    sc.ready()

    reply = sc.advance()

    checking = sc.driver.replies()[0]
    assert checking["text"] == f":hourglass_flowing_sand: Checking 2 metrics for *{sc.feature}*…"
    assert reply["text"] == advanced_text(sc.feature)
    assert texts(reply)[0] == f":arrow_up: *{sc.feature}* advanced from 5% to *50%*."
    assert section(reply, "*Success metrics*") == "*Success metrics*\n" + error_line(
        ":white_check_mark:", "1.1%", ERROR_RULE, trend="▁▃▆█"
    )
    assert section(reply, "*Rollback triggers*") == "*Rollback triggers*\n" + error_line(
        ":white_check_mark:", "1.1%", ERROR_TRIGGER_RULE, trend="▁▃▆█"
    )
    assert not [t for t in texts(reply) if t.startswith("*Why not*")]
    assert buttons(reply) == []

    assert sc.where() == ("active", 1, 0)
    (gate,) = sc.snapshots(SnapshotKind.GATE)
    (baseline,) = sc.snapshots(SnapshotKind.BASELINE)
    assert baseline.readings["error_rate"]["value"] == 1.0
    assert (gate.passed, gate.phase_index, gate.step_index) == (True, 0, 0)
    assert gate.readings["error_rate"] == {"value": 1.1, "problem": None, "series": [1.0, 1.1, 1.2, 1.3]}
    (metric,) = gate.verdict["metrics"]
    assert {k: metric[k] for k in ("key", "verdict", "value", "baseline", "unit")} == {
        "key": "error_rate",
        "verdict": "pass",
        "value": 1.1,
        "baseline": 1.0,
        "unit": "%",
    }
    assert metric["change"] == pytest.approx(0.1)
    assert gate.verdict["blockers"] == []
    assert sc.events(EventKind.ADVANCED, EventKind.PHASE_COMPLETED, EventKind.ADVANCE_BLOCKED) == [
        (EventKind.ADVANCED, sc.owner, {"snapshot_id": gate.id, "from_step": "5%", "to_step": "50%"}),
        (EventKind.PHASE_COMPLETED, sc.owner, {"phase": "Canary Release"}),
    ]

    update = sc.wait_status("Now at *50%* of *Gradual Rollout*")
    assert steps_text(sc.status_message()) == steps_text(update)
    assert "~5%~" in steps_text(update)


def test_advance_button_on_the_status_message_works_like_the_command(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.ready()

    response, path = sc.click(sc.status_message(), "advance")

    assert response.status == 200
    checking, answer = sc.posts_to(path, count=2)
    assert checking["text"] == f":hourglass_flowing_sand: Checking 2 metrics for *{sc.feature}*…"
    assert answer["text"] == advanced_text(sc.feature)
    assert answer["replace_original"] is True
    assert sc.where() == ("active", 1, 0)
    assert [e[:2] for e in sc.events(EventKind.ADVANCED)] == [(EventKind.ADVANCED, sc.owner)]
    sc.wait_status("Now at *50%* of *Gradual Rollout*")


# --- the gate is closed ---------------------------------------------------------------


def test_relative_metric_over_threshold_stays_and_names_value_and_baseline(sc: Scenario) -> None:
    started(sc, "standard", errors=0.5, latency=200.0)
    sc.datadog.set_value(sc.latency_match, 230.0, series=[200.0, 210.0, 230.0])
    sc.ready()

    reply = sc.advance()

    why = "+15% vs baseline (200 ms → 230 ms), beyond the allowed +10%"
    blocker = f"Latency (p95) fails: {why}."
    assert (
        sc.driver.replies()[0]["text"] == f":hourglass_flowing_sand: Checking 4 metrics for *{sc.feature}*…"
    )
    assert reply["text"] == f":no_entry: {sc.feature} stays at internal: the gate is closed. {blocker}"
    assert section(reply, "*Success metrics*") == (
        "*Success metrics*\n"
        ":white_check_mark: *Error rate* 0.5% · baseline 0.5% · rule: change vs baseline ≤ +0.1 pp (absolute)\n"
        ":x: *Latency (p95)* 230 ms · baseline 200 ms · rule: change vs baseline ≤ +10% (relative)  `▁▃█`\n"
        f"      _{why}_"
    )
    assert section(reply, "*Rollback triggers*") == (
        "*Rollback triggers*\n"
        ":white_check_mark: *Error rate* 0.5% · baseline 0.5% · rule: change vs baseline ≤ +0.5 pp (absolute)\n"
        ":white_check_mark: *Latency (p95)* 230 ms · baseline 200 ms · rule: change vs baseline ≤ +50% (relative)  `▁▃█`"
    )
    assert blockers_of(reply) == [blocker]
    assert buttons(reply) == [("advance_anyway", f"{sc.rollout_id}:0:0")]

    assert sc.where() == ("active", 0, 0)
    (gate,) = sc.snapshots(SnapshotKind.GATE)
    assert gate.passed is False
    latency = next(m for m in gate.verdict["metrics"] if m["key"] == "latency_p95")
    assert (latency["verdict"], latency["value"], latency["baseline"]) == ("fail", 230.0, 200.0)
    assert latency["change"] == pytest.approx(15.0)
    assert sc.events(EventKind.ADVANCED, EventKind.ADVANCE_BLOCKED) == [
        (EventKind.ADVANCE_BLOCKED, sc.owner, {"snapshot_id": gate.id, "blockers": [blocker]}),
    ]
    assert sc.status_updates() == []  # nothing moved, nothing to redraw


def test_fired_rollback_trigger_blocks_and_is_named_first(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 2.5)
    sc.ready()

    reply = sc.advance()

    change = "+1.5 pp vs baseline (1% → 2.5%)"
    assert section(reply, "*Rollback triggers*") == "*Rollback triggers*\n" + error_line(
        ":rotating_light:", "2.5%", ERROR_TRIGGER_RULE, why=f"{change}, beyond the allowed +1 pp"
    )
    assert section(reply, "*Success metrics*") == "*Success metrics*\n" + error_line(
        ":x:", "2.5%", ERROR_RULE, why=f"{change}, beyond the allowed +0.2 pp"
    )
    expected = [
        f"Rollback trigger Error rate fired: {change}, beyond the allowed +1 pp "
        "(fires when error rate rises more than 1 pp (absolute)).",
        f"Error rate fails: {change}, beyond the allowed +0.2 pp.",
    ]
    assert blockers_of(reply) == expected
    assert sc.where() == ("active", 0, 0)
    (gate,) = sc.snapshots(SnapshotKind.GATE)
    assert gate.verdict["triggers"][0]["verdict"] == "fail"
    assert [e[2]["blockers"] for e in sc.events(EventKind.ADVANCE_BLOCKED)] == [expected]
    assert sc.events(EventKind.ADVANCED) == []


def test_unmet_soak_and_unticked_exit_criteria_are_listed(sc: Scenario) -> None:
    started(sc, errors=1.0)

    reply = sc.advance()

    assert section(reply, "*Exit criteria not ticked*") == (
        "*Exit criteria not ticked*\n"
        ":white_large_square: Error rate within acceptable threshold\n"
        ":white_large_square: No significant latency regression"
    )
    *exits, soak = blockers_of(reply)
    assert exits == [
        "Exit criterion not checked: Error rate within acceptable threshold.",
        "Exit criterion not checked: No significant latency regression.",
    ]
    assert soak.startswith("5% has run ") and " of the required 0.5 business days, " in soak
    assert " left; earliest advance " in soak
    assert soak.endswith(" America/Los_Angeles.")
    assert sc.where() == ("active", 0, 0)


def test_unmet_soak_states_the_time_left_in_business_days(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.tick_exit_criteria()

    reply = sc.advance()

    (soak,) = blockers_of(reply)
    assert re.search(r"\b\d+(\.\d+)? business days? left\b", soak), soak


NO_DATA: dict[str, tuple[Callable[[FakeDatadog, str], None], str]] = {
    "empty-values": (lambda dd, match: dd.set_value(match, None), "no data points in the last 1 h"),
    "403": (
        lambda dd, match: dd.fail(match, 403),
        "Datadog answered 403 Forbidden: check DD_API_KEY/DD_APP_KEY",
    ),
    "500": (lambda dd, match: dd.fail(match, 500), "Datadog error 500"),
}


@pytest.mark.parametrize("case", list(NO_DATA))
def test_missing_data_blocks_with_the_reason(sc: Scenario, case: str) -> None:
    started(sc, errors=1.0)
    provoke, problem = NO_DATA[case]
    provoke(sc.datadog, sc.errors_match)
    sc.ready()
    asked_before = len(sc.datadog_requests())

    reply = sc.advance()

    assert len(sc.datadog_requests()) - asked_before == 1  # one request, no retries
    assert section(reply, "*Success metrics*") == "*Success metrics*\n" + error_line(
        ":grey_question:", "—", ERROR_RULE, why=problem
    )
    assert section(reply, "*Rollback triggers*") == "*Rollback triggers*\n" + error_line(
        ":grey_question:", "—", ERROR_TRIGGER_RULE, why=problem
    )
    expected = [f"Error rate has no data: {problem}.", f"Rollback trigger Error rate has no data: {problem}."]
    assert blockers_of(reply) == expected
    assert reply["text"] == f":no_entry: {sc.feature} stays at 5%: the gate is closed. " + " ".join(expected)
    assert sc.where() == ("active", 0, 0)
    (gate,) = sc.snapshots(SnapshotKind.GATE)
    assert gate.passed is False
    assert gate.readings["error_rate"] == {"value": None, "problem": problem, "series": []}
    assert [e[2]["blockers"] for e in sc.events(EventKind.ADVANCE_BLOCKED)] == [expected]
    assert sc.events(EventKind.ADVANCED) == []


def test_one_metric_without_data_blocks_while_the_other_passes(sc: Scenario) -> None:
    started(sc, "standard", errors=0.5, latency=200.0)
    sc.datadog.fail(sc.latency_match, 500)
    sc.ready()

    reply = sc.advance()

    assert section(reply, "*Success metrics*") == (
        "*Success metrics*\n"
        ":white_check_mark: *Error rate* 0.5% · baseline 0.5% · rule: change vs baseline ≤ +0.1 pp (absolute)\n"
        ":grey_question: *Latency (p95)* — · baseline 200 ms · rule: change vs baseline ≤ +10% (relative)\n"
        "      _Datadog error 500_"
    )
    assert blockers_of(reply) == [
        "Latency (p95) has no data: Datadog error 500.",
        "Rollback trigger Latency (p95) has no data: Datadog error 500.",
    ]
    assert sc.where() == ("active", 0, 0)
    assert sc.events(EventKind.ADVANCED) == []


def test_missing_baseline_blocks_until_it_is_measured_again(sc: Scenario) -> None:
    sc.datadog.fail(sc.errors_match, 500, times=1, endpoint="scalar")  # the start's baseline
    started(sc, errors=1.0)
    sc.ready()
    (baseline,) = sc.snapshots(SnapshotKind.BASELINE)
    assert baseline.readings["error_rate"]["problem"] == "Datadog error 500"

    blocked = sc.advance()

    why = (
        "no baseline captured: it could not be measured at start (Datadog error 500); "
        "`/rollout baseline` measures it again"
    )
    assert section(blocked, "*Success metrics*") == (
        f"*Success metrics*\n:grey_question: *Error rate* 1% · rule: {ERROR_RULE}\n      _{why}_"
    )
    assert blockers_of(blocked) == [
        f"Error rate has no data: {why}.",
        f"Rollback trigger Error rate has no data: {why}.",
    ]
    assert sc.where() == ("active", 0, 0)

    measured = sc.command(f"baseline {sc.feature}", count=2)

    assert measured["text"] == f":straight_ruler: New baseline stored for *{sc.feature}*."
    assert [s.readings["error_rate"]["value"] for s in sc.snapshots(SnapshotKind.BASELINE)] == [None, 1.0]
    assert sc.advance()["text"] == advanced_text(sc.feature)


def test_rate_limit_with_a_short_reset_is_retried_once_then_passes(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.05)
    sc.datadog.fail(sc.errors_match, 429, times=1, headers={"x-ratelimit-reset": "1"}, endpoint="scalar")
    sc.ready()
    asked_before = len(sc.datadog_requests())

    reply = sc.advance()

    limited, retry = sc.datadog_requests()[asked_before:]
    assert 0.9 <= retry.time - limited.time < 2.0
    assert reply["text"] == advanced_text(sc.feature)
    assert section(reply, "*Success metrics*") == "*Success metrics*\n" + error_line(
        ":white_check_mark:", "1.05%", ERROR_RULE
    )
    assert sc.where() == ("active", 1, 0)
    assert len(sc.events(EventKind.ADVANCED)) == 1


def test_rate_limit_with_a_long_reset_is_no_data_without_waiting(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.fail(sc.errors_match, 429, headers={"x-ratelimit-reset": "60"})
    sc.ready()
    asked_before = len(sc.datadog_requests())

    began = time.monotonic()
    reply = sc.advance()
    took = time.monotonic() - began

    problem = "Datadog rate limit: retry in 60 s"
    assert took < 3.0, f"the answer took {took:.1f} s: it waited for the rate limit"
    assert len(sc.datadog_requests()) - asked_before == 1
    assert blockers_of(reply) == [
        f"Error rate has no data: {problem}.",
        f"Rollback trigger Error rate has no data: {problem}.",
    ]
    assert sc.where() == ("active", 0, 0)
    assert sc.events(EventKind.ADVANCED) == []


@pytest.mark.parametrize("bot_server", ["sqlite"], indirect=True)
def test_query_slower_than_the_per_query_timeout_is_no_data(sc: Scenario) -> None:
    """Once, on SQLite only: it costs the client's 5 s per-query timeout."""
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.0, delay=6.0)
    sc.ready()

    began = time.monotonic()
    reply = sc.advance(timeout=20)
    took = time.monotonic() - began

    problem = "timed out after 5 s"
    assert 4.5 <= took < 8.5
    assert section(reply, "*Success metrics*") == "*Success metrics*\n" + error_line(
        ":grey_question:", "—", ERROR_RULE, why=problem
    )
    assert blockers_of(reply) == [
        f"Error rate has no data: {problem}.",
        f"Rollback trigger Error rate has no data: {problem}.",
    ]
    assert sc.where() == ("active", 0, 0)
    assert sc.events(EventKind.ADVANCED) == []


# --- two at once ----------------------------------------------------------------------


def test_two_advances_at_the_same_instant_move_once(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.1, delay=0.5)  # both snapshots overlap
    sc.ready()
    base_url = sc.driver.url.removesuffix("/slack/events")
    drivers = [
        SlackDriver(
            base_url, sc.driver.signing_secret, sc.slack, team_id=sc.driver.team_id, channel_id=sc.channel
        )
        for _ in range(2)
    ]
    asked_before = len(sc.datadog_requests())
    barrier = threading.Barrier(2)

    def advance(driver: SlackDriver) -> int:
        barrier.wait()
        return driver.command(f"advance {sc.feature}").status

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(advance, drivers)) == [200, 200]
    answers = sorted(d.wait_reply(timeout=15, count=2)["text"] for d in drivers)

    first, second = sc.datadog_requests()[asked_before:]
    assert abs(first.time - second.time) < 0.4, "the two snapshots did not overlap"
    (moved,) = [at for kind, at in sc.event_times() if kind is EventKind.ADVANCED]
    moved_at = format_local(moved, "America/Los_Angeles")
    assert answers == sorted(
        [
            advanced_text(sc.feature),
            f":no_entry_sign: *{sc.feature}* already moved to 50% of Gradual Rollout "
            f"(by <@{sc.owner}>, at {moved_at}); nothing else changed.",
        ]
    )
    assert sc.where() == ("active", 1, 0)
    assert len(sc.events(EventKind.ADVANCED)) == 1
    assert len(sc.events(EventKind.PHASE_COMPLETED)) == 1


# --- who may steer --------------------------------------------------------------------


def test_non_owner_is_refused_until_made_an_approver(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.ready()
    other = new_user()
    asked_before = len(sc.datadog_requests())

    refusal = sc.refused_advance(user=other)

    assert refusal["text"] == (
        f":no_entry_sign: Only the owner (<@{sc.owner}>), approvers and workspace admins can advance "
        f"*{sc.feature}*. Request access and I ask <@{sc.owner}> for you; anyone may pause it."
    )
    assert refusal["response_type"] == "ephemeral"
    assert len(sc.datadog_requests()) == asked_before  # refused before asking Datadog
    assert sc.events(EventKind.REFUSED) == [(EventKind.REFUSED, other, {"action": "advance"})]
    assert sc.where() == ("active", 0, 0)

    resume = sc.command(f"resume {sc.feature}", user=other)
    assert (
        resume["text"].startswith(":no_entry_sign: Only the owner")
        and f"can resume *{sc.feature}*" in resume["text"]
    )
    assert sc.events(EventKind.REFUSED)[-1] == (EventKind.REFUSED, other, {"action": "resume"})
    assert sc.where() == ("active", 0, 0)

    added = sc.command(f"approvers {sc.feature} add <@{other}|other>")
    assert added["text"] == f":white_check_mark: <@{other}> is now an approver of *{sc.feature}*."
    assert sc.events(EventKind.APPROVER_ADDED) == [
        (EventKind.APPROVER_ADDED, sc.owner, {"step": "5%", "user": other})
    ]

    reply = sc.advance(user=other)

    assert reply["text"] == advanced_text(sc.feature)
    assert [e[:2] for e in sc.events(EventKind.ADVANCED)] == [(EventKind.ADVANCED, other)]
    assert len(sc.events(EventKind.REFUSED)) == 2


def test_workspace_admin_may_advance(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.ready()
    admin = new_user()
    sc.slack.set_admin(admin)

    reply = sc.advance(user=admin)

    assert reply["text"] == advanced_text(sc.feature)
    assert [e[:2] for e in sc.events(EventKind.ADVANCED)] == [(EventKind.ADVANCED, admin)]
    # Whether someone is an admin is asked of Slack once per advance, not once per check.
    assert len([c for c in sc.slack.calls("users.info") if c.params.get("user") == admin]) == 1
    assert sc.events(EventKind.REFUSED) == []


def test_anyone_may_take_a_snapshot_and_nothing_moves(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.1)
    sc.ready()
    other = new_user()

    reply = sc.command(f"snapshot {sc.feature}", user=other, count=2)

    assert reply["text"] == f":bar_chart: {sc.feature} at 5%: the gate would pass now."
    assert section(reply, "*Success metrics*") == "*Success metrics*\n" + error_line(
        ":white_check_mark:", "1.1%", ERROR_RULE
    )
    assert buttons(reply) == []
    (check,) = sc.snapshots(SnapshotKind.CHECK)
    assert sc.events(EventKind.SNAPSHOT, EventKind.REFUSED, EventKind.ADVANCED) == [
        (EventKind.SNAPSHOT, other, {"snapshot_id": check.id, "passed": True}),
    ]
    assert sc.snapshots(SnapshotKind.GATE) == []
    assert sc.where() == ("active", 0, 0)


# --- advance anyway -------------------------------------------------------------------


def test_advance_anyway_opens_a_modal_and_records_the_reason(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.5)
    sc.ready()
    blocked = sc.advance()
    blocker = "Error rate fails: +0.5 pp vs baseline (1% → 1.5%), beyond the allowed +0.2 pp."
    assert blockers_of(blocked) == [blocker]

    response, _ = sc.click({**blocked, "ts": "1700000000.000001"}, "advance_anyway")
    assert response.status == 200
    view = sc.opened_view("advance_override")
    assert view["title"]["text"] == "Advance anyway"

    reason = "canary cohort is internal staff; error spike is a known test account"
    submitted = sc.driver.submit_view(view, {"reason": reason})

    assert submitted.status == 200
    (answer,) = sc.ephemerals(sc.owner)
    assert answer["text"] == f":warning: Advanced anyway from 5% to *50%*. Reason: {reason}"
    assert sc.where() == ("active", 1, 0)
    assert sc.events(EventKind.OVERRIDDEN) == [
        (
            EventKind.OVERRIDDEN,
            sc.owner,
            {"reason": reason, "blockers": [blocker], "from_step": "5%", "to_step": "50%"},
        ),
    ]
    assert sc.events(EventKind.ADVANCED) == []
    sc.wait_status("Now at *50%* of *Gradual Rollout*")


# --- pause, resume, roll back, complete -----------------------------------------------


def test_pause_blocks_advance_and_resume_reopens_it(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.ready()

    paused = sc.command(f"pause {sc.feature} support queue spiking")

    assert paused["text"] == f":white_check_mark: *{sc.feature}* paused. Reason: support queue spiking"
    assert sc.events(EventKind.PAUSED) == [
        (EventKind.PAUSED, sc.owner, {"step": "5%", "reason": "support queue spiking"}),
    ]
    status = sc.wait_status("Paused at *5%*")
    assert steps_text(status).startswith(
        f":double_vertical_bar: Paused at *5%* of *Canary Release* by <@{sc.owner}>, "
    )
    assert ("advance", str(sc.rollout_id)) not in buttons(status)
    asked_before = len(sc.datadog_requests())

    refused = sc.refused_advance()

    assert (
        refused["text"] == f":no_entry_sign: {sc.feature} is paused: `/rollout resume` it before you advance"
    )
    assert len(sc.datadog_requests()) == asked_before
    assert sc.snapshots(SnapshotKind.GATE) == []
    assert sc.where() == ("paused", 0, 0)

    resumed = sc.command(f"resume {sc.feature}")

    assert resumed["text"] == f":white_check_mark: *{sc.feature}* resumed."
    assert sc.events(EventKind.RESUMED) == [(EventKind.RESUMED, sc.owner, {"step": "5%"})]
    assert sc.advance()["text"] == advanced_text(sc.feature)
    assert sc.where() == ("active", 1, 0)


def test_roll_back_button_opens_a_confirm_modal(sc: Scenario) -> None:
    started(sc, errors=1.0)

    response, _ = sc.click(sc.status_message(), "rollback")

    assert response.status == 200
    view = sc.opened_view("rollback_confirm")
    assert sc.where() == ("active", 0, 0)  # nothing happens before the confirm
    submitted = sc.driver.submit_view(view, {"reason": "error rate doubled"})

    assert submitted.status == 200
    (answer,) = sc.ephemerals(sc.owner)
    assert answer["text"] == (
        f":rewind: Rolled back *{sc.feature}* from 5%. The status thread is told. Reason: error rate doubled"
    )
    assert sc.where() == ("rolled_back", 0, 0)
    assert sc.rollout().finished_at is not None
    assert sc.events(EventKind.ROLLED_BACK) == [
        (EventKind.ROLLED_BACK, sc.owner, {"step": "5%", "reason": "error rate doubled"}),
    ]
    status = wait_until(
        lambda: next((u for u in sc.status_updates() if ":rewind: Rolled back" in steps_text(u)), None)
    )
    assert buttons(status) == []

    after = sc.refused_advance()
    assert after["text"] == f":no_entry_sign: {sc.feature} is rolled back; there is nothing to advance"


def test_roll_back_button_refuses_a_non_owner_without_a_modal(sc: Scenario) -> None:
    started(sc, errors=1.0)
    other = new_user()
    opened_before = len(sc.slack.calls("views.open"))

    response, path = sc.click(sc.status_message(), "rollback", user=other)

    assert response.status == 200
    (refusal,) = sc.posts_to(path)
    assert refusal["text"] == (
        f":no_entry_sign: Only the owner (<@{sc.owner}>), approvers and workspace admins can roll back "
        f"*{sc.feature}*. Request access and I ask <@{sc.owner}> for you; anyone may pause it."
    )
    assert refusal["response_type"] == "ephemeral"
    assert sc.events(EventKind.REFUSED) == [(EventKind.REFUSED, other, {"action": "roll back"})]
    assert len(sc.slack.calls("views.open")) == opened_before
    assert sc.where() == ("active", 0, 0)


def test_complete_is_refused_below_100_and_allowed_at_100(sc: Scenario) -> None:
    started(sc, errors=1.0)

    early = sc.command(f"complete {sc.feature}")

    assert (
        early["text"] == f":no_entry_sign: {sc.feature} is at 5%; advance it to 100% first, or roll it back"
    )
    assert sc.events(EventKind.COMPLETED) == []

    sc.ready()
    assert sc.advance()["text"] == advanced_text(sc.feature)
    # 50% -> 100% stays inside Gradual Rollout: its unticked exit criterion does not block.
    not_yet = sc.advance()
    assert "*Exit criteria not ticked*" not in "".join(texts(not_yet))
    (soak,) = blockers_of(not_yet)
    assert soak.startswith("50% has run ")
    sc.soak()
    assert sc.advance()["text"] == advanced_text(sc.feature, "50%", "100%")
    assert sc.where() == ("active", 1, 1)

    done = sc.command(f"complete {sc.feature}")

    assert done["text"] == f":white_check_mark: *{sc.feature}* completed."
    assert sc.where() == ("completed", 1, 1)
    assert sc.events(EventKind.COMPLETED) == [(EventKind.COMPLETED, sc.owner, {"step": "100%"})]
    wait_until(
        lambda: next(
            (u for u in sc.status_updates() if ":white_check_mark: Completed" in steps_text(u)), None
        )
    )


def test_advance_anyway_with_a_blank_reason_is_refused_and_moves_nothing(sc: Scenario) -> None:
    """Bolt runs a view's lazy listener even after an ack with errors: the lazy must not move."""
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.5)
    sc.ready()
    sc.advance()
    sc.click({**sc.driver.replies()[-1], "ts": "1700000000.000001"}, "advance_anyway")
    view = sc.opened_view("advance_override")

    blank = sc.driver.submit_view(view, {"reason": "   "})

    assert blank.json() == {
        "response_action": "errors",
        "errors": {"reason": "Say why, for the timeline and the announcement."},
    }
    with contextlib.suppress(AssertionError):  # give a wrongly started lazy listener time to act
        wait_until(lambda: sc.events(EventKind.OVERRIDDEN), timeout=2.0)
    assert sc.events(EventKind.OVERRIDDEN) == []
    assert sc.where() == ("active", 0, 0)


def test_advance_is_reported_even_when_the_status_message_cannot_be_updated(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.ready()
    sc.slack.fail_next("chat.update", error="message_not_found")

    reply = sc.advance()

    assert sc.where() == ("active", 1, 0)
    assert len(sc.events(EventKind.ADVANCED)) == 1
    assert reply["text"] == advanced_text(sc.feature)
    assert texts(reply)[-1] == (
        "_The status message could not be updated (message_not_found); it catches up at the next change._"
    )
