"""Editing a rollout's success metrics and rollback triggers through the `/rollout metrics` form.

Rules of the form (what `form_errors` and `apply_form` hold to):

- a group with an empty name is removed (or, when it was one of the empty groups, not added);
- once a group has a name: its query must not be empty, its threshold must be a number (it may
  be left empty only for "must be zero", meaning 0), its window a whole number of minutes above
  0 (empty means 60), and its name unique among the success criteria or among the triggers
  (one name may be both: the templates watch "Error rate" as a criterion and as a trigger);
- a metric keeps its key while its name stays the same, so the baseline stored under that key
  still applies; a new or renamed metric gets a key made from its name, unique among every key
  the rollout has or had in this edit;
- metrics the form had no room to show are kept exactly as they are. The form tells which ones
  it showed: every block_id carries the key of the metric its group was prefilled from, so a
  metric added by someone else while the form was open is kept too;
- a control-cohort query (not in the form) stays with its metric's key (for a formula metric,
  while its query names stay the same);
- the query field holds one Datadog query or a formula with named queries and an optional
  minimum of traffic (bot/domain/formulas.py: `100 * errors / hits; errors = …; hits = …;
  at least 500 hits`); its rules are checked as the Markdown import checks them;
- the rule "no significant change (Mann-Whitney)" judges the metric by the canary test
  (bot/domain/canary.py): its threshold is then not used (it may be left empty), and its rule
  before, its weight and whether it is critical stay as they were.

Opening the form and saving it both require the right to steer the rollout, and a finished
(rolled back or completed) rollout cannot be edited. Saving is one transaction: the rollout is
locked, its metrics and triggers replaced, its revision bumped, and a METRICS_EDITED event with
the lists before and after is added.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain import rollouts
from bot.domain.canary import MANN_WHITNEY
from bot.domain.formulas import SourceError, parse_source
from bot.domain.plans.model import Comparison, Direction, Metric, Rule
from bot.errors import InvalidTransition, RolloutNotFound, UsageError
from bot.services import Actor, Services
from bot.usecases import access, lookup, measure
from messages.metric_modal import (
    DEFAULT_AGGREGATOR,
    DEFAULT_WINDOW_MINUTES,
    JUDGED_RULE,
    MAX_NAME_LEN,
    MAX_QUERY_LEN,
    MAX_THRESHOLD_LEN,
    MAX_UNIT_LEN,
    MAX_WINDOW_LEN,
    Field,
    FieldId,
    Kind,
)
from storage import queries
from storage.enums import EventKind
from storage.models import Rollout

ACTION = "edit the metrics of"


MAX_ERROR_LEN = 150  # keep the message under each field short; Slack shows it inline


MAX_KEY_LEN = 48


_AGGREGATOR_RE = re.compile(r"^[a-z0-9_]{1,32}$")


_WINDOW_RE = re.compile(rf"^[0-9]{{1,{MAX_WINDOW_LEN}}}$")


_KEY_CHARS = re.compile(r"[^a-z0-9]+")


_MINUS = "\u2212"


KIND_NAMES = {Kind.METRIC: "success criterion", Kind.TRIGGER: "rollback trigger"}


@dataclass(frozen=True)
class Group:
    """One group of inputs as submitted: trimmed text, not yet checked."""

    index: int
    key: str  # the key of the metric the group was prefilled from; "" for an empty group
    name: str = ""
    query: str = ""
    kind: str = Kind.METRIC.value
    rule: str = Rule.RELATIVE.value
    threshold: str = ""
    bad: str = Direction.UP.value
    unit: str = ""
    aggregator: str = DEFAULT_AGGREGATOR
    window: str = ""
    # "" (a form opened before the field existed): the metric keeps the comparison it had.
    comparison: str = ""

    def block_id(self, field: Field) -> str:
        return FieldId(self.index, field, self.key).block_id

    def metric(self, key: str, control_query: str = "", before: Metric | None = None) -> Metric:
        """The group as a Metric; only for a group `form_errors` passed. `before` is the metric
        of that key as it was: what the form does not show (control queries, weight) stays."""
        judged = self.rule == JUDGED_RULE
        rule = before.rule if judged and before is not None else Rule.RELATIVE if judged else Rule(self.rule)
        threshold = parse_threshold(self.threshold, rule)
        if judged and threshold is None:
            threshold = before.threshold if before is not None else 0.0
        window = parse_window(self.window)
        assert threshold is not None and window is not None, "checked by form_errors"
        source = parse_source(self.query)
        names = tuple(name for name, _ in source.queries)
        kept = before.control_queries if before is not None else ()
        return Metric(
            key=key,
            name=self.name,
            query=source.query,
            rule=rule,
            threshold=threshold,
            bad=Direction(self.bad),
            aggregator=self.aggregator,
            window_minutes=window,
            unit=self.unit,
            control_query="" if names else control_query,
            queries=source.queries,
            formula=source.formula,
            control_queries=kept if tuple(name for name, _ in kept) == names else (),
            min_count=source.min_count,
            judge=MANN_WHITNEY if judged else "",
            critical=before.critical if before is not None else False,
            weight=before.weight if before is not None else 1.0,
            comparison=(
                Comparison(self.comparison)
                if self.comparison
                else before.comparison
                if before is not None
                else Comparison.INCLUSIVE
            ),
        )


@dataclass(frozen=True)
class Edit:
    """What the form makes of the rollout's metrics."""

    metrics: tuple[Metric, ...]
    triggers: tuple[Metric, ...]
    removed: tuple[str, ...]  # names of the metrics the form removed
    need_baseline: tuple[str, ...]  # change rules whose key or query is new: no baseline yet


@dataclass(frozen=True)
class Saved:
    rollout_id: int
    feature: str
    edit: Edit
    changed: bool


def parse_threshold(text: str, rule: Rule) -> float | None:
    """The threshold as a number, or None when it is not one. Empty means 0 only for ZERO, the
    one rule that has no threshold. A unit typed with it ("0.5%") is refused rather than
    guessed: for an absolute rule it would mean percentage points."""
    text = text.strip().replace(_MINUS, "-")
    if not text:
        return 0.0 if rule is Rule.ZERO else None
    if "_" in text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_window(text: str) -> int | None:
    """Minutes as a whole number above 0; empty means the default. None when invalid."""
    text = text.strip()
    if not text:
        return DEFAULT_WINDOW_MINUTES
    if not _WINDOW_RE.fullmatch(text) or int(text) <= 0:
        return None
    return int(text)


def _norm(name: str) -> str:
    return " ".join(name.casefold().split())


def form_errors(groups: Sequence[Group]) -> dict[str, str]:
    """What is wrong, as Slack's `response_action: errors` wants it: block_id -> message."""
    errors: dict[str, str] = {}

    def error(group: Group, field: Field, message: str) -> None:
        errors.setdefault(group.block_id(field), message[:MAX_ERROR_LEN])

    seen: dict[tuple[str, str], Group] = {}
    for group in groups:
        if not group.name:
            continue  # removed, or an empty group left empty
        if len(group.name) > MAX_NAME_LEN:
            error(group, Field.NAME, f"Keep the name to {MAX_NAME_LEN} characters.")
        if group.kind not in set(Kind):
            error(group, Field.KIND, "Pick one of the options.")
        elif (group.kind, _norm(group.name)) in seen:
            kind = KIND_NAMES[Kind(group.kind)]
            error(
                group,
                Field.NAME,
                f"Another {kind} already has this name; names tell them apart in the gate report.",
            )
        else:
            seen[(group.kind, _norm(group.name))] = group
        if not group.query:
            error(group, Field.QUERY, "Give the Datadog query this metric reads.")
        elif len(group.query) > MAX_QUERY_LEN:
            error(group, Field.QUERY, f"Keep the query to {MAX_QUERY_LEN} characters.")
        else:
            try:
                parse_source(group.query)
            except SourceError as exc:
                error(group, Field.QUERY, f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        if group.rule == JUDGED_RULE:
            pass  # judged by the canary test: the threshold is not used
        elif group.rule not in set(Rule):
            error(group, Field.RULE, "Pick one of the options.")
        elif (
            len(group.threshold) > MAX_THRESHOLD_LEN
            or parse_threshold(group.threshold, Rule(group.rule)) is None
        ):
            error(
                group,
                Field.THRESHOLD,
                "Type the threshold as a plain number, such as 10 or 0.5 (the rule and unit say what it means).",
            )
        if group.bad not in set(Direction):
            error(group, Field.BAD, "Pick one of the options.")
        if len(group.unit) > MAX_UNIT_LEN:
            error(group, Field.UNIT, f"Keep the unit to {MAX_UNIT_LEN} characters, such as % or ms.")
        if not _AGGREGATOR_RE.fullmatch(group.aggregator):
            error(group, Field.AGGREGATOR, "Pick one of the options.")
        if group.comparison and group.comparison not in set(Comparison):
            error(group, Field.COMPARISON, "Pick one of the options.")
        if parse_window(group.window) is None:
            error(group, Field.WINDOW, "The window is a whole number of minutes above 0, such as 60.")
    return errors


def key_from_name(name: str) -> str:
    """ "Latency (p95)" -> "latency_p95", "Größe" -> "grosse": plain ASCII, readable in the
    database and fit for a Datadog query name."""
    ascii_name = unicodedata.normalize("NFKD", name.casefold()).encode("ascii", "ignore").decode()
    return _KEY_CHARS.sub("_", ascii_name).strip("_")[:MAX_KEY_LEN].strip("_") or "metric"


def _fresh_key(name: str, taken: set[str]) -> str:
    base = key_from_name(name)
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


def apply_form(groups: Sequence[Group], metrics: Sequence[Metric], triggers: Sequence[Metric]) -> Edit:
    """The metrics and triggers the form describes, given the rollout's current ones (see the
    module docstring for how keys are kept and what is left alone)."""
    current = {m.key: m for m in [*metrics, *triggers]}
    current_kind = {**{m.key: Kind.METRIC for m in metrics}, **{t.key: Kind.TRIGGER for t in triggers}}
    shown = {g.key for g in groups if g.key in current}
    named = [g for g in groups if g.name]
    keys: dict[int, str] = {}
    used: set[str] = set()

    # An unchanged name keeps the key its group was prefilled from...
    for group in named:
        old = current.get(group.key)
        if old is not None and group.key not in used and _norm(old.name) == _norm(group.name):
            keys[group.index] = group.key
            used.add(group.key)
    # ...or, moved to another group, the key of the shown metric of that kind and name.
    by_name = {(current_kind[k], _norm(current[k].name)): k for k in current if k in shown}
    for group in named:
        if group.index in keys:
            continue
        key = by_name.get((Kind(group.kind), _norm(group.name)))
        if key is not None and key not in used:
            keys[group.index] = key
            used.add(key)
    # A new name gets a new key, never one that was in use: its baseline belongs to another metric.
    taken = set(current) | used
    for group in named:
        if group.index not in keys:
            keys[group.index] = _fresh_key(group.name, taken)
            taken.add(keys[group.index])

    edited = {
        group.index: group.metric(
            keys[group.index],
            current[keys[group.index]].control_query if keys[group.index] in current else "",
            current.get(keys[group.index]),
        )
        for group in named
    }
    new_metrics = [edited[g.index] for g in named if g.kind == Kind.METRIC] + [
        m for m in metrics if m.key not in shown
    ]
    new_triggers = [edited[g.index] for g in named if g.kind == Kind.TRIGGER] + [
        t for t in triggers if t.key not in shown
    ]
    kept = {m.key for m in [*new_metrics, *new_triggers]}
    removed = tuple(_labelled(m, current_kind[m.key]) for m in current.values() if m.key not in kept)
    need_baseline = tuple(m.name for m in edited.values() if _needs_baseline(m, current.get(m.key)))
    return Edit(tuple(new_metrics), tuple(new_triggers), removed, need_baseline)


def _labelled(metric: Metric, kind: Kind) -> str:
    return f"{metric.name} ({KIND_NAMES[kind]})"


def _needs_baseline(metric: Metric, before: Metric | None) -> bool:
    """A change rule compares with the baseline stored under its key, measured with the query
    it had then; a new key has none, a changed query or window an outdated one."""
    compares = metric.rule in (Rule.RELATIVE, Rule.ABSOLUTE) or metric.judge
    if not compares or metric.control_query or metric.control_queries:
        return False
    if before is None:
        return True
    return (before.query, before.queries, before.formula, before.aggregator, before.window_minutes) != (
        metric.query,
        metric.queries,
        metric.formula,
        metric.aggregator,
        metric.window_minutes,
    )


def require_open(rollout: Rollout) -> None:
    if not rollout.status.is_open:
        raise InvalidTransition(
            "{feature} is {status}; its metrics can no longer change.",
            feature=rollout.feature,
            status=rollout.status.value.replace("_", " "),
        )


def save(svc: Services, actor: Actor, rollout_id: int, groups: Sequence[Group]) -> Saved:
    """Replaces the rollout's metrics and triggers with what the form says, in one transaction
    with its METRICS_EDITED event. Nothing is written when nothing changed."""
    errors = form_errors(groups)
    if errors:  # never save what the form would refuse, whoever calls
        raise UsageError(next(iter(errors.values())), "metrics")
    rollout = lookup.load_for(svc, actor, rollout_id)
    require_open(rollout)
    access.check_allowed(svc, actor, rollout, ACTION)
    now = svc.clock()
    with svc.db.transaction() as session:
        locked = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if locked is None:
            raise RolloutNotFound("That rollout does not exist any more.")
        require_open(locked)
        metrics, triggers = measure.metrics_of(locked)
        edit = apply_form(groups, metrics, triggers)
        if (edit.metrics, edit.triggers) == (tuple(metrics), tuple(triggers)):
            return Saved(rollout_id, locked.feature, edit, changed=False)
        before = {"metrics": [m.to_dict() for m in metrics], "triggers": [t.to_dict() for t in triggers]}
        after = {
            "metrics": [m.to_dict() for m in edit.metrics],
            "triggers": [t.to_dict() for t in edit.triggers],
        }
        locked.metrics = after["metrics"]
        locked.triggers = after["triggers"]
        locked.touch(now)
        session.add(
            rollouts.event(locked, EventKind.METRICS_EDITED, actor.user_id, now, before=before, after=after)
        )
    return Saved(rollout_id, locked.feature, edit, changed=True)
