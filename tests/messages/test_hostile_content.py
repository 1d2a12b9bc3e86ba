"""Every text Slack parses is escaped: a plan whose every field was written by an attacker
(phase names, checklist items, exit criteria, metric and trigger names, reasons, updates, the
feature name itself) renders into every message the bot sends, and no raw `<!…>`, `<@…>`,
`<#…>` or `<http…>` of theirs reaches a mrkdwn field or a push text.

The bot's own mentions (`<@U_OWNER>`, `<#C1>`) are legitimate and use ids the attacker's text
does not contain; the hostile tokens carry EVIL in their ids and links."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain import rollouts
from bot.domain.gates import Observation
from bot.domain.plans.model import Metric, Phase, Plan, Rule, Step
from bot.edge.answers import message_for
from bot.errors import InvalidTransition, NotAllowed
from bot.usecases import measure, views
from messages.announcements import milestone
from messages.blocks import behind, status_message
from messages.digest import digest, reminder, trigger_alert
from messages.flag_texts import drift_alert, rollback_write_failed, write_landed
from messages.gate import checking, gate_report
from messages.home import home_view
from messages.views import Outcome
from storage import queries
from storage.db import Database
from storage.enums import EventKind

EVIL = "<!here> <!channel|@channel> <@UEVIL> <#CEVIL> <http://evil.example|click> <mailto:x@evil.example>"
RAW = ("<!here", "<!channel", "<@UEVIL", "<#CEVIL", "<http://evil", "<mailto:")
T0 = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=3)


def hostile_plan() -> Plan:
    metric = Metric(
        key="err", name=f"Error rate {EVIL}", query="q", rule=Rule.ABSOLUTE, threshold=0.1, unit="%"
    )
    trigger = Metric(key="trig", name=f"Spike {EVIL}", query="q", rule=Rule.UPPER, threshold=1.0)
    return Plan(
        name="hostile",
        title=f"Plan {EVIL}",
        phases=(
            Phase(
                name=f"Canary {EVIL}",
                steps=(Step(percent=1, label="one <!here>"), Step(percent=5)),  # labels hold 32
                tasks=(f"Task {EVIL}",),
                exit_criteria=(f"No bugs {EVIL}",),
            ),
            Phase(name=f"Wide {EVIL}", steps=(Step(percent=100),), exit_criteria=(f"Done {EVIL}",)),
        ),
        metrics=(metric,),
        triggers=(trigger,),
    )


def texts_slack_parses(node: Any, *, top: bool = True) -> Iterator[str]:
    """The top-level `text` (push notifications) and every mrkdwn text in the blocks."""
    if isinstance(node, dict):
        if top and isinstance(node.get("text"), str):
            yield node["text"]
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for key, value in node.items():
            if key != "text" or not isinstance(value, str):
                yield from texts_slack_parses(value, top=False)
    elif isinstance(node, list):
        for child in node:
            yield from texts_slack_parses(child, top=False)


def assert_clean(name: str, message: Any) -> None:
    payload = message.as_kwargs() if hasattr(message, "as_kwargs") else message
    for text in texts_slack_parses(json.loads(json.dumps(payload, default=str))):
        for raw in RAW:
            assert raw not in text, f"{name}: {raw!r} reached Slack raw in {text[:300]!r}"


@pytest.fixture
def hostile(db: Database) -> tuple[Any, ...]:
    feature = "feature <!here>"
    with db.transaction() as session:
        rollout = rollouts.new_rollout(
            hostile_plan(),
            team_id="T1",
            channel_id="C1",
            feature=feature,
            owner_id="U_OWNER",
            created_by="U_OWNER",
            flag_key="flag",
            service="web",
            stakeholders=["C_LAUNCH"],
            timezone="America/Los_Angeles",
            country="US",
            now=T0,
        )
        session.add(rollout)
        session.flush()
        for kind, data in [
            (EventKind.STARTED, {"template": EVIL}),
            (EventKind.PAUSED, {"reason": EVIL, "step": EVIL}),
            (EventKind.UPDATE_SENT, {"text": EVIL}),
            (EventKind.OVERRIDDEN, {"reason": EVIL, "from_step": EVIL, "to_step": EVIL, "blockers": [EVIL]}),
        ]:
            session.add(rollouts.event(rollout, kind, "U_OWNER", T0, **data))
        rollout_id = rollout.id
    with db.reading() as session:
        row = queries.get_rollout(session=session, rollout_id=rollout_id)
        assert row is not None
        view = views.rollout_view(row)
        events = views.event_views(queries.events(session=session, rollout_id=rollout_id))
        readings = {"err": Observation(2.0, None), "trig": Observation(5.0, None)}
        gate = measure.evaluate(row, readings, {"err": Observation(1.0, None)}, NOW)
        home = views.load_home(session=session, team_id="T1", user_id="U_OWNER", now=NOW)
    return view, events, gate, home, row


def test_no_hostile_text_reaches_slack_raw_in_any_message(hostile: tuple[Any, ...]) -> None:
    view, events, gate, home, row = hostile
    assert gate.blockers, "the gate must be closed, so its blockers are rendered"
    outcome = Outcome(
        rollout_id=view.id,
        feature=view.feature,
        tz=view.timezone,
        step_title=view.current_step.title,
        gate=gate,
        moved=None,
        override_token="1:0:0",
    )
    messages: dict[str, Any] = {
        "status": status_message(view, now=NOW),
        "status, read only": status_message(view, now=NOW, interactive=False, link="https://x.slack.com/p"),
        "gate report": gate_report(outcome, note=""),
        "snapshot": gate_report(Outcome(**{**outcome.__dict__, "snapshot_only": True})),
        "checking": checking(view.feature, 2),
        "ready": reminder("ready", view, advance=True),
        "overdue": reminder("overdue", view, planned_end="Tue 3 Mar 09:00 America/Los_Angeles"),
        "stale": reminder("stale", view, days=3, since="Mon 2 Mar 09:00 America/Los_Angeles"),
        "behind": behind(EVIL),
        "home": home_view(home),
        "drift": drift_alert(row, provider="Unleash", plan=25.0, link=None),
        "flag landed": write_landed(row, provider="Unleash", after=0.0),
        "refused": message_for(NotAllowed("{feature} {action}", feature=EVIL, action=EVIL)),
        "invalid": message_for(InvalidTransition("{feature} is paused", feature=EVIL)),
    }
    # What the digest job passes: the soak sentence names the step as the plan wrote it.
    soak = gate.soak.describe(view.current_step.title, view.timezone)
    unchecked = rollouts.unchecked_exit_criteria(row)
    thread, line = digest(view, scheduled=NOW, events=events, check=None, soak=soak, unchecked=unchecked)
    messages |= {"digest": thread, "digest line": line}
    fired = [{"trigger": EVIL, "reason": EVIL, "rule": EVIL}]
    alert = trigger_alert(
        view, fired, paused=True, links=[(EVIL, "https://app.datadoghq.com/metric/explorer")]
    )
    messages |= {"trigger alert": alert}
    failed_thread, failed_top = rollback_write_failed(row, provider="Unleash", reason=EVIL)
    messages |= {"flag write failed": failed_thread, "flag write failed, top": failed_top}
    for kind in ("started", "advanced", "completed", "paused", "resumed", "rolled_back", "update"):
        extra = {"actor": "U_OWNER", "reason": EVIL, "text": EVIL, "blockers": [EVIL], "override": True}
        thread, line = milestone(kind, view, phase_done=EVIL, **extra)
        messages |= {f"{kind}": thread, f"{kind} line": line}
    for name, message in messages.items():
        assert_clean(name, message)


def test_the_walk_finds_a_raw_mention_when_there_is_one() -> None:
    with pytest.raises(AssertionError, match="reached Slack raw"):
        assert_clean(
            "planted",
            {"text": "fine", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": EVIL}}]},
        )
