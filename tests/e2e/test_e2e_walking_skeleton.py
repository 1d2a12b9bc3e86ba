"""The walking skeleton, end to end: people type `/rollout ...` and tick boxes in a channel, the
real bot (`rollout-bot serve`, once on SQLite and once on Postgres) answers through the local
Slack stand-in, and its database says what it committed."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import select

from bot.devtools.local_slack import LocalSlack
from bot.edge.parsing import USAGES
from storage.db import Database
from storage.enums import EventKind, RolloutStatus
from storage.models import ChecklistItem, Event, Rollout, SlackMessage
from tests.conftest import BotProcess, bot_env
from tests.driver import FORM, Response, SlackDriver
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e

Params = dict[str, Any]
ANA, BOB = "U0ANA", "U0BOB"
# An upper bound for the bot to answer (not a sleep): generous, for a busy CI machine.
WAIT = 15.0


# -- reading what happened ---------------------------------------------------------------


def said(message: Params) -> str:
    """Everything a reply shows: its text and every text in its blocks."""
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks", []), ensure_ascii=False)


def top_level(slack: LocalSlack, channel: str) -> list[Params]:
    return [m for m in slack.messages(channel) if not m.get("thread_ts")]


def status_post(slack: LocalSlack, channel: str, timeout: float = 15.0) -> Params:
    """The status message, once the bot has posted it."""
    slack.wait_for(
        "chat.postMessage",
        lambda c: (
            c.params.get("channel") == channel and not c.params.get("thread_ts") and c.params.get("blocks")
        ),
        timeout,
    )[0]
    wait_until(
        lambda: any(not m.get("thread_ts") for m in slack.messages(channel)), what="the status message"
    )
    return top_level(slack, channel)[0]


def options(message: Params) -> list[Params]:
    return [
        option
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["type"] == "checkboxes"
        for option in element["options"]
    ]


def ticked(message: Params) -> set[str]:
    return {
        option["value"]
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["type"] == "checkboxes"
        for option in element.get("initial_options", [])
    }


def _element_of(message: Params, value: str) -> Params:
    return next(
        element
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["type"] == "checkboxes" and any(o["value"] == value for o in element["options"])
    )


def steps_text(message: Params) -> str:
    return next(b["text"]["text"] for b in message["blocks"] if b.get("block_id") == "steps")


def updates_of(slack: LocalSlack, channel: str, ts: str) -> list[Params]:
    return [
        c.params
        for c in slack.calls("chat.update")
        if c.params.get("channel") == channel and c.params.get("ts") == ts
    ]


def the_rollout(db: Database, team_id: str, feature: str) -> Rollout | None:
    with db.reading() as session:
        return session.scalars(
            select(Rollout).where(Rollout.team_id == team_id, Rollout.feature == feature)
        ).one_or_none()


def wait_rollout(db: Database, team_id: str, feature: str) -> Rollout:
    return wait_until(lambda: the_rollout(db, team_id, feature), what=f"rollout {feature} in the database")


def items_of(db: Database, rollout_id: int, phase: int | None = 0) -> list[ChecklistItem]:
    with db.reading() as session:
        stmt = select(ChecklistItem).where(ChecklistItem.rollout_id == rollout_id)
        found = session.scalars(stmt).all()
        rows = [(i, i.phase.position) for i in found]
    return sorted((i for i, p in rows if phase is None or p == phase), key=lambda i: i.id)


def events_of(db: Database, rollout_id: int, kind: EventKind | None = None) -> list[Event]:
    with db.reading() as session:
        stmt = select(Event).where(Event.rollout_id == rollout_id).order_by(Event.id)
        return [e for e in session.scalars(stmt).all() if kind is None or e.kind is kind]


def status_ref(db: Database, rollout_id: int) -> SlackMessage | None:
    with db.reading() as session:
        return session.scalars(
            select(SlackMessage).where(
                SlackMessage.rollout_id == rollout_id, SlackMessage.purpose == "status"
            )
        ).one_or_none()


def started(
    driver: SlackDriver, slack: LocalSlack, db: Database, text: str, feature: str
) -> tuple[Rollout, Params]:
    """`/rollout start ...`, then the rollout and its posted status message."""
    response = driver.command(f"start {text}")
    assert response.status == 200, response
    message = status_post(slack, driver.channel_id)
    rollout = wait_rollout(db, driver.team_id, feature)
    wait_until(lambda: status_ref(db, rollout.id), what="the status message's ts in the database")
    return rollout, message


def click_and_reply(
    driver: SlackDriver, slack: LocalSlack, message: Params, action_id: str, **kw: Any
) -> Params:
    """Click a button; what the bot then posts to that click's own response_url."""
    urls: list[str] = []
    make = driver._response_url

    def recording(kind: str) -> str:
        urls.append(make(kind))
        return urls[-1]

    driver._response_url = recording  # type: ignore[method-assign]
    try:
        response = driver.click(message, action_id, **kw)
    finally:
        del driver._response_url
    assert response.status == 200, response
    path = urlsplit(urls[-1]).path
    return slack.wait_for("response_url", lambda c: c.path == path, WAIT)[0].params


# -- /rollout start ----------------------------------------------------------------------


def test_start_posts_one_status_message_with_the_plan(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    response = driver.command(
        "start checkout-v2 backend --owner <@U0ANA|ana> --stakeholders <#C0LAUNCH|launches> --flag checkout_v2"
    )

    assert response.status == 200
    ack = response.json()
    assert ack["response_type"] == "ephemeral"
    assert "Starting *checkout-v2*" in body(ack)

    message = status_post(slack, channel)
    rollout = wait_rollout(bot_db, driver.team_id, "checkout-v2")
    assert (rollout.owner_id, rollout.created_by) == (ANA, driver.user_id)
    assert (rollout.template, rollout.flag_key, rollout.stakeholder_channels) == (
        "backend",
        "checkout_v2",
        ["C0LAUNCH"],
    )
    assert (rollout.channel_id, rollout.status, rollout.phase_index, rollout.step_index) == (
        channel,
        RolloutStatus.ACTIVE,
        0,
        0,
    )
    assert [(e.kind, e.actor_id) for e in events_of(bot_db, rollout.id, EventKind.STARTED)] == [
        (EventKind.STARTED, driver.user_id)
    ]
    ref = wait_until(lambda: status_ref(bot_db, rollout.id), what="the status message ts")
    assert (ref.channel_id, ref.ts) == (channel, message["ts"])

    # What the channel sees: feature, owner, template, the steps with their users, where it is.
    assert message["blocks"][0]["text"]["text"] == ":rocket: checkout-v2"
    facts = " ".join(body(e) for e in message["blocks"][1]["elements"])
    assert "Owner <@U0ANA>" in facts and "(`backend`)" in facts
    assert "`checkout_v2`" in facts and "<#C0LAUNCH>" in facts
    steps = steps_text(message)
    assert steps.startswith("Now: *Canary*, step *1%*, since ")
    assert ":arrow_forward: _now_ *Canary*: *1% (500 users)*" in steps
    assert "25% (3,000 users) → 50% (6,000 users) → 75% (9,000 users) → 100% (12,000 users)" in steps
    assert message["text"] == "checkout-v2 rollout: Canary, step 1%; 0 of 4 checklist items ticked"

    # The current phase's checklist: one box per item, by its id.
    canary = items_of(bot_db, rollout.id, phase=0)
    assert [(o["value"], o["text"]["text"]) for o in options(message)] == [
        (str(i.id), i.text) for i in canary
    ]
    assert [i.text for i in canary] == [
        "Turn the feature toggle on for the canary cohort",
        "Check the success criteria in Datadog",
        "Desired number of users reached",
        "Data reaching end users matches expected behaviour",
    ]
    assert ticked(message) == set()

    # ONE status message in the channel (announcements go in its thread, never beside it).
    assert [m["ts"] for m in top_level(slack, channel)] == [message["ts"]]


def test_start_without_a_template_uses_the_standard_plan_and_the_typist_owns_it(
    driver: SlackDriver, slack: LocalSlack, bot_db: Database
) -> None:
    rollout, message = started(driver, slack, bot_db, "Search-Ranking", "Search-Ranking")
    assert (rollout.template, rollout.owner_id, rollout.feature_key) == (
        "standard",
        driver.user_id,
        "search-ranking",
    )
    assert f"Owner <@{driver.user_id}>" in json.dumps(message["blocks"])
    assert steps_text(message).startswith("Now: *Internal Testing*, step *internal*")
    assert len(options(message)) == 9  # 5 tasks and 4 exit criteria


# -- ticking boxes -----------------------------------------------------------------------


def test_ticking_a_box_updates_the_message_and_records_who_and_when(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    rollout, message = started(driver, slack, bot_db, "tick-me backend", "tick-me")
    first, second = items_of(bot_db, rollout.id)[:2]
    before = datetime.now(UTC) - timedelta(seconds=1)

    assert driver.toggle(message, str(second.id), user=ANA).status == 200

    update = slack.wait_for("chat.update", lambda c: c.params.get("ts") == message["ts"], WAIT)[-1].params
    assert update["channel"] == channel
    after = datetime.now(UTC) + timedelta(seconds=1)
    shown = slack.message(channel, message["ts"])
    assert ticked(shown) == {str(second.id)}
    option = next(o for o in options(shown) if o["value"] == str(second.id))
    assert option["description"]["text"].startswith("<@U0ANA> · ")
    assert "*Tasks* 1/2" in json.dumps(shown["blocks"])
    assert shown["text"] == "tick-me rollout: Canary, step 1%; 1 of 4 checklist items ticked"

    item = next(i for i in items_of(bot_db, rollout.id) if i.id == second.id)
    assert item.checked_by == ANA
    assert item.checked_at is not None and before <= item.checked_at <= after
    assert not next(i for i in items_of(bot_db, rollout.id) if i.id == first.id).checked
    checks = events_of(bot_db, rollout.id, EventKind.ITEM_CHECKED)
    assert [(e.actor_id, e.data["item_id"], e.data["text"]) for e in checks] == [
        (ANA, second.id, second.text)
    ]

    # Bob unticks it from the message as it is now.
    driver.toggle(slack.message(channel, message["ts"]), str(second.id), user=BOB)
    wait_until(lambda: not ticked(slack.message(channel, message["ts"])), what="the box unticked in Slack")
    item = next(i for i in items_of(bot_db, rollout.id) if i.id == second.id)
    assert (item.checked_by, item.checked_at) == (None, None)
    unchecks = events_of(bot_db, rollout.id, EventKind.ITEM_UNCHECKED)
    assert [(e.actor_id, e.data["item_id"]) for e in unchecks] == [(BOB, second.id)]
    # No new top-level message: the one status message was edited in place.
    assert len(top_level(slack, channel)) == 1


def test_two_people_ticking_different_boxes_at_once_both_stick(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    rollout, message = started(driver, slack, bot_db, "race-two", "race-two")
    items = items_of(bot_db, rollout.id)
    # Two boxes of one checkboxes element: Slack sends each clicker's whole selection of it.
    ana_item, bob_item = str(items[0].id), str(items[3].id)
    assert {ana_item, bob_item} <= {o["value"] for o in _element_of(message, ana_item)["options"]}
    barrier = threading.Barrier(2)
    answers: list[Response] = []

    def click(item: str, user: str) -> None:
        barrier.wait(5)
        answers.append(driver.toggle(message, item, user=user))  # both from the same rendering

    threads = [threading.Thread(target=click, args=args) for args in ((ana_item, ANA), (bob_item, BOB))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [a.status for a in answers] == [200, 200]

    def both_in_slack() -> bool:
        return ticked(slack.message(channel, message["ts"])) == {ana_item, bob_item}

    wait_until(both_in_slack, what="both boxes ticked in the status message")
    by_id = {str(i.id): i for i in items_of(bot_db, rollout.id)}
    assert (by_id[ana_item].checked_by, by_id[bob_item].checked_by) == (ANA, BOB)
    assert {i for i, item in by_id.items() if item.checked} == {ana_item, bob_item}
    checks = events_of(bot_db, rollout.id, EventKind.ITEM_CHECKED)
    assert sorted((e.actor_id, str(e.data["item_id"])) for e in checks) == [(ANA, ana_item), (BOB, bob_item)]
    assert events_of(bot_db, rollout.id, EventKind.ITEM_UNCHECKED) == []
    # The last edit Slack received shows both.
    wait_until(lambda: len(updates_of(slack, channel, message["ts"])) >= 2, what="two chat.update calls")
    last = updates_of(slack, channel, message["ts"])[-1]
    assert ticked(last) == {ana_item, bob_item}


def test_the_same_box_clicked_twice_at_once_is_one_tick(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    rollout, message = started(driver, slack, bot_db, "double-click", "double-click")
    item = str(items_of(bot_db, rollout.id)[1].id)
    barrier = threading.Barrier(2)

    def click(user: str) -> None:
        barrier.wait(5)
        driver.toggle(message, item, user=user)

    threads = [threading.Thread(target=click, args=(user,)) for user in (ANA, BOB)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Each click puts the clicker's view right, so both end in an edit.
    wait_until(lambda: len(updates_of(slack, channel, message["ts"])) >= 2, what="both clicks answered")
    checks = events_of(bot_db, rollout.id, EventKind.ITEM_CHECKED)
    assert len(checks) == 1 and checks[0].data["item_id"] == int(item)
    assert events_of(bot_db, rollout.id, EventKind.ITEM_UNCHECKED) == []
    stored = next(i for i in items_of(bot_db, rollout.id) if str(i.id) == item)
    assert stored.checked and stored.checked_by == checks[0].actor_id
    wait_until(lambda: ticked(slack.message(channel, message["ts"])) == {item}, what="the box ticked once")


def test_a_box_of_a_rollout_that_is_gone_gets_a_polite_answer(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    rollout, message = started(driver, slack, bot_db, "gone-soon", "gone-soon")
    forged = json.loads(json.dumps(message).replace(f"checklist:{rollout.id}:", "checklist:987654321:"))
    box = options(forged)[0]["value"]
    urls: list[str] = []
    make = driver._response_url
    driver._response_url = lambda kind: urls.append(make(kind)) or urls[-1]  # type: ignore[method-assign]
    try:
        assert driver.toggle(forged, box).status == 200
    finally:
        del driver._response_url
    reply = slack.wait_for("response_url", lambda c: c.path == urlsplit(urls[-1]).path, WAIT)[0].params
    assert reply["response_type"] == "ephemeral"
    assert "does not exist any more" in body(reply)
    assert "Traceback" not in said(reply)
    assert not any(i.checked for i in items_of(bot_db, rollout.id, phase=None))


# -- status, list, help ------------------------------------------------------------------


def test_status_and_list_answer_only_the_asker(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    rollout, message = started(driver, slack, bot_db, "status-me backend --owner <@U0ANA>", "status-me")
    driver.toggle(message, str(items_of(bot_db, rollout.id)[0].id), user=BOB)
    slack.wait_for("chat.update", lambda c: c.params.get("ts") == message["ts"], WAIT)

    driver.command("status Status-Me")  # any case
    reply = driver.wait_reply(WAIT)
    assert reply["response_type"] == "ephemeral"
    text = said(reply)
    assert "Now: *Canary*, step *1%*" in text
    assert "*Tasks* 1/2" in text and ":ballot_box_with_check: Turn the feature toggle on" in text
    assert f"/archives/{channel}/p{message['ts'].replace('.', '')}" in text  # a link to the live message
    assert "checklist_toggle" not in text  # a copy offers no boxes that would not update

    driver.command("status")  # the channel's only open rollout
    assert "Now: *Canary*, step *1%*" in said(driver.wait_reply(WAIT))

    driver.command("list", channel="C0ELSEWHERE")  # the whole workspace, from anywhere
    listing = said(driver.wait_reply(WAIT))
    assert "*status-me* in <#" + channel + ">: Canary, step 1%" in listing
    assert "owner <@U0ANA>" in listing
    # Only this workspace's rollouts.
    assert "*Open rollouts* (1)" in listing


def test_list_with_nothing_open_says_how_to_start(driver: SlackDriver) -> None:
    driver.command("list")
    assert "No open rollouts. Start one with `/rollout start <feature>`." in said(driver.wait_reply(WAIT))


def test_status_of_an_unknown_feature(driver: SlackDriver) -> None:
    driver.command("status nope")
    reply = driver.wait_reply(WAIT)
    assert reply["response_type"] == "ephemeral"
    assert "There is no rollout called *nope*" in body(reply)


def test_status_in_a_channel_without_a_rollout(driver: SlackDriver) -> None:
    driver.command("status")
    assert "This channel has no open rollout" in body(driver.wait_reply(WAIT))


@pytest.mark.parametrize("text", ["help", "", "HELP"])
def test_help_lists_every_subcommand_with_an_example(driver: SlackDriver, text: str) -> None:
    response = driver.command(text)
    assert response.status == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    help_text = said(answer).replace('\\"', '"')  # a JSON string's quotes, as Slack shows them
    for name, usage in USAGES.items():
        assert usage.example in help_text, name
        assert f"/rollout {name}" in help_text, name
    assert "`backend`" in help_text and "`standard`" in help_text


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem", "right_form"),
    [
        (
            "frobnicate checkout-v2",
            "`frobnicate` is not a /rollout subcommand",
            "Type `/rollout help` for every subcommand.",
        ),
        ('start "checkout v2', "a quote is not closed", "Type `/rollout help` for every subcommand."),
        (
            "start " + "x" * 81,
            "the feature name is 81 characters; the limit is 80",
            "Use: `/rollout start &lt;feature&gt;",
        ),
        (
            "start checkout-v2 --owner ana",
            "`ana` is not a Slack user",
            "Use: `/rollout start &lt;feature&gt;",
        ),
        ("start checkout-v2 --owner", "`--owner` needs a value", "Use: `/rollout start &lt;feature&gt;"),
        (
            "start --flag ff",
            "the feature name is missing",
            "For example: `/rollout start checkout-v2 backend",
        ),
        ("status a b", "give one feature name", "Use: `/rollout status [feature]`"),
    ],
)
def test_bad_input_is_answered_in_the_ack_with_the_right_form(
    driver: SlackDriver,
    slack: LocalSlack,
    channel: str,
    bot_db: Database,
    text: str,
    problem: str,
    right_form: str,
) -> None:
    response = driver.command(text)
    assert response.status == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    assert body(answer).startswith(f":warning: {problem}")
    assert right_form in body(answer)
    assert "Traceback" not in response.body
    with bot_db.reading() as session:
        assert session.scalars(select(Rollout).where(Rollout.team_id == driver.team_id)).all() == []


def test_an_unknown_template_is_refused_and_nothing_is_made(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    assert driver.command("start checkout-v2 yolo").status == 200
    reply = driver.wait_reply(WAIT)
    assert reply["response_type"] == "ephemeral"
    assert "there is no template `yolo`" in body(reply)
    for name in ("standard", "backend", "conservative", "aggressive"):
        assert f"`{name}`" in body(reply)
    assert "Use: `/rollout start" in body(reply)
    assert the_rollout(bot_db, driver.team_id, "checkout-v2") is None
    assert slack.messages(channel) == []


def test_a_feature_name_is_unique_among_a_workspaces_open_rollouts(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    first, _ = started(driver, slack, bot_db, "Checkout-V2", "Checkout-V2")

    driver.command("start checkout-v2 backend", channel="C0OTHER" + uuid.uuid4().hex[:4].upper())
    reply = driver.wait_reply(WAIT)
    assert reply["response_type"] == "ephemeral"
    assert f"*Checkout-V2* already has an open rollout in <#{channel}>" in body(reply)
    assert "/rollout status Checkout-V2" in body(reply)
    with bot_db.reading() as session:
        mine = session.scalars(select(Rollout).where(Rollout.team_id == driver.team_id)).all()
    assert [r.id for r in mine] == [first.id]

    # Another workspace may use the name.
    elsewhere = SlackDriver(
        driver.url.removesuffix("/slack/events"),
        driver.signing_secret,
        slack,
        team_id="T0" + uuid.uuid4().hex[:8].upper(),
        channel_id="C0" + uuid.uuid4().hex[:8].upper(),
    )
    elsewhere.command("start checkout-v2")
    status_post(slack, elsewhere.channel_id)
    assert wait_rollout(bot_db, elsewhere.team_id, "checkout-v2").id != first.id


def test_two_starts_of_one_name_at_once_make_one_rollout(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    feature = "twin-" + uuid.uuid4().hex[:6]  # the Slack stand-in is shared by both backends' bots
    barrier = threading.Barrier(2)
    channels = [channel, "C0TWIN" + uuid.uuid4().hex[:5].upper()]

    def start(where: str) -> None:
        barrier.wait(5)
        driver.command(f"start {feature}", channel=where)

    threads = [threading.Thread(target=start, args=(where,)) for where in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    refusal = wait_until(
        lambda: next(
            (
                c.params
                for c in slack.calls("response_url")
                if "already has an open rollout" in body(c.params) and f"*{feature}*" in body(c.params)
            ),
            None,
        ),
        what="the second start refused",
    )
    winner = wait_rollout(bot_db, driver.team_id, feature)
    assert f"<#{winner.channel_id}>" in body(refusal)
    with bot_db.reading() as session:
        assert len(session.scalars(select(Rollout).where(Rollout.team_id == driver.team_id)).all()) == 1
    status_post(slack, winner.channel_id)
    loser = next(c for c in channels if c != winner.channel_id)
    assert top_level(slack, loser) == []


def test_a_hostile_feature_name_pings_nobody(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    response = driver.command("start <!channel>")
    assert "Starting *&lt;!channel&gt;*" in body(response.json())
    message = status_post(slack, channel)
    assert message["text"].startswith("&lt;!channel&gt; rollout: Internal Testing, step internal")

    def mrkdwn(value: Any) -> list[str]:
        if isinstance(value, dict):
            own = [value["text"]] if value.get("type") == "mrkdwn" else []
            return own + [t for v in value.values() for t in mrkdwn(v)]
        if isinstance(value, list):
            return [t for v in value for t in mrkdwn(v)]
        return []

    assert all("<!channel>" not in t for t in mrkdwn(message["blocks"]))
    driver.command("list")
    listing = driver.wait_reply(WAIT)
    assert "*&lt;!channel&gt;*" in body(listing) and "<!channel>" not in said(listing)

    driver.command("start <@U123>")
    second = wait_until(lambda: len(top_level(slack, channel)) == 2 and top_level(slack, channel)[1])
    assert second["text"].startswith("&lt;@U123&gt; rollout: Internal Testing, step internal")
    assert all("<@U123>" not in t for t in mrkdwn(second["blocks"]))


def test_refusals_escape_the_feature_name_too(driver: SlackDriver, slack: LocalSlack, channel: str) -> None:
    driver.command("start <!channel>")
    status_post(slack, channel)
    driver.command("start <!channel>")
    duplicate = driver.wait_reply(WAIT)
    assert "already has an open rollout" in body(duplicate)
    driver.command("status <!here>")
    unknown = driver.wait_reply(WAIT)
    assert "There is no rollout called" in body(unknown)
    for reply in (duplicate, unknown):
        assert "<!channel>" not in said(reply) and "<!here>" not in said(reply)


# -- the start form ----------------------------------------------------------------------


def opened_form(slack: LocalSlack, channel: str) -> Params:
    call = slack.wait_for(
        "views.open", lambda c: channel in (c.params.get("view") or {}).get("private_metadata", ""), WAIT
    )[-1]
    assert call.params["trigger_id"]
    return call.params["view"]


def test_start_alone_opens_a_form_and_submitting_it_starts_the_rollout(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    response = driver.command("start")
    assert response.status == 200
    view = opened_form(slack, channel)
    assert view["callback_id"] == "start_rollout"
    fields = {b["block_id"]: b["element"]["type"] for b in view["blocks"] if b["type"] == "input"}
    assert fields == {
        "start_feature": "plain_text_input",
        "start_template": "static_select",
        "start_owner": "users_select",
        "start_stakeholders": "multi_conversations_select",
        "start_flag": "plain_text_input",
    }
    template_select = next(b["element"] for b in view["blocks"] if b["block_id"] == "start_template")
    assert template_select["initial_option"]["value"] == "standard"
    assert {o["value"] for o in template_select["options"]} >= {
        "standard",
        "backend",
        "conservative",
        "aggressive",
    }
    owner_select = next(b["element"] for b in view["blocks"] if b["block_id"] == "start_owner")
    assert owner_select["initial_user"] == driver.user_id

    answer = driver.submit_view(
        view,
        {
            "start_feature": "modal-checkout",
            "start_template": "backend",
            "start_owner": ANA,
            "start_stakeholders": ["C0LAUNCH"],
            "start_flag": "modal_flag",
        },
    )
    assert answer.status == 200
    assert answer.body in ("", "{}") or not answer.json().get("errors")

    message = status_post(slack, channel)
    rollout = wait_rollout(bot_db, driver.team_id, "modal-checkout")
    assert (rollout.template, rollout.owner_id, rollout.created_by) == ("backend", ANA, driver.user_id)
    assert (rollout.stakeholder_channels, rollout.flag_key, rollout.channel_id) == (
        ["C0LAUNCH"],
        "modal_flag",
        channel,
    )
    assert "500 users" in steps_text(message)
    assert [o["value"] for o in options(message)] == [str(i.id) for i in items_of(bot_db, rollout.id)]


def test_the_form_refuses_a_name_over_80_characters_in_place(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    driver.command("start")
    answer = driver.submit_view(opened_form(slack, channel), {"start_feature": "y" * 81})
    assert answer.status == 200
    assert answer.json() == {
        "response_action": "errors",
        "errors": {"start_feature": "the feature name is 81 characters; the limit is 80"},
    }
    assert the_rollout(bot_db, driver.team_id, "y" * 81) is None


def test_the_form_with_a_taken_name_answers_ephemerally(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    started(driver, slack, bot_db, "taken", "taken")
    driver.command("start")
    driver.submit_view(opened_form(slack, channel), {"start_feature": "TAKEN"})
    ephemeral = slack.wait_for(
        "chat.postEphemeral",
        lambda c: c.params.get("channel") == channel and c.params.get("user") == driver.user_id,
        WAIT,
    )[0].params
    assert "*taken* already has an open rollout" in body(ephemeral)
    assert len(top_level(slack, channel)) == 1


def test_the_form_in_a_private_channel_still_tells_the_person_to_invite_the_bot(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    slack.set_not_in_channel(channel, private=True)
    driver.command("start")
    view = opened_form(slack, channel)
    # Slack will not show the bot's ephemeral messages in a private channel it cannot see.
    slack.fail_next("chat.postEphemeral", error="channel_not_found")
    try:
        driver.submit_view(view, {"start_feature": "private-form"})
        told = slack.wait_for(
            "chat.postMessage",
            lambda c: c.params.get("channel") == driver.user_id and "/invite @Rollout Bot" in body(c.params),
            timeout=3,
        )
        assert told
        assert the_rollout(bot_db, driver.team_id, "private-form") is None
    finally:
        _use_up_injected_failure(slack, "chat.postEphemeral", channel)


def _use_up_injected_failure(slack: LocalSlack, method: str, channel: str) -> None:
    """A failure the bot never ran into must not hit the next test's call."""
    if any(c.params.get("channel") == channel for c in slack.calls(method)):
        return
    request = urllib.request.Request(
        slack.api_url + method,
        data=urlencode({"channel": "C0DRAIN", "user": "U0DRAIN", "text": "drain"}).encode(),
        headers={"Authorization": "Bearer xoxb-test-token", "Content-Type": FORM},
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


# -- several rollouts in one channel -----------------------------------------------------


def test_with_several_rollouts_the_bot_asks_which_one_with_buttons(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    alpha, _ = started(driver, slack, bot_db, "alpha", "alpha")
    driver.command("start beta backend")
    beta = wait_rollout(bot_db, driver.team_id, "beta")
    wait_until(lambda: status_ref(bot_db, beta.id), what="beta's status message")

    driver.command("status")
    question = driver.wait_reply(WAIT)
    assert question["response_type"] == "ephemeral"
    assert body(question) == "This channel has 2 open rollouts. Which one?"
    buttons = [e for b in question["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"], b["text"]["text"]) for b in buttons] == [
        (f"pick_rollout:{alpha.id}", f"status:{alpha.id}", "alpha"),
        (f"pick_rollout:{beta.id}", f"status:{beta.id}", "beta"),
    ]

    answer = click_and_reply(
        driver, slack, {**question, "ts": "1700000000.000001"}, f"pick_rollout:{beta.id}"
    )
    assert answer["response_type"] == "ephemeral"
    assert "Now: *Canary*, step *1%*" in said(answer)  # beta's (backend) plan, not alpha's
    assert "Internal Testing" not in said(answer)


def test_a_picked_rollout_of_another_workspace_is_not_shown(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    secret, _ = started(driver, slack, bot_db, "secret-project", "secret-project")
    outsider = SlackDriver(
        driver.url.removesuffix("/slack/events"),
        driver.signing_secret,
        slack,
        team_id="T0EVIL" + uuid.uuid4().hex[:4].upper(),
        channel_id=channel,
    )
    forged = {
        "ts": "1700000000.000002",
        "blocks": [
            {
                "type": "actions",
                "block_id": "pick",
                "elements": [
                    {
                        "type": "button",
                        "action_id": f"pick_rollout:{secret.id}",
                        "value": f"status:{secret.id}",
                        "text": {"type": "plain_text", "text": "x"},
                    }
                ],
            }
        ],
    }
    answer = click_and_reply(outsider, slack, forged, f"pick_rollout:{secret.id}")
    assert "does not exist any more" in body(answer)
    assert "secret-project" not in said(answer)


# -- channels the bot is not in ----------------------------------------------------------


def test_in_a_public_channel_the_bot_joins_and_posts(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    slack.set_not_in_channel(channel)
    rollout, message = started(driver, slack, bot_db, "join-me", "join-me")
    joins = [c for c in slack.calls("conversations.join") if c.params.get("channel") == channel]
    assert len(joins) == 1
    posts = [c for c in slack.calls("chat.postMessage") if c.params.get("channel") == channel]
    assert posts[0].at <= joins[0].at <= posts[1].at  # refused, joined, posted
    assert status_ref(bot_db, rollout.id).ts == message["ts"]
    assert rollout.status is RolloutStatus.ACTIVE


def test_in_a_private_channel_the_bot_asks_to_be_invited_and_leaves_nothing(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    slack.set_not_in_channel(channel, private=True)
    stakeholders = "C0STAKE" + uuid.uuid4().hex[:4].upper()

    driver.command(f"start hidden-launch --stakeholders <#{stakeholders}|leads>")
    reply = driver.wait_reply(WAIT)

    assert reply["response_type"] == "ephemeral"
    assert "/invite @Rollout Bot" in body(reply)
    assert f"<#{channel}>" in body(reply)
    assert "Traceback" not in said(reply)
    assert the_rollout(bot_db, driver.team_id, "hidden-launch") is None
    with bot_db.reading() as session:
        assert session.scalars(select(Rollout).where(Rollout.team_id == driver.team_id)).all() == []
    assert slack.messages(channel) == []

    # The name is free again: after the invite it can be started (here, in a public channel).
    elsewhere = "C0PUB" + uuid.uuid4().hex[:6].upper()
    driver.command("start hidden-launch", channel=elsewhere)
    status_post(slack, elsewhere)
    assert wait_rollout(bot_db, driver.team_id, "hidden-launch").channel_id == elsewhere
    # The discarded start never told its stakeholders anything.
    assert [c for c in slack.calls("chat.postMessage") if c.params.get("channel") == stakeholders] == []


# -- HTTP --------------------------------------------------------------------------------


def test_a_bad_signature_is_refused(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    body = urlencode(
        {
            "command": "/rollout",
            "text": "start forged",
            "team_id": driver.team_id,
            "channel_id": channel,
            "user_id": "U0EVE",
            "response_url": slack.response_url("forged"),
            "trigger_id": "1.2.3",
        }
    )
    assert driver.post_raw(body, FORM, signature="v0=" + "0" * 64).status == 401
    assert driver.post_raw(body, FORM, headers={"X-Slack-Signature": ""}).status == 401


def test_a_stale_timestamp_is_refused(
    driver: SlackDriver, slack: LocalSlack, channel: str, bot_db: Database
) -> None:
    body = urlencode(
        {
            "command": "/rollout",
            "text": "start replayed",
            "team_id": driver.team_id,
            "channel_id": channel,
            "user_id": "U0EVE",
            "response_url": slack.response_url("replayed"),
            "trigger_id": "1.2.3",
        }
    )
    # Correctly signed, but ten minutes old: a replay.
    assert driver.post_raw(body, FORM, timestamp=int(time.time()) - 600).status == 401
    assert the_rollout(bot_db, driver.team_id, "replayed") is None
    # The same request signed now is accepted.
    assert driver.post_raw(body, FORM).status == 200


def test_healthz_reports_the_database(bot_server: BotProcess, bot_db: Database) -> None:
    with urllib.request.urlopen(f"{bot_server.url}/healthz", timeout=5) as answer:
        assert answer.status == 200
        assert json.loads(answer.read()) == {"status": "ok", "database": bot_db.dialect}


@pytest.mark.postgres
def test_healthz_fails_when_the_database_is_gone(
    slack: LocalSlack, datadog: FakeDatadog, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A bot on a Postgres database of its own, dropped under it: /healthz says so (503)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from storage.db import normalize_url
    from storage.migrate import upgrade
    from tests.conftest import POSTGRES_URL, _admin_conninfo

    if not POSTGRES_URL:
        pytest.skip("needs TEST_POSTGRES_URL")
    name = f"rollout_health_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(normalize_url(POSTGRES_URL)).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    bot = BotProcess(bot_env(url, slack, datadog), tmp_path / "bot.log").start()
    try:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        try:
            with urllib.request.urlopen(f"{bot.url}/healthz", timeout=10) as answer:
                status, body = answer.status, answer.read()
        except HTTPError as error:
            status, body = error.code, error.read()
        assert status == 503
        assert json.loads(body) == {"status": "error", "database": "unreachable"}
    finally:
        bot.kill(signal.SIGKILL)  # nothing of it is worth a graceful stop
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
