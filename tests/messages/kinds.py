"""Every kind of message the bot posts, rendered from the fixed read models of samples.py:
what the snapshot tests record and the style tests hold to messages/STYLE.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from bot.domain.plans import template_names
from bot.edge.answers import message_for, usage_message
from bot.edge.parsing import USAGES
from bot.errors import RolloutError, UsageError
from messages import flag_texts, render
from messages.announcements import milestone
from messages.autopilot import closed_answer
from messages.blocks import Message, behind, choose_rollout, status_message, text_message
from messages.digest import digest, reminder, trigger_alert, trigger_undecided
from messages.gate import checking, gate_report
from messages.help import help_message
from messages.metric_modal import metrics_saved, nothing_changed
from messages.timeline import timeline_message
from messages.views import TimelineView
from tests.messages import samples as s

RULE = "fires when error rate rises more than 0.5 pp (absolute)"
REASON = "+0.9 pp vs baseline (1% → 1.9%), beyond the allowed +0.5 pp"


def _milestones() -> dict[str, Callable[[], Message]]:
    out: dict[str, Callable[[], Message]] = {}
    cases = {
        "started": (s.rollout(), {"actor": "U_OWNER"}),
        "advanced": (
            s.rollout(phase=1),
            {"actor": "U_OWNER", "phase_done": "Internal Testing", "override": False, "blockers": []},
        ),
        "advanced_override": (
            s.rollout(phase=1),
            {
                "actor": "U_OWNER",
                "phase_done": "Internal Testing",
                "override": True,
                "reason": "QA signed off by phone",
                "blockers": ["Exit criterion not checked: No P1 bugs open."],
            },
        ),
        "completed": (s.rollout("completed", phase=2), {"actor": "U_OWNER"}),
        "paused": (s.rollout("paused", phase=1), {"actor": "U_OWNER", "reason": "support queue spiking"}),
        "resumed": (s.rollout(phase=1), {"actor": "U_OWNER"}),
        "rolled_back": (s.rollout("rolled_back", phase=1), {"actor": "U_OWNER", "reason": "checkout errors"}),
        "update": (s.rollout(phase=1), {"actor": "U_ANA", "text": "1% looks healthy, 5% on Tuesday"}),
    }
    for name, (view, extra) in cases.items():
        kind = "advanced" if name == "advanced_override" else name
        out[f"milestone_{name}_thread"] = lambda kind=kind, view=view, extra=extra: milestone(
            kind, view, **extra
        )[0]
        out[f"milestone_{name}_stakeholders"] = lambda kind=kind, view=view, extra=extra: milestone(
            kind, view, **extra
        )[1]
    return out


def _digest(audience: int) -> Message:
    return digest(
        s.rollout(),
        scheduled=s.NOW + timedelta(minutes=30),
        events=s.events(),
        check=s.last_check(),
        soak="internal is on day 1 of 3 business days",
        unchecked=["No P1 bugs open"],
    )[audience]


def _timeline() -> Message:
    view = TimelineView(1, "checkout-v2", s.TZ, tuple(reversed(s.events())), older=False, total=5)
    return timeline_message(view)[0]


KINDS: dict[str, Callable[[], Message]] = {
    "status_active": lambda: status_message(s.rollout(), now=s.NOW),
    "status_paused": lambda: status_message(s.rollout("paused", phase=1), now=s.NOW),
    "status_rolled_back": lambda: status_message(s.rollout("rolled_back", phase=1), now=s.NOW),
    "status_completed": lambda: status_message(s.rollout("completed", phase=2), now=s.NOW),
    "status_auto_next_check": lambda: status_message(
        replace(s.rollout(), auto_on=True, auto_due=s.NOW + timedelta(hours=2)), now=s.NOW
    ),
    "status_auto_waiting_freeze": lambda: status_message(
        replace(
            s.rollout(),
            auto_on=True,
            auto_due=s.NOW + timedelta(days=3),
            auto_why="freeze “holiday freeze” until Mon 4 Jan 00:00 PST",
        ),
        now=s.NOW,
    ),
    "advance_refused_freeze": lambda: closed_answer(
        "*checkout-v2* is not advanced now: freeze “holiday freeze” until Mon 4 Jan 00:00 PST.", "1:0:1"
    ),
    "status_read_only": lambda: status_message(
        s.rollout(), now=s.NOW, interactive=False, link="https://example.slack.com/archives/C_ROLLOUT/p1"
    ),
    "gate_checking": lambda: checking("checkout-v2", 3),
    "gate_blocked": lambda: gate_report(s.blocked()),
    "gate_advanced": lambda: gate_report(s.passed()),
    "gate_look": lambda: gate_report(s.looked()),
    "gate_rolled_back": lambda: gate_report(s.rolled_back()),
    **_milestones(),
    "digest_thread": lambda: _digest(0),
    "digest_stakeholders": lambda: _digest(1),
    "reminder_ready": lambda: reminder("ready", s.rollout(), advance=True),
    "reminder_checkpoint": lambda: reminder(
        "checkpoint", s.rollout(), advance=True, why="Full Launch is a checkpoint: the owner advances to it"
    ),
    "reminder_auto_flag_refused": lambda: reminder(
        "flag", s.rollout(), why="the flag service did not take the write: HTTP 403"
    ),
    "reminder_overdue": lambda: reminder(
        "overdue",
        s.rollout(),
        planned_end="<!date^1796284800^{date_short_pretty} {time}|Thu 3 Dec 00:00 PST>",
    ),
    "reminder_stale_running": lambda: reminder(
        "stale",
        s.rollout(),
        days=3,
        since="<!date^1796022000^{date_short_pretty} {time}|Sun 29 Nov 23:00 PST>",
    ),
    "reminder_stale_paused": lambda: reminder(
        "stale",
        s.rollout("paused"),
        days=3,
        since="<!date^1796022000^{date_short_pretty} {time}|Sun 29 Nov 23:00 PST>",
    ),
    "trigger_alert_paused": lambda: trigger_alert(
        s.rollout("paused", phase=1),
        [{"trigger": "Error rate", "reason": REASON, "rule": RULE}],
        paused=True,
        links=(("Error rate", s.DATADOG),),
    ),
    "trigger_alert_rolled_back": lambda: trigger_alert(
        s.rollout("rolled_back", phase=1),
        [{"trigger": "Error rate", "reason": REASON, "rule": RULE}],
        paused=False,
        rolled_back=True,
    ),
    "trigger_alert_only": lambda: trigger_alert(
        s.rollout(phase=1), [{"trigger": "Error rate", "reason": REASON, "rule": RULE}], paused=False
    ),
    "trigger_undecided": lambda: trigger_undecided(
        s.rollout(phase=1), trigger="Error rate", reason="baseline is 0", rule=RULE
    ),
    "flag_rollback_write_failed": lambda: flag_texts.rollback_write_failed(
        s.rollout("rolled_back", phase=1), provider="Unleash", reason="HTTP 503"
    )[0],
    "flag_write_landed": lambda: flag_texts.write_landed(
        s.rollout("rolled_back", phase=1), provider="Unleash", after=0
    ),
    "flag_drift": lambda: flag_texts.drift_alert(
        s.rollout(phase=1),
        provider="Unleash",
        plan=5,
        link="https://unleash.example.com/projects/default/features/checkout_v2",
    ),
    "help": lambda: help_message(USAGES, template_names()),
    "help_pause": lambda: help_message(USAGES, template_names(), "pause"),
    "timeline": _timeline,
    "choose_rollout": lambda: choose_rollout(
        "Which rollout? This channel has two open.", [(1, "checkout-v2"), (2, "search-v3")], "pause"
    ),
    "tick_behind": lambda: behind("ratelimited"),
    "metrics_saved": lambda: metrics_saved(
        feature="checkout-v2",
        metrics=[s.ERROR_RATE, s.LATENCY],
        triggers=[s.ERROR_TRIGGER],
        removed=[],
        need_baseline=["Latency p95"],
    ),
    "metrics_unchanged": lambda: nothing_changed("checkout-v2"),
    "list": lambda: text_message(
        render(
            "list",
            rollouts=[
                {
                    "feature": "checkout-v2",
                    "channel_id": "C_ROLLOUT",
                    "step_title": "1%",
                    "phase_name": "Canary",
                    "paused": True,
                    "owner_id": "U_OWNER",
                }
            ],
        )
    ),
    "usage_error": lambda: usage_message(UsageError("`ana` is not a Slack user", "start")),
    "refusal": lambda: message_for(
        RolloutError("{feature} is paused: `/rollout resume` it first", feature="checkout-v2")
    ),
}
