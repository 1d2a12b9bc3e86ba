"""The emoji the bot writes, each with its one meaning (messages/STYLE.md keeps the same table).

A symbol that carries meaning always has words beside it ("✅ Passed", "⏸ Paused"), so a
screen reader and a skimming eye read the same thing; tests hold every rendered message to
this table, so a new emoji (or a second meaning for an old one) is a decision, not a drift.
"""

from __future__ import annotations

EMOJI: dict[str, str] = {
    ":white_check_mark:": "passed: a check, a metric or the whole gate",
    ":x:": "failed: a metric or a check",
    ":grey_question:": "no data: the metric could not be read",
    ":rotating_light:": "a rollback trigger fired, or users may still get a rolled-back feature",
    ":no_entry:": "blocked: the gate stays closed",
    ":no_entry_sign:": "not allowed, or a command that cannot run",
    ":warning:": "needs a person: skipped by override, drift, a rule that cannot be judged",
    ":heavy_check_mark:": "done: a phase or step left behind",
    ":arrow_forward:": "the current phase, or resumed",
    ":white_circle:": "ahead: a phase not reached yet",
    ":arrow_up:": "advanced to the next step",
    ":tada:": "the rollout completed",
    ":rocket:": "a rollout that runs: started, or its header",
    ":double_vertical_bar:": "paused",
    ":rewind:": "rolled back",
    ":hourglass_flowing_sand:": "working on it",
    ":bar_chart:": "a look at the metrics that moves nothing",
    ":ballot_box_with_check:": "a checklist item ticked",
    ":white_large_square:": "a checklist item not ticked",
    ":mega:": "an update posted by a person",
    ":newspaper:": "the digest",
    ":alarm_clock:": "a step past its planned end",
    ":zzz:": "no activity for a while",
    ":bell:": "ready to advance",
    ":robot_face:": "auto-advance: the bot moves the rollout on by itself when the gate is green",
    ":raised_hand:": "a checkpoint: the rollout waits for a person to advance it",
    ":snowflake:": "a freeze: no advance until it ends",
    ":straight_ruler:": "the baseline: measured, or missing",
    ":calendar:": "the digest's schedule",
    ":clock9:": "advance hours: when an advance may happen",
    ":key:": "who may act: approvers and access",
    ":wastebasket:": "removed",
    ":large_green_circle:": "active",
    ":scroll:": "the timeline",
    ":information_source:": "a note on how a form works",
    ":triangular_flag_on_post:": "the feature flag changed",
    ":page_facing_up:": "a plan document: imported or exported",
    ":chart_with_upwards_trend:": "a chart",
}


def meaning(code: str) -> str:
    """What `code` means here; KeyError for an emoji the style does not allow."""
    return EMOJI[code]
