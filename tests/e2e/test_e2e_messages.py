"""Messages people act on, through the running bot (signed requests, the local Slack recording
every call): one full rollout told to its channel and a stakeholder channel, and a refusal
that becomes a way in.

What holds for every rollout, checked on what the bot really posted:
- every stakeholder post stands alone: it names who (a person, or Rollout Bot) and links to
  the status thread (the status message's permalink);
- one event is one message per channel: a fired trigger is one alert in the status thread,
  broadcast to the channel, not a thread post, a channel post and a pause line;
- a phase left past a closed gate shows as skipped by override, never done;
- a rollback is one state line that says who, when and why.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.delivery.outbox import METADATA_EVENT
from storage.enums import EventKind
from storage.models import Approver, DueJob
from tests.e2e.test_e2e_announcements import announcements, key_of, new_channel, start, wait_announced
from tests.e2e_rollouts import Scenario, buttons, new_user, steps_text, texts
from tests.support import body, wait_until

pytestmark = pytest.mark.e2e

Params = dict[str, Any]
# The due-job tick (the trigger watch) runs every 30 s in the test bot.
WATCHED_WITHIN = 60.0
EMOJI = re.compile(r":[a-z0-9_+-]+:")


def shown(message: Params) -> str:
    """What a person reads in Slack: the text of the message's blocks."""
    return "\n".join(texts(message))


def permalink(sc: Scenario) -> str:
    """The status message's permalink, as the local Slack answers chat.getPermalink."""
    return f"https://example.slack.com/archives/{sc.channel}/p{sc.status_ts().replace('.', '')}"


def post_call(sc: Scenario, message: Params) -> Params:
    """The chat.postMessage call that posted `message` (its dedupe key)."""
    key = key_of(message)
    return next(
        c.params
        for c in sc.slack.calls("chat.postMessage")
        if ((c.params.get("metadata") or {}).get("event_payload") or {}).get("key") == key
    )


def watch_now(sc: Scenario) -> None:
    """Makes the rollout's trigger watch due now, as if its 10 minutes had passed."""
    with sc.db.transaction() as s:
        s.execute(
            update(DueJob)
            .where(DueJob.rollout_id == sc.rollout_id, DueJob.kind == "watch")
            .values(due_at=datetime.now(UTC))
        )


@pytest.fixture
def stake() -> str:
    return new_channel()


@pytest.fixture
def sc(driver: Any, slack: Any, datadog: Any, bot_db: Any, channel: str) -> Scenario:
    return Scenario(driver, slack, datadog, bot_db, channel, feature="msg-" + channel.lower())


def test_one_rollout_is_told_once_per_event_with_who_why_and_a_link(sc: Scenario, stake: str) -> None:
    owner = sc.owner
    start(sc, stake)
    line = wait_announced(sc.slack, stake, "Rollout started")
    assert line["text"] == f"Rollout started: {sc.feature}, first step 5%"  # the push text: plain
    assert shown(line) == (
        f":rocket: *{sc.feature}* rollout started by <@{owner}> (owner) with the Aggressive rollout "
        f"plan. First step: 5%. Next: 50% of Gradual Rollout once the gate passes. "
        f"Details: <{permalink(sc)}|status thread>"
    )
    # The next advance leaves Canary Release: its exit criteria wait on the owner.
    status = sc.status_message()
    assert f"Waiting on <@{owner}>: 2 exit criteria" in steps_text(status)

    # A blocked advance, then "Advance anyway": the form says where to and past what.
    blocked = sc.advance()
    sc.click({**blocked, "ts": "1700000000.000001"}, "advance_anyway")
    view = sc.opened_view("advance_override")
    intro = view["blocks"][0]["text"]["text"]
    assert intro.startswith(
        f"Advance *{sc.feature}* from *5%* to *50%* of *Gradual Rollout*, past a closed gate.\nThis overrides:\n"
    )
    assert "• Exit criterion not checked: Error rate within acceptable threshold." in intro
    assert "*Canary Release* will show as skipped by override ⚠, not done." in intro
    sc.driver.submit_view(view, {"reason": "internal staff only at 5%"})

    thread = wait_announced(sc.slack, sc.channel, "Advanced past a closed gate")
    assert thread["text"] == (
        f"Advanced past a closed gate: {sc.feature} now at 50% of Gradual Rollout: internal staff only at 5%"
    )
    assert "*Canary Release* is skipped by override ⚠, not done." in shown(thread)
    assert "Overridden:\n• Exit criterion not checked: Error rate within acceptable threshold.\n• " in shown(
        thread
    )
    status = sc.wait_status("Now: *Gradual Rollout*, step *50%*")
    assert ":warning: _skipped by override_ *Canary Release*: 5% (skipped by override ⚠)" in steps_text(
        status
    )
    assert "~5%~" not in steps_text(status)  # never struck through as done
    overridden = wait_announced(sc.slack, stake, "Advanced past a closed gate")
    assert f"moved to 50% by <@{owner}> past a closed gate (" in shown(overridden)
    assert "Reason: “internal staff only at 5%”." in shown(overridden)

    # On-call, no approver, pauses: the safe direction is open to anyone, and recorded.
    oncall = new_user()
    sc.command(f"pause {sc.feature} checkout errors paging", user=oncall)
    assert sc.events(EventKind.PAUSED) == [
        (EventKind.PAUSED, oncall, {"step": "50%", "reason": "checkout errors paging"})
    ]
    assert f"Paused by <@{oncall}> at *Gradual Rollout*, step *50%*" in steps_text(
        sc.wait_status("Paused by")
    )
    paused = wait_announced(sc.slack, stake, "Paused:")
    assert f"paused at 50% by <@{oncall}>. Why: checkout errors paging. Next: <@{owner}> resumes" in shown(
        paused
    )
    sc.command(f"resume {sc.feature}")
    sc.wait_status("Now: *Gradual Rollout*, step *50%*")

    # A rollback trigger fires: one alert in the thread, broadcast, with what to do next.
    sc.datadog.set_value(sc.errors_match, 3.5)
    watch_now(sc)
    alert = wait_announced(sc.slack, sc.channel, "Rollback trigger fired", timeout=WATCHED_WITHIN)
    assert alert["thread_ts"] == sc.status_ts()
    assert post_call(sc, alert)["reply_broadcast"] is True and alert["subtype"] == "thread_broadcast"
    assert alert["text"] == f"Rollback trigger fired: Error rate on {sc.feature}, paused"
    assert shown(alert).startswith(
        f":rotating_light: Rollback trigger fired on *{sc.feature}* at 50%:\n• *Error rate*"
    )
    assert shown(alert).endswith(f"<@{owner}>")
    assert [a for a, _ in buttons(alert)] == ["resume", "rollback", "open_datadog:0"]
    [link] = [e for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"] if "url" in e]
    assert link["action_id"] == "open_datadog:0" and link["text"]["text"] == "Open Error rate in Datadog"
    assert link["url"].startswith(
        "https://app.datadoghq.com/metric/explorer?exp_metric=trace.http.request.errors"
    )
    cause = wait_announced(sc.slack, stake, "rollback trigger fired")
    assert "paused at 50% by Rollout Bot. Why: rollback trigger fired: Error rate (" in shown(cause)

    # Roll back: the answer says what happened; the status message says it once, with who/when/why.
    answer = sc.command(f"rollback {sc.feature} error rate doubled")
    assert body(answer) == (
        f":rewind: Rolled back *{sc.feature}* from 50%. The status thread and stakeholders are told. "
        "Reason: error rate doubled"
    )
    status = sc.wait_status("Rolled back by")
    state = steps_text(status)
    assert state.startswith(
        f":rewind: Rolled back by <@{owner}> at *Gradual Rollout*, step *50%*, <!date^"
    ) and state.split("\n")[0].endswith(". Reason: error rate doubled.")
    assert shown(status).count("Rolled back") == 1
    assert ":rewind: _rolled back_ *Gradual Rollout*: 50% (stopped here) → 100% (not reached)" in state
    rolled = wait_announced(sc.slack, stake, "Rolled back:")
    assert f"rolled back from 50% by <@{owner}>. Why: error rate doubled." in shown(rolled)

    # Every stakeholder post stands alone: who, and the link to the status thread.
    posts = announcements(sc.slack, stake)
    assert (
        len(posts) == 6
    )  # started, overridden, paused by on-call, resumed, paused by the trigger, rolled back
    for post in posts:
        assert "<@" in shown(post) or "Rollout Bot" in shown(post), shown(post)
        assert shown(post).endswith(f"<{permalink(sc)}|status thread>"), shown(post)
        assert len(post["text"]) <= 120 and "*" not in post["text"] and not EMOJI.search(post["text"])

    # One event, one message per channel: no key twice, nothing at the top of the rollout's
    # channel but the status message, and the trigger's pause is told by its alert alone.
    keys = [key_of(m) for m in announcements(sc.slack, sc.channel)]
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    assert [m for m in sc.slack.messages(sc.channel) if "thread_ts" not in m] == [sc.status_message()]
    trigger_pause = sc.events(EventKind.PAUSED)[-1]
    assert trigger_pause[1] is None
    pauses_in_thread = [k for k in keys if k and k.split(":")[1] == "paused"]
    assert len(pauses_in_thread) == 1  # on-call's pause; the trigger's is the alert
    metadata = [post_call(sc, m)["metadata"]["event_type"] for m in posts]
    assert set(metadata) == {METADATA_EVENT}


def test_a_refusal_leads_to_the_owner_and_anyone_may_pause(sc: Scenario) -> None:
    owner = sc.owner
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.start("aggressive")
    stranger = new_user()

    refused = sc.command(f"advance {sc.feature}", user=stranger)
    assert "approvers add @you" not in body(refused)
    assert f"Request access and I ask <@{owner}> for you" in body(refused)
    assert buttons(refused) == [("request_access", str(sc.rollout_id))]

    _, path = sc.click({**refused, "ts": "1700000000.000002"}, "request_access", user=stranger)
    [asked] = sc.posts_to(path)
    assert body(asked) == f":key: Asked <@{owner}> in the status thread of *{sc.feature}*."
    request = wait_announced(sc.slack, sc.channel, "Access requested")
    assert request["thread_ts"] == sc.status_ts()
    assert (
        shown(request)
        == f":key: Access requested: <@{stranger}> asks to be an approver of *{sc.feature}* (refused: advance). "
        f"<@{owner}>, one click adds them."
    )
    assert buttons(request) == [("approver_add", f"{sc.rollout_id}:{stranger}")]

    # Asking again the same day posts nothing more.
    _, path = sc.click({**refused, "ts": "1700000000.000003"}, "request_access", user=stranger)
    [again] = sc.posts_to(path)
    assert "You already asked" in body(again)
    assert len([m for m in announcements(sc.slack, sc.channel) if "Access requested" in m["text"]]) == 1

    # The owner adds them with one click; the request becomes its answer.
    _, path = sc.click(request, "approver_add")
    [granted] = sc.posts_to(path)
    assert granted["replace_original"] is True
    assert shown(granted) == f":key: Approver added to *{sc.feature}*: <@{stranger}>, by <@{owner}>."
    with sc.db.reading() as s:
        approvers = list(s.scalars(select(Approver.user_id).where(Approver.rollout_id == sc.rollout_id)))
    assert approvers == [stranger]
    assert [(k, who) for k, who, _ in sc.events(EventKind.ACCESS_REQUESTED, EventKind.APPROVER_ADDED)] == [
        (EventKind.ACCESS_REQUESTED, stranger),
        (EventKind.APPROVER_ADDED, owner),
    ]

    # Anyone in the channel may pause; only steerers resume.
    passerby = new_user()
    sc.command(f"pause {sc.feature}", user=passerby)
    assert sc.where()[0] == "paused"
    refused_resume = sc.command(f"resume {sc.feature}", user=passerby)
    assert body(refused_resume).startswith(":no_entry_sign: Only the owner")


def test_an_untick_shows_who_took_the_tick_away(sc: Scenario) -> None:
    sc.datadog.set_value(sc.errors_match, 1.0)
    sc.start("aggressive")
    status = sc.status_message()
    boxes = [
        o
        for b in status["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        for o in e.get("options", [])
    ]
    item = boxes[0]["value"]
    sc.driver.toggle(status, item)
    ticked = wait_until(
        lambda: any(f"<@{sc.owner}> ·" in json.dumps(u, ensure_ascii=False) for u in sc.status_updates())
    )
    assert ticked

    colleague = new_user()
    sc.driver.toggle(sc.status_message(), item, user=colleague)
    unticked = wait_until(
        lambda: next((u for u in sc.status_updates() if f"unticked by <@{colleague}>" in json.dumps(u)), None)
    )
    assert unticked
    assert [(k, who) for k, who, _ in sc.events(EventKind.ITEM_UNCHECKED)] == [
        (EventKind.ITEM_UNCHECKED, colleague)
    ]
