"""The metrics editor (`/rollout metrics`): a modal of one group of inputs per metric, and the
ephemeral answer once it is saved.

Slack's limits (docs.slack.dev: modal views, input block, plain-text input, option object):
a modal holds at most 100 blocks; an input label and hint at most 2000 characters; a
placeholder at most 150; a plain_text_input's max_length is 1..3000; an option's text at most
75 and its value at most 150; a block_id at most 255. Each group takes BLOCKS_PER_GROUP
blocks, so at most MAX_GROUPS groups fit; a plan with more metrics shows the first ones and
says that the others are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.domain.formulas import source_text
from bot.domain.plans.model import Comparison, Direction, Metric, Rule
from bot.domain.wording import describe_rule, describe_trigger
from bot.ids import View as ViewId
from messages.blocks import Message, _dicts, text_message
from messages.modals import VALUE
from messages.text import MAX_FALLBACK_TEXT, MAX_SECTION_TEXT, escape, truncate

# --- Slack's limits, and what they leave room for ------------------------------------------

MAX_VIEW_BLOCKS = 100
MAX_LABEL = 2000
MAX_HINT = 2000
MAX_PLACEHOLDER = 150
MAX_HEADER_TEXT = 150
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_BLOCK_ID = 255
MAX_INPUT_LENGTH = 3000  # the largest max_length a plain_text_input accepts
MAX_TITLE = 24

FIELDS_PER_GROUP = 10
BLOCKS_PER_GROUP = FIELDS_PER_GROUP + 1  # the inputs and the group's header
FIXED_BLOCKS = 2  # the introduction, and the note about metrics left out
MAX_GROUPS = (MAX_VIEW_BLOCKS - FIXED_BLOCKS) // BLOCKS_PER_GROUP
EMPTY_GROUPS = 2  # empty groups offered for adding

MAX_NAME_LEN = 80
MAX_QUERY_LEN = 2000
MAX_UNIT_LEN = 16
MAX_THRESHOLD_LEN = 32
MAX_WINDOW_LEN = 6

AGGREGATORS = ("avg", "sum", "min", "max", "last")
DEFAULT_AGGREGATOR = "avg"
DEFAULT_WINDOW_MINUTES = 60


class Field(StrEnum):
    """The inputs of one metric's group; with the group's number they make the block_id."""

    NAME = "name"
    QUERY = "query"
    KIND = "kind"
    RULE = "rule"
    THRESHOLD = "threshold"
    BAD = "bad"
    UNIT = "unit"
    AGGREGATOR = "aggregator"
    WINDOW = "window"
    COMPARISON = "comparison"  # exactly at the threshold: passes (inclusive) or fails (strict)


class Kind(StrEnum):
    METRIC = "metric"  # a success criterion: must pass to advance
    TRIGGER = "trigger"  # a rollback trigger: fires when its rule is broken


_BLOCK_PREFIX = "metric"
# Room a block_id leaves for the key it carries: "metric:<group>:<field>:<key>".
MAX_CARRIED_KEY = MAX_BLOCK_ID - len(f"{_BLOCK_PREFIX}:{MAX_GROUPS}:{Field.AGGREGATOR}:")


@dataclass(frozen=True)
class FieldId:
    """The block_id of one input: its group's position, the field, and the key of the metric
    the group was prefilled from ("" for a new one), so the submission knows which metrics the
    form showed and which it left out."""

    group: int
    field: Field
    key: str = ""

    @property
    def block_id(self) -> str:
        return f"{_BLOCK_PREFIX}:{self.group}:{self.field}:{self.key}"

    @classmethod
    def parse(cls, block_id: str) -> FieldId | None:
        """None for a block_id that is not a metric field."""
        parts = block_id.split(":", 3)
        if len(parts) != 4 or parts[0] != _BLOCK_PREFIX or not parts[1].isascii() or not parts[1].isdigit():
            return None
        try:
            field = Field(parts[2])
        except ValueError:
            return None
        return cls(int(parts[1]), field, parts[3])


KIND_LABELS = {
    Kind.METRIC: "Success criterion (must pass to advance)",
    Kind.TRIGGER: "Rollback trigger (fires when broken)",
}
RULE_LABELS = {
    Rule.RELATIVE: "Relative change vs baseline, in % of the baseline",
    Rule.ABSOLUTE: "Absolute change vs baseline, in the unit (pp for %)",
    Rule.UPPER: "Upper bound: the value must stay at or below",
    Rule.LOWER: "Lower bound: the value must stay at or above",
    Rule.ZERO: "Must be zero",
}
# Not a Rule: a judged metric keeps its rule and is decided by the canary test instead.
JUDGED_RULE = "mann-whitney"
JUDGED_LABEL = "No significant change (Mann-Whitney test vs control or baseline)"

COMPARISON_LABELS = {
    Comparison.INCLUSIVE: "Passes: the threshold is allowed (≤, at most)",
    Comparison.STRICT: "Fails: stay strictly under/above it (<, under)",
}
DIRECTION_LABELS = {
    Direction.UP: "Rises (higher is worse)",
    Direction.DOWN: "Drops (lower is worse)",
}

INTRO = (
    "Editing the metrics of *{feature}*. A *success criterion* must pass before the rollout "
    "advances; a *rollback trigger* fires when its rule is broken. Clear a name to remove that "
    "metric; fill in an empty group to add one."
)
HINTS = {
    Field.NAME: "Leave empty to remove this metric (or not to add one).",
    Field.QUERY: (
        "A Datadog metrics query. {feature}, {flag} and {service} are filled in from the rollout, "
        "e.g. avg:trace.http.request.duration{service:{service},feature_flag:{flag}}. Or a formula "
        "over named queries, one per line (or separated by ;), with an optional minimum of traffic: "
        "100 * errors / hits; errors = sum:…errors{…}.as_count(); hits = sum:…hits{…}.as_count(); "
        "at least 500 hits"
    ),
    Field.RULE: (
        "Relative: change in % of the baseline. Absolute: change in the metric's own unit, "
        "percentage points (pp) when the unit is %. Bounds: the value itself."
    ),
    Field.THRESHOLD: (
        "A plain number. Relative: 10 allows a 10% change of the baseline. Absolute with unit %: "
        "0.5 allows 0.5 pp. Upper or lower bound: the value itself. Ignored for must be zero."
    ),
    Field.BAD: "Which way a change counts against the rollout (relative and absolute rules).",
    Field.UNIT: "Optional, e.g. %, ms, records. With %, an absolute change is in pp.",
    Field.AGGREGATOR: "How the window's points become one number.",
    Field.WINDOW: "Minutes of data read for each check, a whole number.",
    Field.COMPARISON: (
        "A plan that says “<0.1% increase” or “under 250 ms” means exactly at the threshold fails; "
        "“at most” or “≤” means it passes. For a trigger: fails means it fires at the threshold itself."
    ),
}


def format_number(value: float) -> str:
    """A threshold as typed back into the form: "10", "0.1", "1e-07"; float() reads it back."""
    number = float(value)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _option(value: str, text: str) -> Option:
    return Option(value=value[:MAX_OPTION_VALUE], text=truncate(text, MAX_OPTION_TEXT))


def _select(
    group: int, field: Field, key: str, label: str, choices: Sequence[tuple[str, str]], initial: str
) -> InputBlock:
    options = [_option(value, text) for value, text in choices]
    if initial not in {value for value, _ in choices}:
        # A value the plan has but the form does not offer (e.g. aggregator "percentile")
        # stays selectable, so saving the form unchanged changes nothing.
        options.append(_option(initial, initial))
    selected = next(o for o in options if o.value == initial[:MAX_OPTION_VALUE])
    return InputBlock(
        block_id=FieldId(group, field, key).block_id,
        label=label,
        hint=HINTS.get(field),
        element=StaticSelectElement(action_id=VALUE, options=options, initial_option=selected),
    )


def _text(
    group: int,
    field: Field,
    key: str,
    label: str,
    initial: str,
    max_length: int,
    placeholder: str | None = None,
    multiline: bool = False,
) -> InputBlock:
    return InputBlock(
        block_id=FieldId(group, field, key).block_id,
        label=label,
        hint=HINTS.get(field),
        optional=True,  # the empty groups must submit empty; the ack checks what is required
        element=PlainTextInputElement(
            action_id=VALUE,
            initial_value=initial or None,
            max_length=max_length,
            placeholder=placeholder,
            multiline=multiline,
        ),
    )


def _group(index: int, metric: Metric | None, kind: Kind) -> list[Block]:
    key = metric.key if metric is not None and len(metric.key) <= MAX_CARRIED_KEY else ""
    kind_name = "rollback trigger" if kind is Kind.TRIGGER else "success criterion"
    title = (
        f"{index + 1}. {metric.name} ({kind_name})"
        if metric is not None
        else f"{index + 1}. New metric or trigger"
    )
    return [
        HeaderBlock(text=truncate(title, MAX_HEADER_TEXT)),
        _text(index, Field.NAME, key, "Name", metric.name if metric else "", MAX_NAME_LEN, "e.g. Error rate"),
        _text(
            index,
            Field.QUERY,
            key,
            "Datadog query",
            source_text(metric.query, metric.queries, metric.formula, metric.min_count) if metric else "",
            MAX_QUERY_LEN,
            multiline=True,
        ),
        _select(index, Field.KIND, key, "Kind", list(KIND_LABELS.items()), kind.value),
        _select(
            index,
            Field.RULE,
            key,
            "Rule",
            [*RULE_LABELS.items(), (JUDGED_RULE, JUDGED_LABEL)],
            JUDGED_RULE if metric and metric.judge else (metric.rule if metric else Rule.RELATIVE).value,
        ),
        _text(
            index,
            Field.THRESHOLD,
            key,
            "Threshold",
            format_number(metric.threshold) if metric else "",
            MAX_THRESHOLD_LEN,
            "e.g. 10 or 0.5",
        ),
        _select(
            index,
            Field.COMPARISON,
            key,
            "Exactly at the threshold",
            list(COMPARISON_LABELS.items()),
            (metric.comparison if metric else Comparison.INCLUSIVE).value,
        ),
        _select(
            index,
            Field.BAD,
            key,
            "Bad direction",
            list(DIRECTION_LABELS.items()),
            (metric.bad if metric else Direction.UP).value,
        ),
        _text(index, Field.UNIT, key, "Unit", metric.unit if metric else "", MAX_UNIT_LEN, "e.g. %, ms"),
        _select(
            index,
            Field.AGGREGATOR,
            key,
            "Aggregator",
            [(a, a) for a in AGGREGATORS],
            metric.aggregator if metric else DEFAULT_AGGREGATOR,
        ),
        _text(
            index,
            Field.WINDOW,
            key,
            "Window (minutes)",
            str(metric.window_minutes if metric else DEFAULT_WINDOW_MINUTES),
            MAX_WINDOW_LEN,
        ),
    ]


def metric_editor(
    *, feature: str, metrics: Sequence[Metric], triggers: Sequence[Metric], private_metadata: str
) -> dict[str, Any]:
    """The editor, prefilled with the rollout's metrics then triggers, plus empty groups to add
    with. Metrics beyond what fits are left out of the form (and so left unchanged)."""
    existing = [(m, Kind.METRIC) for m in metrics] + [(t, Kind.TRIGGER) for t in triggers]
    shown = existing[: MAX_GROUPS - 1]  # always leave at least one group for adding
    empty = min(EMPTY_GROUPS, MAX_GROUPS - len(shown))
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(text=truncate(INTRO.format(feature=escape(feature)), MAX_SECTION_TEXT))
        )
    ]
    left_out = existing[len(shown) :]
    if left_out:
        names = ", ".join(escape(m.name) for m, _ in left_out)
        note = (
            f":information_source: This form has room for {len(shown)} of the {len(existing)} metrics. "
            f"These are not shown and stay as they are: {names}. Remove some here to edit the others."
        )
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=truncate(note, MAX_SECTION_TEXT))]))
    for index, (metric, kind) in enumerate(shown):
        blocks += _group(index, metric, kind)
    for index in range(len(shown), len(shown) + empty):
        blocks += _group(index, None, Kind.METRIC)
    view = View(
        type="modal",
        callback_id=ViewId.METRICS,
        title="Metrics and triggers",
        submit="Save",
        close="Cancel",
        private_metadata=private_metadata,
        blocks=blocks,
    )
    return view.to_dict()


# --- the answer once saved -------------------------------------------------------------------


def _window(metric: Metric) -> str:
    return f"{metric.aggregator} over {metric.window_minutes} min"


def metrics_saved(
    *,
    feature: str,
    metrics: Sequence[Metric],
    triggers: Sequence[Metric],
    removed: Sequence[str],
    need_baseline: Sequence[str],
    board_refreshed: bool = True,
) -> Message:
    """Each metric with its rule spelled out (describe_rule / describe_trigger), so "0.5" is
    never left to be read as percent or percentage points."""
    lines = [f":heavy_check_mark: Saved the metrics of *{escape(feature)}*."]
    lines.append("*Success criteria* (must pass to advance):")
    lines += [
        f"• *{escape(m.name)}*: {escape(describe_rule(m))} · {escape(_window(m))}" for m in metrics
    ] or ["• none"]
    lines.append("*Rollback triggers*:")
    lines += [
        f"• *{escape(t.name)}*: {escape(describe_trigger(t))} · {escape(_window(t))}" for t in triggers
    ] or ["• none"]
    if removed:
        lines.append(f"Removed: {', '.join(escape(n) for n in removed)}.")
    if need_baseline:
        names = ", ".join(escape(n) for n in need_baseline)
        lines.append(
            f":straight_ruler: No baseline yet for the new or changed {names}: "
            "`/rollout baseline` measures it, or the gate will say it has no data."
        )
    if not board_refreshed:
        lines.append(
            "_The status message could not be updated just now; it catches up with the next change._"
        )
    text = "\n".join(lines)
    return Message(
        text=truncate(text, MAX_FALLBACK_TEXT),
        blocks=_dicts([SectionBlock(text=MarkdownTextObject(text=truncate(text, MAX_SECTION_TEXT)))]),
    )


def nothing_changed(feature: str) -> Message:
    return text_message(f"Nothing changed in the metrics of *{escape(feature)}*.")
