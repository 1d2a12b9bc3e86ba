"""Messages people act on, rendered from read models: stakeholder lines that stand alone,
plain push texts, overrides that say what they skip, one state line for a stop, the override
form's words and the link into Datadog."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from bot.domain import rollouts
from bot.metrics.links import app_base, explorer_url
from bot.usecases.exporting import current_plan, results_of
from bot.usecases.views import home_row, rollout_view
from messages.announcements import PUSH_LIMIT, STATUS_LINK, milestone
from messages.blocks import status_message
from messages.home import home_view
from messages.modals import override_intro
from messages.plan_document import export_plan
from tests.domain.test_domain import T0, started

NOW = T0 + timedelta(hours=3)
KINDS = ("started", "advanced", "completed", "paused", "resumed", "rolled_back", "update")
EMOJI = re.compile(r":[a-z0-9_+-]+:")


def section_text(message_blocks: list[dict[str, object]]) -> str:
    block = message_blocks[0]
    assert isinstance(block, dict)
    return str(block["text"]["text"])  # type: ignore[index]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("actor", ["U_ANA", None])
def test_every_stakeholder_line_names_who_and_links_the_status_thread(kind: str, actor: str | None) -> None:
    view = rollout_view(started())
    _, line = milestone(kind, view, actor=actor, reason="error rate doubled", text="all good")
    shown = section_text(line.blocks)
    if kind != "completed" or actor:  # "fully rolled out" needs nobody's name
        assert ("<@U_ANA>" if actor else "Rollout Bot") in shown
    assert shown.endswith(STATUS_LINK)


@pytest.mark.parametrize("kind", KINDS)
def test_push_texts_are_plain_event_first_and_short(kind: str) -> None:
    view = rollout_view(started(feature="*<!channel>* &co"))
    thread, line = milestone(kind, view, actor="U_ANA", reason="x" * 300, text="*bold* :tada: " * 30)
    assert thread.text == line.text
    assert len(line.text) <= PUSH_LIMIT
    assert not EMOJI.search(line.text) and "*" not in line.text and "<" not in line.text


def test_a_paused_line_tells_stakeholders_the_cause_and_who_decides_next() -> None:
    view = rollout_view(started())
    reason = "rollback trigger fired: Error rate (+1.2 pp vs baseline (1% → 2.2%))"
    _, line = milestone("paused", view, actor=None, reason=reason)
    assert section_text(line.blocks) == (
        f":double_vertical_bar: *checkout-v2* paused at internal by Rollout Bot. Why: {reason}. "
        f"Next: <@U_OWNER> resumes it or rolls it back. Details: {STATUS_LINK}"
    )
    assert line.text == f"Paused: checkout-v2 at internal: {reason}"
    assert len(line.text) <= PUSH_LIMIT


def test_an_override_lists_its_blockers_and_marks_the_phase_skipped() -> None:
    rollout = started()
    rollouts.move_forward(rollout, NOW, overridden=True)  # Internal Testing's only step: leaves it
    view = rollout_view(rollout)
    blockers = ["Exit criterion not checked: QA sign-off.", "1% has run 3 h of 1 business day."]
    thread, _ = milestone(
        "advanced",
        view,
        actor="U_ANA",
        override=True,
        reason="known noise",
        blockers=blockers,
        phase_done="Internal Testing",
    )
    shown = section_text(thread.blocks)
    assert "*Internal Testing* is skipped by override ⚠, not done." in shown
    assert shown.endswith(
        "Overridden:\n• Exit criterion not checked: QA sign-off.\n• 1% has run 3 h of 1 business day."
    )
    assert ":white_check_mark:" not in shown

    steps = section_text([b for b in status_message(view, now=NOW).blocks if b.get("block_id") == "steps"])
    assert "\n:warning: _skipped by override_ *Internal Testing*: internal (skipped by override ⚠)\n" in steps
    assert "~" not in steps  # never struck through as done


def test_a_rolled_back_status_message_has_one_state_line_with_who_when_why() -> None:
    rollout = started()
    rollouts.roll_back(rollout, NOW, by="U_ANA", reason="error rate doubled")
    message = status_message(rollout_view(rollout), now=NOW)
    steps = section_text([b for b in message.blocks if b.get("block_id") == "steps"])
    lines = steps.split("\n")
    assert lines[0] == (
        ":rewind: Rolled back by <@U_ANA> at *Internal Testing*, step *internal*, "
        "<!date^1772481600^{date_short_pretty} {time}|Mon 2 Mar 12:00 PST>. Reason: error rate doubled."
    )
    assert lines[1] == ":rewind: _rolled back_ *Internal Testing*: internal"
    assert all(" _not reached_ " in line for line in lines[2:])
    assert str(message.blocks).count("Rolled back") == 1


def test_the_override_form_names_the_target_and_the_blockers() -> None:
    intro = override_intro(
        feature="checkout-v2",
        from_step="internal",
        to_step="1%",
        to_phase="Canary",
        leaves_phase="Internal Testing",
        blockers=[f"Exit criterion not checked: item {n}." for n in range(10)],
    )
    assert intro.split("\n")[:3] == [
        "Advance *checkout-v2* from *internal* to *1%* of *Canary*, past a closed gate.",
        "This overrides:",
        "• Exit criterion not checked: item 0.",
    ]
    assert "• …and 2 more" in intro
    assert "*Internal Testing* will show as skipped by override ⚠, not done." in intro


@pytest.mark.parametrize(
    ("site", "base"),
    [
        (None, "https://app.datadoghq.com"),
        ("datadoghq.eu", "https://app.datadoghq.eu"),
        ("us5.datadoghq.com", "https://us5.datadoghq.com"),
    ],
)
def test_datadog_links_open_the_metric_explorer_on_the_site(site: str | None, base: str) -> None:
    assert app_base(site) == base
    url = explorer_url(site, "sum:trace.http.request.errors{service:web,feature_flag:on}.as_count()")
    assert url == (
        f"{base}/metric/explorer?exp_metric=trace.http.request.errors&exp_row_type=metric"
        "&exp_scope=service%3Aweb%2Cfeature_flag%3Aon&exp_agg=sum"
    )
    assert explorer_url(site, "") is None


def test_home_names_the_phases_skipped_by_override() -> None:
    rollout = started()
    rollout.id = 7
    rollouts.move_forward(rollout, NOW, overridden=True)
    row = home_row(rollout, NOW)
    assert row.skipped == ("Internal Testing",)
    assert "Skipped by override ⚠: Internal Testing" in json.dumps(home_view([row]), ensure_ascii=False)


def test_the_export_says_skipped_by_override_not_completed() -> None:
    rollout = started()
    rollouts.move_forward(rollout, NOW, overridden=True)
    document = export_plan(current_plan(rollout), results=results_of(rollout, [], []))
    first = document.split("**Completed:**")[1].split("\n")[0]
    assert first.strip().startswith("skipped by override ⚠ (")


def test_a_datadog_link_too_long_for_a_button_is_left_out() -> None:
    assert explorer_url(None, "avg:m{" + "tag:x," * 600 + "}") is None
