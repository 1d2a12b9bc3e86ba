"""`/rollout metrics`: the editor modal, its checks, and saving it through the running bot."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from bot.devtools.local_slack import LocalSlack
from bot.domain.plans import get_template, template_names
from bot.domain.plans.model import Direction, Metric, Rule
from bot.edge.forms import FormContext
from bot.edge.metric_forms import read_form
from bot.usecases.metrics_edit import (
    Group,
    apply_form,
    form_errors,
    key_from_name,
    parse_threshold,
    parse_window,
)
from messages.metric_modal import (
    EMPTY_GROUPS,
    MAX_GROUPS,
    Field,
    FieldId,
    format_number,
    metric_editor,
    metrics_saved,
)
from storage.db import Database
from storage.enums import EventKind
from storage.models import Event, Rollout
from tests.driver import SlackDriver, _rendered_state
from tests.support import body

# Slack's limits, as docs.slack.dev states them (modal views, input block, plain-text input,
# option object, header block), checked here independently of the builder's own constants.
SLACK_MAX_BLOCKS = 100
SLACK_MAX_TITLE = 24
SLACK_MAX_LABEL = 2000
SLACK_MAX_HINT = 2000
SLACK_MAX_PLACEHOLDER = 150
SLACK_MAX_INPUT_LENGTH = 3000
SLACK_MAX_OPTION_TEXT = 75
SLACK_MAX_OPTION_VALUE = 150
SLACK_MAX_BLOCK_ID = 255
SLACK_MAX_HEADER = 150
SLACK_MAX_SECTION = 3000
SLACK_MAX_METADATA = 3000


def _editor(metrics: list[Metric], triggers: list[Metric], feature: str = "checkout-v2") -> dict[str, Any]:
    return metric_editor(
        feature=feature,
        metrics=metrics,
        triggers=triggers,
        private_metadata=FormContext(channel_id="C123", token="42").dumps(),
    )


def _within_slack_limits(view: dict[str, Any]) -> None:
    assert len(view["blocks"]) <= SLACK_MAX_BLOCKS
    assert len(view["title"]["text"]) <= SLACK_MAX_TITLE
    assert len(view["submit"]["text"]) <= SLACK_MAX_TITLE
    assert len(view["close"]["text"]) <= SLACK_MAX_TITLE
    assert len(view["private_metadata"]) <= SLACK_MAX_METADATA
    block_ids = [b["block_id"] for b in view["blocks"] if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))
    for block in view["blocks"]:
        assert len(block.get("block_id", "")) <= SLACK_MAX_BLOCK_ID
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= SLACK_MAX_HEADER
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SLACK_MAX_SECTION
        if block["type"] != "input":
            continue
        assert len(block["label"]["text"]) <= SLACK_MAX_LABEL
        assert len(block.get("hint", {}).get("text", "")) <= SLACK_MAX_HINT
        element = block["element"]
        assert len(element.get("placeholder", {}).get("text", "")) <= SLACK_MAX_PLACEHOLDER
        if element["type"] == "plain_text_input":
            assert 1 <= element["max_length"] <= SLACK_MAX_INPUT_LENGTH
            assert len(element.get("initial_value", "")) <= element["max_length"]
        if element["type"] == "static_select":
            assert 1 <= len(element["options"]) <= 100
            for option in element["options"]:
                assert len(option["text"]["text"]) <= SLACK_MAX_OPTION_TEXT
                assert len(option["value"]) <= SLACK_MAX_OPTION_VALUE
            assert element["initial_option"] in element["options"]


def _unchanged_groups(view: dict[str, Any]) -> list[Group]:
    """What Slack submits when nobody touches the form: every initial value as it was."""
    return read_form(_rendered_state(view["blocks"]))


def _groups(view: dict[str, Any], changes: dict[tuple[int, Field], str]) -> list[Group]:
    state = _rendered_state(view["blocks"])
    for block_id, actions in state.items():
        field_id = FieldId.parse(block_id)
        if field_id is None or (field_id.group, field_id.field) not in changes:
            continue
        value = changes[(field_id.group, field_id.field)]
        action = actions["value"]
        if action["type"] == "static_select":
            action["selected_option"] = {"text": {"type": "plain_text", "text": value}, "value": value}
        else:
            action["value"] = value
    return read_form(state)


def _metric(key: str, name: str, **fields: Any) -> Metric:
    defaults: dict[str, Any] = {
        "query": f"avg:{key}{{service:{{service}}}}",
        "rule": Rule.UPPER,
        "threshold": 1.0,
    }
    return Metric(key=key, name=name, **{**defaults, **fields})


# --- the modal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", template_names())
def test_the_editor_of_each_template_is_within_slack_limits_and_round_trips(name: str) -> None:
    plan = get_template(name)
    view = _editor(list(plan.metrics), list(plan.triggers))

    _within_slack_limits(view)
    assert view["callback_id"] == "edit_metrics"
    assert FormContext.loads(view["private_metadata"]) == FormContext(channel_id="C123", token="42")
    groups = _unchanged_groups(view)
    assert len(groups) == len(plan.metrics) + len(plan.triggers) + EMPTY_GROUPS
    assert form_errors(groups) == {}
    edit = apply_form(groups, plan.metrics, plan.triggers)
    assert edit.metrics == plan.metrics
    assert edit.triggers == plan.triggers
    assert edit.removed == ()
    assert edit.need_baseline == ()


def test_the_query_hint_names_the_placeholders() -> None:
    view = _editor([], [])
    hints = [body(b["hint"]) for b in view["blocks"] if b.get("block_id", "").startswith("metric:0:query:")]
    assert hints and all(p in hints[0] for p in ("{feature}", "{flag}", "{service}"))


def test_a_plan_with_more_metrics_than_fit_shows_the_first_and_keeps_the_rest() -> None:
    metrics = [_metric(f"m{i}", f"Metric {i}") for i in range(8)]
    triggers = [_metric(f"t{i}", f"Trigger {i}", rule=Rule.RELATIVE, threshold=i + 0.5) for i in range(6)]
    view = _editor(metrics, triggers)

    _within_slack_limits(view)
    groups = _unchanged_groups(view)
    assert len(groups) == MAX_GROUPS
    note = next(b for b in view["blocks"] if b["type"] == "context")["elements"][0]["text"]
    assert f"room for {MAX_GROUPS - 1} of the 14 metrics" in note
    assert "Trigger 5" in note
    edit = apply_form(groups, metrics, triggers)
    assert edit.metrics == tuple(metrics)
    assert edit.triggers == tuple(triggers)

    # Removing a shown metric leaves the hidden ones alone.
    emptied = _groups(view, {(0, Field.NAME): ""})
    edit = apply_form(emptied, metrics, triggers)
    assert [m.key for m in edit.metrics] == [f"m{i}" for i in range(1, 8)]
    assert edit.triggers == tuple(triggers)
    assert edit.removed == ("Metric 0 (success criterion)",)


def test_an_aggregator_the_form_does_not_offer_survives_an_unchanged_save() -> None:
    metric = _metric("p99", "Latency (p99)", aggregator="percentile", window_minutes=15, unit="ms")
    view = _editor([metric], [])
    _within_slack_limits(view)
    edit = apply_form(_unchanged_groups(view), [metric], [])
    assert edit.metrics == (metric,)


@pytest.mark.parametrize("value", [0.0, 0.1, 0.05, 10, 50, -5, 1e-7, 123456.789, 0.30000000000000004])
def test_a_threshold_is_shown_so_that_it_reads_back_the_same(value: float) -> None:
    assert parse_threshold(format_number(value), Rule.RELATIVE) == value


# --- checks in the ack -------------------------------------------------------------------------


def test_an_empty_group_is_dropped_without_complaint() -> None:
    assert form_errors(_unchanged_groups(_editor([], []))) == {}
    assert apply_form(_unchanged_groups(_editor([], [])), [], []).metrics == ()


@pytest.mark.parametrize("typed", ["0.5%", "abc", "", "nan", "inf", "1_000", "1e400"])
def test_the_threshold_must_be_a_number(typed: str) -> None:
    view = _editor([], [])
    groups = _groups(
        view, {(0, Field.NAME): "Error rate", (0, Field.QUERY): "avg:errors", (0, Field.THRESHOLD): typed}
    )
    errors = form_errors(groups)
    assert list(errors) == [FieldId(0, Field.THRESHOLD).block_id]
    assert "number" in errors[FieldId(0, Field.THRESHOLD).block_id]


def test_must_be_zero_needs_no_threshold() -> None:
    view = _editor([], [])
    groups = _groups(
        view,
        {(0, Field.NAME): "Wrong records", (0, Field.QUERY): "sum:wrong", (0, Field.RULE): Rule.ZERO.value},
    )
    assert form_errors(groups) == {}
    assert apply_form(groups, [], []).metrics[0].threshold == 0.0


def test_a_named_metric_needs_a_query() -> None:
    view = _editor([], [])
    groups = _groups(view, {(1, Field.NAME): "Latency", (1, Field.THRESHOLD): "10"})
    assert list(form_errors(groups)) == [FieldId(1, Field.QUERY).block_id]


@pytest.mark.parametrize("typed", ["0", "-5", "1.5", "sixty", "１０", "1234567"])
def test_the_window_is_a_positive_whole_number(typed: str) -> None:
    view = _editor([], [])
    groups = _groups(
        view,
        {
            (0, Field.NAME): "Errors",
            (0, Field.QUERY): "sum:e",
            (0, Field.THRESHOLD): "1",
            (0, Field.WINDOW): typed,
        },
    )
    assert list(form_errors(groups)) == [FieldId(0, Field.WINDOW).block_id]


def test_an_empty_window_means_an_hour() -> None:
    assert parse_window("") == 60
    assert parse_window(" 15 ") == 15


def test_names_are_unique_within_a_kind_but_may_repeat_across_kinds() -> None:
    plan = get_template("standard")
    view = _editor(list(plan.metrics), list(plan.triggers))
    # Group 1 is the success criterion "Latency (p95)"; rename it to clash with group 0.
    clash = _groups(view, {(1, Field.NAME): "error  RATE"})
    errors = form_errors(clash)
    assert list(errors) == [FieldId(1, Field.NAME, "latency_p95").block_id]
    assert "success criterion" in errors[FieldId(1, Field.NAME, "latency_p95").block_id]
    # "Error rate" as a criterion and as a trigger, as the template has it, is fine.
    assert form_errors(_unchanged_groups(view)) == {}


def test_a_forged_select_value_is_refused() -> None:
    view = _editor([], [])
    groups = _groups(
        view,
        {
            (0, Field.NAME): "Errors",
            (0, Field.QUERY): "sum:e",
            (0, Field.THRESHOLD): "1",
            (0, Field.RULE): "sideways",
            (0, Field.BAD): "left",
            (0, Field.KIND): "wish",
        },
    )
    assert set(form_errors(groups)) == {FieldId(0, f).block_id for f in (Field.RULE, Field.BAD, Field.KIND)}


# --- keys --------------------------------------------------------------------------------------


def test_keys_stay_for_unchanged_names_and_are_made_from_new_ones() -> None:
    plan = get_template("standard")
    view = _editor(list(plan.metrics), list(plan.triggers))
    changed = _groups(
        view,
        {
            (0, Field.THRESHOLD): "0.2",  # error_rate: same name, new threshold
            (1, Field.NAME): "Latency (p99)",  # latency_p95 renamed
            (1, Field.QUERY): "p99:trace.http.request.duration{service:{service}}",
            (3, Field.NAME): "",  # the latency trigger removed
            (4, Field.NAME): "Error rate",  # a new criterion named like an existing trigger key's name
            (4, Field.KIND): "trigger",
            (4, Field.QUERY): "sum:errors{flag:{flag}}",
            (4, Field.RULE): Rule.UPPER.value,
            (4, Field.THRESHOLD): "3",
            (4, Field.UNIT): "%",
        },
    )
    # Group 4 is a second trigger called "Error rate": refused.
    assert list(form_errors(changed)) == [FieldId(4, Field.NAME).block_id]

    changed = [replace(g, name="Checkout errors") if g.index == 4 else g for g in changed]
    assert form_errors(changed) == {}
    edit = apply_form(changed, plan.metrics, plan.triggers)
    assert [m.key for m in edit.metrics] == ["error_rate", "latency_p99"]
    assert edit.metrics[0].threshold == 0.2
    assert [t.key for t in edit.triggers] == ["error_rate_spike", "checkout_errors"]
    assert edit.triggers[1] == Metric(
        key="checkout_errors",
        name="Checkout errors",
        query="sum:errors{flag:{flag}}",
        rule=Rule.UPPER,
        threshold=3.0,
        bad=Direction.UP,
        unit="%",
    )
    assert edit.removed == ("Latency (p95) (success criterion)", "Latency (p95) (rollback trigger)")
    assert edit.need_baseline == ("Latency (p99)",)


def test_a_new_key_never_reuses_one_in_use() -> None:
    existing = [_metric("error_rate", "Error rate")]
    view = _editor(existing, [])
    groups = _groups(
        view,
        {
            (1, Field.NAME): "Error-rate",
            (1, Field.QUERY): "sum:e",
            (1, Field.THRESHOLD): "1",
            (1, Field.KIND): "trigger",
        },
    )
    edit = apply_form(groups, existing, [])
    assert edit.triggers[0].key == "error_rate_2"
    assert key_from_name("  Latency (p95) ") == "latency_p95"
    assert key_from_name("Größe Ä") == "grosse_a"
    assert key_from_name("!!!") == "metric"


def test_the_confirmation_spells_out_each_rule() -> None:
    plan = get_template("standard")
    message = metrics_saved(
        feature="<!channel> v2", metrics=plan.metrics, triggers=plan.triggers, removed=(), need_baseline=()
    )
    assert "change vs baseline ≤ +0.1 pp (absolute)" in body(message)
    assert "fires when error rate rises more than 0.5 pp (absolute)" in body(message)
    assert "<!channel>" not in body(message)


# --- end to end, through the running bot --------------------------------------------------------


def _start(driver: SlackDriver, slack: LocalSlack, channel: str, feature: str) -> None:
    driver.command(f"start {feature}")
    slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel)


def _opened_view(slack: LocalSlack, channel: str) -> dict[str, Any]:
    def ours(call: Any) -> bool:
        view = call.params.get("view") or {}
        return view.get("callback_id") == "edit_metrics" and channel in view.get("private_metadata", "")

    call = slack.wait_for("views.open", ours)[-1]
    return dict(call.params["view"])


def _ephemeral(slack: LocalSlack, channel: str, user: str, count: int = 1) -> str:
    calls = slack.wait_for(
        "chat.postEphemeral",
        lambda c: c.params.get("channel") == channel and c.params.get("user") == user,
        timeout=10,
        count=count,
    )
    return str(body(calls[count - 1].params))


def _block(view: dict[str, Any], key: str, field: Field) -> str:
    for block in view["blocks"]:
        field_id = FieldId.parse(block.get("block_id", ""))
        if field_id is not None and field_id.key == key and field_id.field is field:
            return str(block["block_id"])
    raise AssertionError(f"no {field} for {key}")


def _empty_group(view: dict[str, Any]) -> int:
    return min(
        f.group
        for f in (FieldId.parse(b.get("block_id", "")) for b in view["blocks"])
        if f is not None and f.key == ""
    )


def _events(db: Database, feature: str, kind: EventKind) -> list[Event]:
    with db.reading() as session:
        rollout_id = session.scalars(select(Rollout.id).where(Rollout.feature == feature)).one()
        return list(
            session.scalars(select(Event).where(Event.rollout_id == rollout_id, Event.kind == kind)).all()
        )


def _stored(db: Database, feature: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    with db.reading() as session:
        rollout = session.scalars(select(Rollout).where(Rollout.feature == feature)).one()
        return list(rollout.metrics), list(rollout.triggers), rollout.revision


@pytest.mark.e2e
def test_the_owner_edits_the_metrics_in_a_modal(
    driver: SlackDriver, slack: LocalSlack, bot_db: Database, channel: str
) -> None:
    feature = "metrics-" + channel.lower()
    _start(driver, slack, channel, feature)
    _, _, revision = _stored(bot_db, feature)

    driver.command(f"metrics {feature}")
    view = _opened_view(slack, channel)
    assert "Error rate" in json.dumps(view)
    new = _empty_group(view)
    submitted_at = time.time()
    answer = driver.submit_view(
        view,
        {
            _block(view, "error_rate_spike", Field.THRESHOLD): "0.7",
            FieldId(new, Field.NAME).block_id: "Checkout conversion",
            FieldId(new, Field.QUERY).block_id: "avg:checkout.conversion{flag:{flag}}",
            FieldId(new, Field.RULE).block_id: "relative",
            FieldId(new, Field.BAD).block_id: "down",
            FieldId(new, Field.THRESHOLD).block_id: "5",
            FieldId(new, Field.UNIT).block_id: "%",
        },
    )
    assert answer.status == 200

    text = _ephemeral(slack, channel, driver.user_id)
    assert "fires when error rate rises more than 0.7 pp (absolute)" in text
    assert "*Checkout conversion*: change vs baseline ≥ −5% (relative)" in text
    assert "`/rollout baseline`" in text  # the new change rule has no baseline yet
    metrics, triggers, new_revision = _stored(bot_db, feature)
    assert new_revision > revision
    assert [m["key"] for m in metrics] == ["error_rate", "latency_p95", "checkout_conversion"]
    assert next(t for t in triggers if t["key"] == "error_rate_spike")["threshold"] == 0.7
    (event,) = _events(bot_db, feature, EventKind.METRICS_EDITED)
    assert event.actor_id == driver.user_id
    assert [m["key"] for m in event.data["before"]["metrics"]] == ["error_rate", "latency_p95"]
    assert [m["key"] for m in event.data["after"]["metrics"]] == [
        "error_rate",
        "latency_p95",
        "checkout_conversion",
    ]
    # The status message was re-rendered for the new revision.
    slack.wait_for("chat.update", lambda c: c.params.get("channel") == channel and c.at >= submitted_at)


@pytest.mark.e2e
def test_a_bad_threshold_keeps_the_modal_open_with_the_error(
    driver: SlackDriver, slack: LocalSlack, bot_db: Database, channel: str
) -> None:
    feature = "badmetric-" + channel.lower()
    _start(driver, slack, channel, feature)
    driver.command(f"metrics {feature}")
    view = _opened_view(slack, channel)
    block_id = _block(view, "error_rate", Field.THRESHOLD)

    submitted_at = time.time()
    answer = driver.submit_view(view, {block_id: "0.5%"})

    assert answer.status == 200
    body = answer.json()
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == [block_id]
    # Bolt still runs the lazy listener after an errors ack: it must neither save nor speak.
    time.sleep(1.0)
    assert _events(bot_db, feature, EventKind.METRICS_EDITED) == []
    assert not [
        c
        for c in slack.calls("chat.postEphemeral")
        if c.params.get("channel") == channel and c.at >= submitted_at
    ]


@pytest.mark.e2e
def test_someone_who_may_not_steer_is_refused(
    driver: SlackDriver, slack: LocalSlack, bot_db: Database, channel: str
) -> None:
    feature = "notmine-" + channel.lower()
    _start(driver, slack, channel, feature)
    before = _stored(bot_db, feature)

    driver.command(f"metrics {feature}", user="W999")
    reply = driver.wait_reply()
    assert "Only the owner" in body(reply)
    assert "edit the metrics of" in body(reply)

    # A form the owner opened, submitted by someone else, changes nothing either.
    driver.command(f"metrics {feature}")
    view = _opened_view(slack, channel)
    driver.submit_view(view, {_block(view, "error_rate", Field.THRESHOLD): "9"}, user="W999")
    assert "Only the owner" in _ephemeral(slack, channel, "W999")
    assert _stored(bot_db, feature) == before
    assert _events(bot_db, feature, EventKind.METRICS_EDITED) == []
    assert len(_events(bot_db, feature, EventKind.REFUSED)) == 2
