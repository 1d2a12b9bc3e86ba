"""Block Kit for every message and modal, built with slack_sdk.models.blocks; the status
message, rendered again for every tick of a box, as plain dicts of the very shape those models
give (`_mrkdwn`, `_plain` …; the snapshots in tests/messages hold them equal): the models'
`to_dict` validated each object by reflection, most of a render's cost.

Data in, blocks out: no session, no client. Slack's limits (50 blocks, 10 options per
checkboxes element, 75 characters per option) are kept here, by chunking and truncating.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    MarkdownTextObject,
    SectionBlock,
)

from bot.ids import Action
from bot.ids import Block as BlockId
from messages.auto_status import auto_words
from messages.push import push_text
from messages.render import render
from messages.text import (
    MAX_BLOCKS,
    MAX_FALLBACK_TEXT,
    MAX_HEADER_TEXT,
    MAX_OPTION_TEXT,
    MAX_OPTIONS_PER_CHECKBOXES,
    MAX_SECTION_TEXT,
    escape,
    escaped_within,
    local_time,
    slack_time,
    truncate,
)

if TYPE_CHECKING:
    from messages.views import ItemView, PhaseView, RolloutView, StepView

STATUS_LABEL = {
    "active": ":large_green_circle: Active",
    "paused": ":double_vertical_bar: Paused",
    "rolled_back": ":rewind: Rolled back",
    "completed": ":tada: Completed",
}
# The header's symbol says the state too: a rolled-back rollout no longer shows a rocket.
HEADER_EMOJI = {
    "active": ":rocket:",
    "paused": ":double_vertical_bar:",
    "rolled_back": ":rewind:",
    "completed": ":tada:",
}


@dataclass(frozen=True)
class Message:
    """What chat.postMessage / chat.update / respond take: the push text and the blocks.

    Every message passes here, so every text is a push text (messages/push.py): plain, event
    first, short. A message built from text alone keeps its full text as its one section."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.blocks and self.text.strip():
            object.__setattr__(self, "blocks", [_section(truncate(self.text, MAX_SECTION_TEXT))])
        object.__setattr__(self, "text", push_text(self.text))

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def _dicts(blocks: Iterable[Block]) -> list[dict[str, Any]]:
    return [b.to_dict() for b in blocks]


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"text": text, "type": "mrkdwn"}


def _section(text: str) -> dict[str, Any]:
    """`SectionBlock(text=MarkdownTextObject(text=text)).to_dict()` for a text of at most
    MAX_SECTION_TEXT characters (the model raised past it; callers truncate first): the
    model's reflection was 30 of the 35 µs of a `text_message`, and a start renders two
    (its milestone's thread message and stakeholder line). The model leaves an empty text out."""
    return {"text": _mrkdwn(text) if text else {"type": "mrkdwn"}, "type": "section"}


def _plain(text: str) -> dict[str, Any]:
    return {"emoji": True, "text": text, "type": "plain_text"}


def _context(*texts: str) -> dict[str, Any]:
    return {"elements": [_mrkdwn(t) for t in texts], "type": "context"}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"action_id": action_id}
    if style:
        button["style"] = style
    return button | {"text": _plain(text), "type": "button", "value": value}


def text_message(mrkdwn: str) -> Message:
    """A plain notice; the same text is the fallback and the one section."""
    return Message(text=mrkdwn, blocks=text_blocks(mrkdwn))


def text_blocks(mrkdwn: str) -> list[dict[str, Any]]:
    """`text_message(mrkdwn).blocks`, for a message whose push text is another (a milestone's):
    without the push text of `mrkdwn`, which such a caller would throw away."""
    return [_section(truncate(mrkdwn, MAX_SECTION_TEXT))]


def step_name(step: StepView, before: StepView | None = None) -> str:
    """A step as every message names it: "25%", or a label with its share of users, so two
    steps at 100% read apart: "launch (stays at 100%)"."""
    if step.title.endswith("%") or step.percent <= 0:
        return step.title
    if before is not None and before.percent == step.percent:
        return f"{step.title} (stays at {step.percent:g}%)"
    return f"{step.title} ({step.percent:g}%)"


def _step_text(step: StepView, phase: PhaseView, rollout: RolloutView, before: StepView | None) -> str:
    """A step with its users and, in one parenthesis, its state where the phase's own mark does
    not already say it: "1% (2,000 users; stopped here)", never "(2,000 users) (done)". A
    phase's mark says done/now/ahead in words, so a one-step phase adds nothing; a step left
    behind inside the current phase says "done" in words (a strike-through reads as nothing to
    a screen reader)."""
    title = step_name(step, before)
    notes = [f"{step.desired_users:,} users"] if step.desired_users else []
    here = phase.position == rollout.phase_index and step.position == rollout.step_index
    alone = len(phase.steps) == 1
    if step.left_by_override:
        notes.append("skipped by override ⚠")
    elif here and rollout.is_open:
        if not alone:
            notes.append("now")
    elif here and rollout.status == "rolled_back":
        if not alone:
            notes.append("stopped here")
    elif step.completed_at is not None:
        if not phase.completed_at and not alone:
            notes.append("done")
    elif rollout.status == "rolled_back" and phase.position == rollout.phase_index:
        notes.append("not reached")  # a later phase says so once, for all its steps
    shown = escape(title) + (f" ({'; '.join(notes)})" if notes else "")
    return f"*{shown}*" if here and rollout.is_open else shown


def _phase_line(phase: PhaseView, rollout: RolloutView, before: StepView | None) -> str:
    """One phase: its symbol and state in words (done, now, ahead), then its steps. A phase
    left past a closed gate is "skipped by override", never done; after a rollback, what was
    never reached says so rather than looking still ahead."""
    here = phase.position == rollout.phase_index
    if phase.left_by_override:
        mark = ":warning: _skipped by override_"
    elif phase.completed_at is not None:
        mark = ":heavy_check_mark: _done_"
    elif here and rollout.is_open:
        mark = ":arrow_forward: _now_"
    elif here and rollout.status == "rolled_back":
        mark = ":rewind: _rolled back_"
    else:
        mark = ":white_circle: _ahead_" if rollout.is_open else ":white_circle: _not reached_"
    names = []
    for step in phase.steps:
        names.append(_step_text(step, phase, rollout, before))
        before = step
    return f"{mark} *{escape(phase.name)}*: {' → '.join(names)}"


def _plan_lines(rollout: RolloutView) -> str:
    lines, before = [], None
    for phase in rollout.phases:
        lines.append(_phase_line(phase, rollout, before))
        before = phase.steps[-1] if phase.steps else before
    return "\n".join(lines)


def _option(item: ItemView, tz: str) -> dict[str, Any]:
    text, shown = escaped_within(item.text, MAX_OPTION_TEXT)
    option = {"text": _mrkdwn(text), "value": str(item.id)}
    if item.checked:
        option["description"] = _mrkdwn(_who_when("", item.checked_by, item.checked_at, tz))
    elif item.unchecked_by:
        option["description"] = _mrkdwn(_who_when("unticked by ", item.unchecked_by, item.unchecked_at, tz))
    elif shown < len(item.text):
        option["description"] = _mrkdwn(escaped_within("…" + item.text[shown:], MAX_OPTION_TEXT)[0])
    return option


def _who_when(prefix: str, user: str | None, at: datetime | None, tz: str) -> str:
    """ "<prefix><@user> · <time>": a reader's own time when the date token fits the option's
    75 characters, else the rollout's."""
    line = f"{prefix}<@{user}> · {slack_time(at, tz, compact=True)}"
    if len(line) <= MAX_OPTION_TEXT:
        return line
    return truncate(f"{prefix}<@{user}> · {local_time(at, tz)}", MAX_OPTION_TEXT)


def _checklist(phase: PhaseView, tz: str, title: str, items: Sequence[ItemView]) -> list[dict[str, Any]]:
    if not items:
        return []
    done = sum(1 for i in items if i.checked)
    blocks = [_context(f"*{title}* {done}/{len(items)}")]
    for chunk_no, start in enumerate(range(0, len(items), MAX_OPTIONS_PER_CHECKBOXES)):
        chunk = items[start : start + MAX_OPTIONS_PER_CHECKBOXES]
        options = [_option(i, tz) for i in chunk]
        boxes: dict[str, Any] = {"action_id": Action.CHECKLIST_TOGGLE}
        ticked = [o for o, i in zip(options, chunk, strict=True) if i.checked]
        if ticked:
            boxes["initial_options"] = ticked
        boxes |= {"options": options, "type": "checkboxes"}
        block_id = f"{BlockId.CHECKLIST}:{phase.rollout_id}:{phase.position}:{title[0].lower()}{chunk_no}"
        blocks.append({"block_id": block_id, "elements": [boxes], "type": "actions"})
    return blocks


def _header(rollout: RolloutView) -> list[dict[str, Any]]:
    # A paused or finished rollout says so once, in the state line under the header.
    facts = [STATUS_LABEL[rollout.status]] if rollout.status == "active" else []
    facts += [
        f"Owner <@{rollout.owner_id}>",
        f"Plan *{escape(rollout.plan_title)}* (`{escape(rollout.template)}`)",
    ]
    if rollout.flag_key:
        facts.append(f"Flag `{escape(rollout.flag_key)}`")
    if rollout.stakeholder_channels:
        facts.append("Stakeholders " + " ".join(f"<#{c}>" for c in rollout.stakeholder_channels))
    title = truncate(f"{HEADER_EMOJI[rollout.status]} {rollout.feature}", MAX_HEADER_TEXT)
    return [{"block_id": BlockId.HEADER, "text": _plain(title), "type": "header"}, _context(*facts)]


def _controls(rollout: RolloutView) -> dict[str, Any]:
    value = str(rollout.id)
    paused = rollout.paused
    buttons = [
        _button("Advance", Action.ADVANCE, advance_value(rollout), style="primary"),
        # "Check metrics", not "Snapshot": it says what the button does (the id stays).
        _button("Check metrics", Action.SNAPSHOT, value),
        _button("Resume", Action.RESUME, value) if paused else _button("Pause", Action.PAUSE, value),
        _button("Roll back…", Action.ROLLBACK, value, style="danger"),
        _button("Auto-advance off", Action.AUTO_OFF, value)
        if rollout.auto_on
        else _button("Auto-advance on", Action.AUTO_ON, value),
    ]
    if paused:
        buttons = buttons[1:]
    return {"block_id": BlockId.CONTROLS, "elements": buttons, "type": "actions"}


def advance_value(rollout: RolloutView) -> str:
    """The Advance button's value: the step it was rendered at, "<rollout>:<phase>:<step>" (the
    `Where` token of bot.usecases.advance), so a click means that step and no later one."""
    return f"{rollout.id}:{rollout.phase_index}:{rollout.step_index}"


def _where(rollout: RolloutView) -> str:
    """The state line: where the rollout stands, and for a pause or a rollback who, when, why."""
    at = f"*{escape(rollout.current_phase.name)}*, step *{escape(step_name(rollout.current_step))}*"
    if rollout.status in ("paused", "rolled_back"):
        who = f"<@{rollout.stopped_by}>" if rollout.stopped_by else "Rollout Bot"
        when = slack_time(rollout.stopped_at, rollout.timezone)
        words = f"{STATUS_LABEL[rollout.status]} by {who} at {at}" + (f", {when}" if when else "")
        if rollout.stop_reason:
            words += f". Reason: {escape(truncate(rollout.stop_reason, 300))}"
        return words + "."
    if not rollout.is_open:
        return STATUS_LABEL[rollout.status]
    since = slack_time(rollout.step_started_at, rollout.timezone)
    line = f"Now: {at}, since {since}"
    waiting = rollout.open_exit_criteria
    if waiting:
        line += f"\nWaiting on <@{rollout.owner_id}>: {waiting} exit criteri{'on' if waiting == 1 else 'a'}"
    return line


def _checklist_text(title: str, items: Sequence[ItemView]) -> str:
    lines = [f"*{title}* {sum(1 for i in items if i.checked)}/{len(items)}"]
    lines += [
        f"{':ballot_box_with_check:' if i.checked else ':white_large_square:'} {escape(i.text)}"
        for i in items
    ]
    return "\n".join(lines)


def flag_line(
    flag_key: str | None,
    *,
    seen: float | None,
    plan: float,
    adopted: float | None = None,
    problem: str | None = None,
    pending: float | None = None,
) -> str:
    """The flag as the bot last saw it, against the plan: "at 25%, as planned", "⚠ at 40%, but
    the plan says 25%". Empty when no flag service runs the flag (`seen` None)."""
    if not flag_key or seen is None:
        return ""
    name = f"Flag `{escape(flag_key)}`"
    if pending is not None:
        return f"{name}: :warning: still at {seen:g}%, the bot keeps retrying to set {pending:g}%"
    if problem:
        return f"{name}: :warning: {seen:g}% when last read; now: {escape(truncate(problem, 200))}"
    if seen == plan:
        return f"{name}: at {seen:g}%, as planned"
    if seen == adopted:
        return f"{name}: at {seen:g}%, kept by people (plan says {plan:g}%)"
    return f"{name}: :warning: at {seen:g}%, but the plan says {plan:g}%"


def status_message(
    rollout: RolloutView, *, now: datetime, interactive: bool = True, link: str | None = None
) -> Message:
    """The one message per rollout, edited in place: plan, position, current checklist.

    `interactive=False` renders the checklist as text, for an ephemeral copy that links to the
    live message instead of offering boxes that would not update it.

    The copy's blocks but its "Updated" line are rendered once per view (a frozen value: the
    same committed state, the same blocks), so asking for the status of a rollout that has not
    changed does not render it again; the blocks are shared and never changed in place. The
    live message is not cached: each edit shows a newer revision, and hashing the view for a
    miss would cost the edit."""
    made = _status_blocks(rollout, True, link) if interactive else _copy_blocks(rollout, link)
    footer = _context(f"Updated {slack_time(now, rollout.timezone)}")
    return Message(text=made[1], blocks=[*made[0], footer])


@lru_cache(maxsize=64)
def _copy_blocks(rollout: RolloutView, link: str | None) -> tuple[tuple[dict[str, Any], ...], str]:
    return _status_blocks(rollout, False, link)


def _status_blocks(
    rollout: RolloutView, interactive: bool, link: str | None
) -> tuple[tuple[dict[str, Any], ...], str]:
    plan_lines = _plan_lines(rollout)
    flag = flag_line(
        rollout.flag_key,
        seen=rollout.flag_percent,
        plan=rollout.flag_plan_percent,
        adopted=rollout.flag_adopted_percent,
        problem=rollout.flag_problem,
        pending=rollout.flag_pending,
    )
    where = f"{_where(rollout)}\n{flag}" if flag else _where(rollout)
    if rollout.is_open and rollout.auto_on:
        where += f"\n{auto_words(rollout)}"
    steps = _mrkdwn(truncate(f"{where}\n{plan_lines}", MAX_SECTION_TEXT))
    blocks = [*_header(rollout), {"block_id": BlockId.STEPS, "text": steps, "type": "section"}]
    if rollout.is_open and not interactive:
        phase = rollout.current_phase
        for title, kind in (("Tasks", "task"), ("Exit criteria", "exit")):
            items = tuple(i for i in phase.items if i.kind == kind)
            if items:
                text = _mrkdwn(truncate(_checklist_text(title, items), MAX_SECTION_TEXT))
                blocks.append({"text": text, "type": "section"})
        if link:
            blocks.append(_context(f"<{link}|Open the live status message> to tick items."))
    elif rollout.is_open:
        phase = rollout.current_phase
        tasks = [i for i in phase.items if i.kind == "task"]
        exits = [i for i in phase.items if i.kind == "exit"]
        checklist = [
            {"type": "divider"},
            *_checklist(phase, rollout.timezone, "Tasks", tasks),
            *_checklist(phase, rollout.timezone, "Exit criteria", exits),
        ]
        room = MAX_BLOCKS - len(blocks) - 2  # the controls and the footer come after
        if len(checklist) > room:
            checklist = [
                *checklist[: room - 1],
                _context("More items than one message can hold: the rest are in the export."),
            ]
        blocks.extend(checklist)
        blocks.append(_controls(rollout))
    items = rollout.current_phase.items
    fallback = render(
        "status_fallback",
        feature=rollout.feature,
        state=_state_words(rollout),
        done=sum(1 for i in items if i.checked),
        total=len(items) if rollout.is_open else 0,
        phase=rollout.current_phase.name,
    )
    return tuple(blocks), truncate(fallback, MAX_FALLBACK_TEXT)


def _state_words(rollout: RolloutView) -> str:
    if not rollout.is_open:
        return rollout.status.replace("_", " ")
    words = f"{rollout.current_phase.name}, step {step_name(rollout.current_step)}"
    return words + (" (paused)" if rollout.paused else "")


def choose_rollout(question: str, choices: Sequence[tuple[int, str]], subcommand: str) -> Message:
    """Several open rollouts in the channel: one button each, carrying the command to run."""
    buttons = [
        ButtonElement(
            text=truncate(feature, 75),
            action_id=f"{Action.PICK_ROLLOUT}:{rollout_id}",
            value=f"{subcommand}:{rollout_id}",
        )
        for rollout_id, feature in choices[:25]
    ]
    return Message(
        text=question,
        blocks=_dicts(
            [
                SectionBlock(text=MarkdownTextObject(text=escape(question))),
                ActionsBlock(elements=buttons),
            ]
        ),
    )


def behind(error: str) -> Message:
    """To whoever ticked a box, when Slack would not show it on the status message."""
    return text_message(
        f":hourglass_flowing_sand: Your tick is saved, but Slack did not take the update of the status "
        f"message ({escape(error.replace('_', ' '))}). I keep trying; the message will show it shortly."
    )
