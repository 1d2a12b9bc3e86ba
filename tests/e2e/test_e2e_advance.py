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
from tests.e2e_rollouts import Scenario, buttons, new_user, steps_text, texts
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e


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
    return f":arrow_up: *{feature}* advanced from {from_step} to *{to_step}*: the gate passed."


DATADOG_LINK = re.compile(r"<https://app\.datadoghq\.com/metric/explorer\?[^|>]*\|Open in Datadog>")


def metric_rows(reply: dict) -> str:
    """The report's metrics, each once, its "Open in Datadog" link shown as [Datadog]."""
    [found] = [t for t in texts(reply) if re.match(r"\*\d+ metrics?\*", t)]
    return DATADOG_LINK.sub("[Datadog]", found)


def error_row(label: str, numbers: str, *, trigger: str = "+1.00", trend: str = "") -> str:
    """The error rate's row: a success metric and a rollback trigger in one."""
    extras = "  ".join(x for x in (f"`{trend}` rising" if trend else "", "[Datadog]") if x)
    return (
        f"{label} · *Error rate* _(success metric and rollback trigger)_: {numbers}; trigger at {trigger}"
        f"\n      {extras}"
    )


def blockers_of(reply: dict) -> list[str]:
    """The one list of what blocks the gate, under the verdict."""
    found = [t for t in texts(reply) if t.startswith("• ")]
    return [line.removeprefix("• ") for line in found[0].split("\n")] if found else []


# --- the gate passes ------------------------------------------------------------------


def test_passing_gate_advances_stores_the_gate_and_updates_the_status_message(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.1, series=[1.0, 1.1, 1.2, 1.3])
    sc.ready()

    reply = sc.advance()

    checking = sc.driver.replies()[0]
    assert body(checking) == f":hourglass_flowing_sand: Checking 1 metric for *{sc.feature}*…"
    assert body(reply) == advanced_text(sc.feature)
    assert metric_rows(reply) == "*1 metric*\n" + error_row(
        ":white_check_mark: Passed", "1.00% → 1.10% (+0.10 points; limit +0.20)", trend="▁▃▆█"
    )
    assert blockers_of(reply) == []
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

    update = sc.wait_status("Now: *Gradual Rollout*, step *50%*")
    assert steps_text(sc.status_message()) == steps_text(update)
    assert ":heavy_check_mark: _done_ *Canary Release*: 5%\n" in steps_text(update)


def test_advance_button_on_the_status_message_works_like_the_command(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.ready()

    response, path = sc.click(sc.status_message(), "advance")

    assert response.status == 200
    checking, answer = sc.posts_to(path, count=2)
    assert body(checking) == f":hourglass_flowing_sand: Checking 1 metric for *{sc.feature}*…"
    assert body(answer) == advanced_text(sc.feature)
    assert answer["replace_original"] is True
    assert sc.where() == ("active", 1, 0)
    assert [e[:2] for e in sc.events(EventKind.ADVANCED)] == [(EventKind.ADVANCED, sc.owner)]
    sc.wait_status("Now: *Gradual Rollout*, step *50%*")


# --- the gate is closed ---------------------------------------------------------------


def test_relative_metric_over_threshold_stays_and_names_value_and_baseline(sc: Scenario) -> None:
    started(sc, "standard", errors=0.5, latency=200.0)
    sc.datadog.set_value(sc.latency_match, 230.0, series=[200.0, 210.0, 230.0])
    sc.ready()

    reply = sc.advance()

    why = "+15% vs baseline (200 ms → 230 ms), beyond the allowed +10%"
    blocker = f"Latency (p95) fails: {why}."
    assert body(sc.driver.replies()[0]) == f":hourglass_flowing_sand: Checking 2 metrics for *{sc.feature}*…"
    assert body(reply) == f":no_entry: *{sc.feature}* cannot advance from internal: 1 thing blocks it."
    assert reply["text"] == f"{sc.feature} cannot advance from internal: 1 thing blocks it."
    assert metric_rows(reply) == (
        "*2 metrics*\n"
        ":white_check_mark: Passed · *Error rate* _(success metric and rollback trigger)_: "
        "0.50% → 0.50% (+0.00 points; limit +0.10); trigger at +0.50\n      [Datadog]\n"
        ":x: Failed · *Latency (p95)* _(success metric and rollback trigger)_: "
        "200 ms → 230 ms (+15.0%; limit +10.0%); trigger at +50.0%\n      `▁▃█` rising  [Datadog]"
    )
    assert blockers_of(reply) == ["*Latency (p95)* 200 ms → 230 ms (+15.0%; limit +10.0%)"]
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
    assert metric_rows(reply) == "*1 metric*\n" + error_row(
        ":rotating_light: Fired", "1.00% → 2.50% (+1.50 points; limit +0.20)"
    )
    # The trigger fired and the success metric fails: one line, the graver, with the trigger's limit.
    assert blockers_of(reply) == [
        "*Error rate* 1.00% → 2.50% (+1.50 points; limit +1.00) — rollback trigger fired"
    ]
    expected = [
        f"Rollback trigger Error rate fired: {change}, beyond the allowed +1 pp "
        "(fires when error rate rises more than 1 pp (absolute)).",
        f"Error rate fails: {change}, beyond the allowed +0.2 pp.",
    ]
    assert sc.where() == ("active", 0, 0)
    (gate,) = sc.snapshots(SnapshotKind.GATE)
    assert gate.verdict["triggers"][0]["verdict"] == "fail"
    assert [e[2]["blockers"] for e in sc.events(EventKind.ADVANCE_BLOCKED)] == [expected]
    assert sc.events(EventKind.ADVANCED) == []


def test_unmet_soak_and_unticked_exit_criteria_are_listed(sc: Scenario) -> None:
    started(sc, errors=1.0)

    reply = sc.advance()

    *exits, soak = blockers_of(reply)
    assert exits == [
        "Exit criterion not checked: Error rate within acceptable threshold",
        "Exit criterion not checked: No significant latency regression",
    ]
    # The soak in the reader's own time: a Slack date token, the rollout's zone as its fallback.
    assert re.fullmatch(
        r"Soak: \d+(\.\d)? h of 0\.5 business days at 5%; ready "
        r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|\w{3} \d{1,2} \w{3} \d\d:\d\d P[SD]T>",
        soak,
    ), soak
    assert sc.where() == ("active", 0, 0)


def test_unmet_soak_states_the_time_left_in_business_days(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.tick_exit_criteria()

    reply = sc.advance()

    (soak,) = blockers_of(reply)
    assert re.search(r"^Soak: \d+(\.\d)? h of 0\.5 business days at 5%; ready <!date", soak), soak


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
    assert metric_rows(reply) == "*1 metric*\n" + error_row(":grey_question: No data", problem)
    expected = [f"Error rate has no data: {problem}.", f"Rollback trigger Error rate has no data: {problem}."]
    assert blockers_of(reply) == [f"*Error rate* has no data: {problem}"]  # the metric once
    assert body(reply) == f":no_entry: *{sc.feature}* cannot advance from 5%: 1 thing blocks it."
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

    assert metric_rows(reply).splitlines()[3] == (
        ":grey_question: No data · *Latency (p95)* _(success metric and rollback trigger)_: "
        "Datadog error 500; trigger at +50.0%"
    )
    assert blockers_of(reply) == ["*Latency (p95)* has no data: Datadog error 500"]
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
    assert metric_rows(blocked) == "*1 metric*\n" + error_row(
        ":grey_question: No data", "1.00% (no baseline; limit +0.20)"
    )
    assert blockers_of(blocked) == [f"*Error rate* has no data: {why}"]
    assert sc.where() == ("active", 0, 0)

    measured = sc.command(f"baseline {sc.feature}", count=2)

    assert body(measured) == f":straight_ruler: New baseline stored for *{sc.feature}*."
    assert [s.readings["error_rate"]["value"] for s in sc.snapshots(SnapshotKind.BASELINE)] == [None, 1.0]
    assert body(sc.advance()) == advanced_text(sc.feature)


def test_rate_limit_with_a_short_reset_is_retried_once_then_passes(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.datadog.set_value(sc.errors_match, 1.05)
    sc.datadog.fail(sc.errors_match, 429, times=1, headers={"x-ratelimit-reset": "1"}, endpoint="scalar")
    sc.ready()
    asked_before = len(sc.datadog_requests())

    reply = sc.advance()

    limited, retry = sc.datadog_requests()[asked_before:]
    assert 0.9 <= retry.time - limited.time < 2.0
    assert body(reply) == advanced_text(sc.feature)
    assert metric_rows(reply) == "*1 metric*\n" + error_row(
        ":white_check_mark: Passed", "1.00% → 1.05% (+0.05 points; limit +0.20)"
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
    assert blockers_of(reply) == [f"*Error rate* has no data: {problem}"]
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
    assert metric_rows(reply) == "*1 metric*\n" + error_row(":grey_question: No data", problem)
    assert blockers_of(reply) == [f"*Error rate* has no data: {problem}"]
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
    answers = sorted(body(d.wait_reply(timeout=15, count=2)) for d in drivers)

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

    assert body(refusal) == (
        f":no_entry_sign: Only the owner (<@{sc.owner}>), approvers and workspace admins can advance "
        f"*{sc.feature}*. Request access and I ask <@{sc.owner}> for you; anyone may pause it."
    )
    assert refusal["response_type"] == "ephemeral"
    assert len(sc.datadog_requests()) == asked_before  # refused before asking Datadog
    assert sc.events(EventKind.REFUSED) == [(EventKind.REFUSED, other, {"action": "advance"})]
    assert sc.where() == ("active", 0, 0)

    resume = sc.command(f"resume {sc.feature}", user=other)
    assert body(resume).startswith(":no_entry_sign: Only the owner") and f"can resume *{sc.feature}*" in body(
        resume
    )
    assert sc.events(EventKind.REFUSED)[-1] == (EventKind.REFUSED, other, {"action": "resume"})
    assert sc.where() == ("active", 0, 0)

    added = sc.command(f"approvers {sc.feature} add <@{other}|other>")
    assert body(added) == f":key: <@{other}> is now an approver of *{sc.feature}*."
    assert sc.events(EventKind.APPROVER_ADDED) == [
        (EventKind.APPROVER_ADDED, sc.owner, {"step": "5%", "user": other})
    ]

    reply = sc.advance(user=other)

    assert body(reply) == advanced_text(sc.feature)
    assert [e[:2] for e in sc.events(EventKind.ADVANCED)] == [(EventKind.ADVANCED, other)]
    assert len(sc.events(EventKind.REFUSED)) == 2


def test_workspace_admin_may_advance(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.ready()
    admin = new_user()
    sc.slack.set_admin(admin)

    reply = sc.advance(user=admin)

    assert body(reply) == advanced_text(sc.feature)
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

    assert body(reply) == f":bar_chart: *{sc.feature}* at 5%: the gate would pass now."
    assert metric_rows(reply) == "*1 metric*\n" + error_row(
        ":white_check_mark: Passed", "1.00% → 1.10% (+0.10 points; limit +0.20)"
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
    assert blockers_of(blocked) == ["*Error rate* 1.00% → 1.50% (+0.50 points; limit +0.20)"]

    response, _ = sc.click({**blocked, "ts": "1700000000.000001"}, "advance_anyway")
    assert response.status == 200
    view = sc.opened_view("advance_override")
    assert view["title"]["text"] == "Advance anyway"

    reason = "canary cohort is internal staff; error spike is a known test account"
    submitted = sc.driver.submit_view(view, {"reason": reason})

    assert submitted.status == 200
    (answer,) = sc.ephemerals(sc.owner)
    assert body(answer) == f":warning: Advanced anyway from 5% to *50%*. Reason: {reason}"
    assert sc.where() == ("active", 1, 0)
    assert sc.events(EventKind.OVERRIDDEN) == [
        (
            EventKind.OVERRIDDEN,
            sc.owner,
            {"reason": reason, "blockers": [blocker], "from_step": "5%", "to_step": "50%"},
        ),
    ]
    assert sc.events(EventKind.ADVANCED) == []
    sc.wait_status("Now: *Gradual Rollout*, step *50%*")


# --- pause, resume, roll back, complete -----------------------------------------------


def test_pause_blocks_advance_and_resume_reopens_it(sc: Scenario) -> None:
    started(sc, errors=1.0)
    sc.ready()

    paused = sc.command(f"pause {sc.feature} support queue spiking")

    assert body(paused) == f":double_vertical_bar: *{sc.feature}* paused. Reason: support queue spiking"
    assert sc.events(EventKind.PAUSED) == [
        (EventKind.PAUSED, sc.owner, {"step": "5%", "reason": "support queue spiking"}),
    ]
    status = sc.wait_status("Paused by")
    assert steps_text(status).startswith(
        f":double_vertical_bar: Paused by <@{sc.owner}> at *Canary Release*, step *5%*, <!date^"
    )
    assert ("advance", str(sc.rollout_id)) not in buttons(status)
    asked_before = len(sc.datadog_requests())

    refused = sc.refused_advance()

    assert body(refused) == f":no_entry_sign: {sc.feature} is paused: `/rollout resume` it before you advance"
    assert len(sc.datadog_requests()) == asked_before
    assert sc.snapshots(SnapshotKind.GATE) == []
    assert sc.where() == ("paused", 0, 0)

    resumed = sc.command(f"resume {sc.feature}")

    assert body(resumed) == f":arrow_forward: *{sc.feature}* resumed."
    assert sc.events(EventKind.RESUMED) == [(EventKind.RESUMED, sc.owner, {"step": "5%"})]
    assert body(sc.advance()) == advanced_text(sc.feature)
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
    assert body(answer) == (
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
    assert body(after) == f":no_entry_sign: {sc.feature} is rolled back; there is nothing to advance"


def test_roll_back_button_refuses_a_non_owner_without_a_modal(sc: Scenario) -> None:
    started(sc, errors=1.0)
    other = new_user()
    opened_before = len(sc.slack.calls("views.open"))

    response, path = sc.click(sc.status_message(), "rollback", user=other)

    assert response.status == 200
    (refusal,) = sc.posts_to(path)
    assert body(refusal) == (
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

    assert body(early) == f":no_entry_sign: {sc.feature} is at 5%; advance it to 100% first, or roll it back"
    assert sc.events(EventKind.COMPLETED) == []

    sc.ready()
    assert body(sc.advance()) == advanced_text(sc.feature)
    # 50% -> 100% stays inside Gradual Rollout: its unticked exit criterion does not block.
    not_yet = sc.advance()
    (soak,) = blockers_of(not_yet)
    assert soak.startswith("Soak: ") and " at 50%; ready <!date^" in soak
    sc.soak()
    assert body(sc.advance()) == advanced_text(sc.feature, "50%", "100%")
    assert sc.where() == ("active", 1, 1)

    done = sc.command(f"complete {sc.feature}")

    assert body(done) == f":tada: *{sc.feature}* completed."
    assert sc.where() == ("completed", 1, 1)
    assert sc.events(EventKind.COMPLETED) == [(EventKind.COMPLETED, sc.owner, {"step": "100%"})]
    wait_until(lambda: next((u for u in sc.status_updates() if ":tada: Completed" in steps_text(u)), None))


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
    assert body(reply) == advanced_text(sc.feature)
    assert texts(reply)[-1] == (
        "_The status message could not be updated (message_not_found); it catches up at the next change._"
    )
