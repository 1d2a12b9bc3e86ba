"""Every kind of message the bot posts, rendered from the fixed read models of samples.py:
what the snapshot tests record and the style tests hold to messages/STYLE.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta

from bot.domain.plans import template_names
from bot.edge.answers import message_for, usage_message
from bot.edge.parsing import USAGES
from bot.errors import RolloutError, UsageError
from messages import confirmations as confirm
from messages import flag_texts, render
from messages.access import access_granted, access_request, refusal
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


# The answers to a person's own command or click (messages/confirmations.py), as the edge
# calls them; `NOTE` is what follows when the status message could not be edited.
NOTE = "\n_The status message could not be updated (ratelimited); it catches up at the next change._"
HOURS = "Mon–Fri 09:00–17:00, not on public holidays"
CONFIRMATIONS: dict[str, Callable[[], Message]] = {
    "answer_paused": lambda: confirm.done("checkout-v2", "paused", "support queue spiking"),
    "answer_resumed": lambda: confirm.done("checkout-v2", "resumed"),
    "answer_completed": lambda: confirm.done("checkout-v2", "completed", note=NOTE),
    "answer_rolled_back": lambda: confirm.rolled_back(
        "checkout-v2", "1%", flag_key="checkout_v2", told_stakeholders=True, reason="checkout errors"
    ),
    "answer_rolled_back_flag_stuck": lambda: confirm.rolled_back_flag_stuck(
        "checkout-v2", "checkout_v2", "<https://unleash.example.com/features/checkout_v2|Unleash>", "HTTP 503"
    ),
    "answer_update_sent": lambda: confirm.update_sent("checkout-v2"),
    "answer_measuring_baseline": lambda: confirm.measuring_baseline("checkout-v2"),
    "answer_baseline_stored": lambda: confirm.baseline_stored("checkout-v2"),
    "answer_digest_set": lambda: confirm.digest_set("checkout-v2", "daily at 09:30 (business days)"),
    "answer_template_removed": lambda: confirm.template_removed("backend-2"),
    "answer_access_rules": lambda: confirm.access_rules(
        "checkout-v2", "anyone may tick exit criteria; steerers send updates", changed=True
    ),
    "answer_approvers": lambda: confirm.approvers_list("checkout-v2", "U_OWNER", ["U_APPROVER"]),
    "answer_approver_added": lambda: confirm.approver_changed("checkout-v2", "U_SAM", added=True),
    "answer_flag_applied": lambda: confirm.flag_applied("Flag checkout_v2 set 1% → 5% in Unleash"),
    "answer_flag_kept": lambda: confirm.flag_kept("checkout-v2", "checkout_v2", 1),
    "answer_advanced_anyway": lambda: confirm.advanced_anyway("internal", "1%", "QA signed off by phone"),
    "answer_auto_on": lambda: confirm.auto_set(
        "checkout-v2",
        on=True,
        state="auto: next check at <!date^1796065200^{date_short_pretty} {time}|Mon 30 Nov 11:00 PST> (soak met at 11:00)",
    ),
    "answer_auto_off": lambda: confirm.auto_set("checkout-v2", on=False),
    "answer_team_hours": lambda: confirm.team_hours(HOURS),
    "answer_rollout_hours": lambda: confirm.rollout_hours(
        "checkout-v2", "Mon–Fri 09:00–17:00", tz=s.TZ, now=s.NOW
    ),
    "answer_freeze_added": lambda: confirm.freeze_added(
        3, "holiday freeze", date(2026, 12, 21), date(2027, 1, 4), None
    ),
    "answer_freeze_removed": lambda: confirm.freeze_removed(3),
    "answer_freezes": lambda: confirm.freezes(
        [(3, "holiday freeze", date(2026, 12, 21), date(2027, 1, 4), None)]
    ),
    "answer_checkpoints": lambda: confirm.checkpoints_set(True),
    "answer_exported": lambda: confirm.exported("checkout-v2", 2, ""),
    "answer_exported_charts_missing": lambda: confirm.exported(
        "checkout-v2", 0, "the charts could not be drawn"
    ),
    "answer_imported": lambda: confirm.imported(
        [(False, "backend-2", 3, "internal → 1% → 5% → 100%", [(12, "“weekly” is not a soak time")])]
    ),
    "answer_import_refused": lambda: confirm.import_refused(
        "backend-2", ["it has no phases"], [(3, "“Phase one” has no steps")]
    ),
    "answer_templates": lambda: confirm.templates_list(
        [("backend", "Backend service", None, True), ("backend-2", "Backend, two canaries", "U_ANA", False)]
    ),
    "answer_access_requested": lambda: confirm.access_requested("U_OWNER", "checkout-v2"),
    "error_slack_refused": lambda: confirm.slack_refused("channel_not_found"),
    "error_went_wrong": lambda: confirm.went_wrong("1a2b3c4d"),
    "refusal_with_request_access": lambda: refusal(
        ":no_entry_sign: Only the owner (<@U_OWNER>), approvers and workspace admins can advance "
        "*checkout-v2*. Request access and I ask <@U_OWNER> for you.",
        1,
    ),
    "access_request": lambda: access_request(1, "checkout-v2", "U_OWNER", "U_SAM", "advance"),
    "access_granted": lambda: access_granted("checkout-v2", "U_OWNER", "U_SAM"),
}


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
    **CONFIRMATIONS,
    "refusal": lambda: message_for(
        RolloutError("{feature} is paused: `/rollout resume` it first", feature="checkout-v2")
    ),
}
