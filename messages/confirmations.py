"""The answers to a person's own command or click: what they did, in one line that opens with
the event ("⏸ *checkout-v2* paused."), the state's own symbol from messages/symbols.py
(✅ means "passed" and nothing else), and a note when the status message could not follow.

Data in, messages out: the edge calls the use case and hands these functions the result, so
every answer the bot can give is rendered here and recorded in tests/messages/kinds.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from messages.blocks import Message, text_message
from messages.text import escape, local_time

# The state's own symbol (messages/symbols.py).
DONE_MARK = {
    "paused": ":double_vertical_bar:",
    "resumed": ":arrow_forward:",
    "rolled back": ":rewind:",
    "completed": ":tada:",
}


def done(feature: str, verb: str, reason: str = "", note: str = "") -> Message:
    """Paused, resumed, completed: "⏸ *checkout-v2* paused. Reason: …"."""
    why = f" Reason: {escape(reason)}" if reason else ""
    mark = DONE_MARK.get(verb, ":heavy_check_mark:")
    return text_message(f"{mark} *{escape(feature)}* {verb}.{why}{note}")


def rolled_back(
    feature: str, step: str, *, flag_key: str | None, told_stakeholders: bool, reason: str, note: str = ""
) -> Message:
    """A rollback, in full: from where, the flag, who was told."""
    flag = f" Flag `{escape(flag_key)}` is at 0%." if flag_key else ""
    told = (
        " The status thread and stakeholders are told."
        if told_stakeholders
        else " The status thread is told."
    )
    why = f" Reason: {escape(reason)}" if reason else ""
    return text_message(
        f":rewind: Rolled back *{escape(feature)}* from {escape(step)}.{flag}{told}{why}{note}"
    )


def rolled_back_flag_stuck(feature: str, flag_key: str, where: str, problem: str, note: str = "") -> Message:
    """Rolled back, but the flag service did not take the write: as loud as we can. `where` is
    already mrkdwn (the provider, linked when it has a page)."""
    return text_message(
        f":rotating_light: *{escape(feature)}* is rolled back, *but flag `{escape(flag_key)}` is not at 0%*: "
        f"{where} said {escape(problem or 'nothing')}. Users may still get the feature. "
        f"I keep retrying every minute until it lands; turn it off by hand if you can.{note}"
    )


def update_sent(feature: str) -> Message:
    return text_message(f":mega: Update on *{escape(feature)}* sent to its thread and stakeholders.")


def measuring_baseline(feature: str) -> Message:
    return text_message(f":hourglass_flowing_sand: Measuring the baseline of *{escape(feature)}*…")


def baseline_stored(feature: str) -> Message:
    return text_message(f":straight_ruler: New baseline stored for *{escape(feature)}*.")


def digest_set(feature: str, described: str) -> Message:
    return text_message(f":calendar: Digest for *{escape(feature)}*: {described}.")


def template_removed(name: str) -> Message:
    return text_message(f":wastebasket: Template `{escape(name)}` removed.")


def access_rules(feature: str, described: str, *, changed: bool) -> Message:
    """Who may tick exit criteria and send updates: as asked, or as just set."""
    del changed  # the same words either way: the rules as they stand now
    return text_message(f":key: *{escape(feature)}*: {escape(described)}.")


def approvers_list(feature: str, owner: str, approvers: Sequence[str]) -> Message:
    names = ", ".join(f"<@{a}>" for a in approvers) or "none yet"
    return text_message(
        f":key: *{escape(feature)}*: owner <@{owner}>, approvers {names}. Anyone may pause; "
        "the owner and approvers advance, resume and roll back."
    )


def approver_changed(feature: str, user: str, *, added: bool) -> Message:
    verb = "is now an approver of" if added else "is no longer an approver of"
    return text_message(f":key: <@{user}> {verb} *{escape(feature)}*.")


def flag_applied(words: str, note: str = "") -> Message:
    return text_message(f":heavy_check_mark: {escape(words)}: the plan's percentage is on the flag.{note}")


def flag_kept(feature: str, flag_key: str, percent: float, note: str = "") -> Message:
    return text_message(
        f":heavy_check_mark: Flag `{escape(flag_key)}` of *{escape(feature)}* stays at "
        f"{percent:g}%; I will not warn about it again at this step.{note}"
    )


def advanced_anyway(from_title: str, to_title: str, reason: str, note: str = "") -> Message:
    return text_message(
        f":warning: Advanced anyway from {escape(from_title)} to *{escape(to_title)}*. "
        f"Reason: {escape(reason)}{note}"
    )


def auto_set(feature: str, *, on: bool, state: str = "", note: str = "") -> Message:
    """`state` is mrkdwn (bot.usecases.autopilot.describe): a time as a date token, names escaped."""
    words = (
        f"auto-advance is on: it moves by itself when the soak is met and the gate is fully green ({state})"
        if on
        else "auto-advance is off: people advance it"
    )
    return text_message(f":robot_face: *{escape(feature)}*: {words}.{note}")


def team_hours(said: str) -> Message:
    return text_message(f":clock9: Advances in this workspace may happen: {escape(said)}.")


def rollout_hours(
    feature: str, hours: str | None, *, tz: str, now: datetime, inherited: bool = False, note: str = ""
) -> Message:
    """A rollout's own advance hours, in its zone's abbreviation (never an IANA name):
    "Mon–Fri 09:00–17:00 PST, not on public holidays"; `inherited`: it follows the workspace's."""
    if hours:
        zone = local_time(now, tz, with_zone=True).rsplit(" ", 1)[-1]
        said = f"{hours} {zone}, not on public holidays"
    else:
        said = "its workspace's hours" if inherited else "any time"
    return text_message(f":clock9: *{escape(feature)}* advances: {escape(said)}.{note}")


def freeze_added(freeze_id: int, name: str, first: date, last: date, feature: str | None) -> Message:
    """The days as `/rollout freeze add` takes them (2026-12-21), so the answer can be typed back."""
    whom = f" of *{escape(feature)}*" if feature else ""
    return text_message(
        f":snowflake: Freeze {freeze_id} “{escape(name)}”: no advance{whom} from {first} to "
        f"{last} (whole days, in each rollout's time zone)."
    )


def freeze_removed(freeze_id: int) -> Message:
    return text_message(f":wastebasket: Freeze {freeze_id} removed.")


def freezes(rows: Sequence[tuple[int, str, date, date, str | None]]) -> Message:
    """`rows`: (id, name, first day, last day, the one feature it holds or None)."""
    lines = [
        f"• {i}: “{escape(name)}” {first} → {last}" + (f" (only *{escape(feature)}*)" if feature else "")
        for i, name, first, last, feature in rows
    ] or ["none"]
    return text_message(":snowflake: *Freezes*\n" + "\n".join(lines))


def checkpoints_set(phases: bool) -> Message:
    words = (
        "auto-advance stops for a person at every phase boundary"
        if phases
        else "auto-advance stops only at steps the plan marks `manual`"
    )
    return text_message(f":raised_hand: In this workspace {words}.")


def exported(feature: str, charts: int, missing: str) -> Message:
    pictures = f" with {charts} chart{'s' if charts != 1 else ''}" if charts else ""
    note = f" The charts are missing: {escape(missing)}." if missing else ""
    return text_message(f":page_facing_up: Exported *{escape(feature)}*{pictures} into its thread.{note}")


def slack_refused(code: str) -> Message:
    return text_message(f":warning: Slack refused the request ({escape(code)}). Nothing else was changed.")


def went_wrong(ref: str) -> Message:
    return text_message(
        f":warning: Something went wrong on my side (ref `{escape(ref)}`). "
        "The status message shows the rollout as it is now; try again in a moment."
    )


def access_requested(owner: str, feature: str) -> Message:
    return text_message(f":key: Asked <@{owner}> in the status thread of *{escape(feature)}*.")


MAX_PROBLEMS_SHOWN = 15


def _problems(problems: Sequence[tuple[int, str]]) -> list[str]:
    """A plan document's lines that could not be read: (line number, why)."""
    lines = [f"• line {line}: {escape(reason)}" for line, reason in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"• … and {len(problems) - MAX_PROBLEMS_SHOWN} more")
    return lines


def import_refused(name: str, reasons: Sequence[str], problems: Sequence[tuple[int, str]]) -> Message:
    """Nothing stored: one plan of the document cannot run, so none of it is imported."""
    found = _problems(problems)
    return text_message(
        f":no_entry_sign: Nothing was imported: `{escape(name)}` is not a plan I can run.\n"
        + "\n".join(f"• {escape(reason)}" for reason in reasons)
        + ("\nWhat I could not read:\n" + "\n".join(found) if found else "")
    )


def imported(plans: Sequence[tuple[bool, str, int, str, Sequence[tuple[int, str]]]]) -> Message:
    """`plans`: (replaced an existing template, its name, how many phases, its steps in order,
    the lines that could not be read) per plan of the document."""
    lines = []
    for replaced, name, phases, steps, problems in plans:
        verb = "Replaced" if replaced else "Imported"
        lines.append(f":page_facing_up: {verb} template `{escape(name)}`: {phases} phases, {escape(steps)}.")
        lines += _problems(problems)
    lines.append("Start a rollout with it: `/rollout start <feature> <template>`.")
    return text_message("\n".join(lines))


def templates_list(rows: Sequence[tuple[str, str, str | None, bool]]) -> Message:
    """`rows`: (name, title, who imported it: a user id, "" for an operator, None when built in,
    whether it can be read)."""
    lines = []
    for name, title, imported_by, usable in rows:
        if imported_by is None:
            who = "built in"
        else:
            who = f"imported by <@{imported_by}>" if imported_by else "imported by an operator"
        damaged = " :warning: cannot be read; import it again" if not usable else ""
        lines.append(f"• `{escape(name)}`: {escape(title)} ({who}){damaged}")
    return text_message(":page_facing_up: *Plan templates*\n" + "\n".join(lines))
