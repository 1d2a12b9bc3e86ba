"""Metrics read out of a hand-written plan's prose, or taken from its Metric Gate table.

Without a Metric Gate table, success criteria ("DataDog: No increase in error rates"), Success
Metrics rows measured in Datadog ("<0.1% increase") and rollback triggers with a number
("Error rate increases by more than 0.5%") become metrics with no query yet; each is reported
on its line so that the team fills the query in. With the table, the table wins: prose that
restates a row is taken as read, prose that disagrees with it is reported.
"""

from __future__ import annotations

import re
from dataclasses import replace

from bot.domain.plans.markdown.lexer import Line, has_placeholder
from bot.domain.plans.markdown.reader import DATADOG_PREFIX, Reader
from bot.domain.plans.markdown.vocabulary import (
    TARGET,
    known_metric,
    metric_from_sentence,
    rule_summary,
    sentence_subject,
    slug,
    trigger_sentence,
)
from bot.domain.plans.model import MANN_WHITNEY, Direction, Metric, Rule, SuccessMetricRow

FILL_IN_QUERY = "fill in its Datadog query with `/rollout metrics`"
# Success Metrics rows whose Method is one of these are read in Datadog and become metrics;
# others ("Analytics", "Support") stay rows of the table.
DATADOG_METHODS = frozenset({"monitoring", "apm", "datadog", "metrics", "logs", "rum"})

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# "No increase in error rates directly caused by …": read literally, a threshold of 0 would be
# failed by noise forever. What a person means is no *significant* increase: the metric is
# judged by the Mann-Whitney test (canary against control or baseline), bad when it goes up.
NO_INCREASE = re.compile(r"^no (?:increase|rise) in (?P<subject>.+?)\.?$", re.I)
# "ensure that all doc transactions are in fact for 5103 Letters": everything must be of one
# type, so the count of records of any other type must be zero. `all\s++` and `(?<!\s)` keep a
# long run of spaces from being retried at each of its spaces (quadratic); the records named
# must be words, not only spaces.
ALL_OF_TYPE = re.compile(
    r"^(?:ensure|check|verify|confirm)?\s*(?:that\s+)?all\s++(?P<records>.+?)(?<!\s)\s+are\s+"
    r"(?:in fact\s+|only\s+)?(?:for|of type|of)\s+(?P<kind>[\w-]+)",
    re.I,
)


def read_criterion(
    line: Line, text: str, metrics: list[Metric], keys: Keys, has_gate: bool, reader: Reader
) -> list[str]:
    """A success criterion line. A metric the importer recognises joins `metrics` (with no
    query yet, which is reported); the rest of the line stays as exit criteria to tick."""
    body = DATADOG_PREFIX.sub("", text).strip()
    if not body:
        return []  # an empty "- DataDog:" blank
    if has_gate:
        reader.report(line, "the Metric Gate table holds the metrics; kept this as an exit criterion")
        return [text]
    first, rest = _first_sentence(body)
    metric = _criterion_metric(first)
    if metric is None:
        reader.report(line, "no metric recognised; kept as an exit criterion to tick by hand")
        return [text]
    metric = _with_unique_key(metric, keys)
    metrics.append(metric)
    judged = "; “no increase” is judged as no significant increase (Mann-Whitney)" if metric.judge else ""
    reader.report(line, f"made the metric “{metric.name}” ({rule_summary(metric)}){judged}; {FILL_IN_QUERY}")
    return [rest.rstrip(".")] if rest else []


def _first_sentence(text: str) -> tuple[str, str]:
    """("ensure that all … 5103 Letters", "Note any discrepancies … DDL")."""
    first, *rest = SENTENCE_END.split(text, maxsplit=1)
    return first.rstrip("."), "".join(rest).strip()


def _criterion_metric(text: str) -> Metric | None:
    if m := NO_INCREASE.match(text):
        key, name, unit = known_metric(m["subject"])
        rule = Rule.ABSOLUTE if unit == "%" else Rule.RELATIVE
        return Metric(key, name, "", rule, 0.0, Direction.UP, unit=unit, judge=MANN_WHITNEY)
    if m := ALL_OF_TYPE.match(text):
        kind = m["kind"]
        key = slug(f"records not of type {kind}")
        return Metric(key, f"Records not of type {kind}", "", Rule.ZERO, aggregator="sum", unit="records")
    return metric_from_sentence(text, trigger=False)


def metrics_from_success_table(
    rows: list[tuple[Line, SuccessMetricRow]], keys: Keys, reader: Reader
) -> list[Metric]:
    """Rows measured in Datadog whose target is a threshold ("<0.1% increase") become metrics."""
    metrics = []
    for line, row in rows:
        if row.method.strip().lower() not in DATADOG_METHODS or has_placeholder(row.target):
            continue
        target = TARGET.match(row.target.strip())
        if not target:
            reader.report(
                line, f"target “{row.target}” is not a threshold like “<10% increase”; no metric made"
            )
            continue
        verb = "increases" if target["verb"].lower() in ("increase", "rise") else "decreases"
        # "<0.1% increase" is strict (exactly +0.1 pp fails), "≤0.1% increase" inclusive.
        cmp = "less than" if target["op"] == "<" else "no more than"
        sentence = f"{row.metric} {verb} by {cmp} {target['amount']}{target['unit'] or ''}"
        metric = metric_from_sentence(sentence, trigger=False)
        assert metric is not None  # the sentence is built in the form CHANGE reads
        metric = _with_unique_key(metric, keys)
        metrics.append(metric)
        reader.report(line, f"made the metric “{metric.name}” ({rule_summary(metric)}); {FILL_IN_QUERY}")
    return metrics


def triggers_from_prose(
    items: list[tuple[Line, str]], keys: Keys, reader: Reader
) -> tuple[list[Metric], list[str]]:
    """Rollback triggers with a number become metrics; the others are checked by people."""
    triggers, manual = [], []
    for line, text in items:
        metric = metric_from_sentence(text, trigger=True)
        if metric is None:
            manual.append(text)
            continue
        suffix = "_spike" if metric.bad is Direction.UP else "_drop"
        metric = _with_unique_key(replace(metric, key=metric.key + suffix), keys)
        triggers.append(metric)
        reader.report(line, f"made the trigger “{metric.name}” ({rule_summary(metric)}); {FILL_IN_QUERY}")
    return triggers, manual


def manual_triggers_beside_gate(
    items: list[tuple[Line, str]], triggers: list[Metric], reader: Reader
) -> list[str]:
    """With a Metric Gate table, a trigger sentence only restates a row of it; the table wins."""
    manual = []
    exported = {trigger_sentence(t) for t in triggers}
    # The first row of each name, by its place in the table: a look-up per sentence rather
    # than a scan of the table, which made long lists quadratic.
    by_name: dict[str, tuple[int, Metric]] = {}
    for place, trigger in enumerate(triggers):
        by_name.setdefault(trigger.name.lower(), (place, trigger))
    for line, text in items:
        if text in exported:
            continue
        said = metric_from_sentence(text, trigger=True)
        names = {sentence_subject(text).lower(), said.name.lower()} if said else set()
        rows = [by_name[n] for n in names if n in by_name]
        row = min(rows, key=lambda found: found[0])[1] if rows else None
        if said is None:
            manual.append(text)
        elif row is None:
            manual.append(text)
            reader.report(
                line,
                "reads like a metric, but the Metric Gate table has no such trigger; kept to check by hand",
            )
        elif (said.rule, said.threshold, said.bad, said.comparison) != (
            row.rule,
            row.threshold,
            row.bad,
            row.comparison,
        ):
            reader.report(
                line, f"disagrees with the Metric Gate table ({rule_summary(row)}); the table is used"
            )
    return manual


class Keys:
    """The metric keys a plan has given out. A key given out before becomes the first free one
    of `key_2`, `key_3`, … Keys are never given back, so the search for a key goes on where the
    last one stopped: k metrics of one key cost k steps, not k²/2."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self._next: dict[str, int] = {}  # key -> the suffix to try first

    def unique(self, key: str) -> str:
        found = key
        if key in self.taken:
            n = self._next.get(key, 2)
            while f"{key}_{n}" in self.taken:
                n += 1
            found = f"{key}_{n}"
            self._next[key] = n + 1
        self.taken.add(found)
        return found


def _with_unique_key(metric: Metric, keys: Keys) -> Metric:
    key = keys.unique(metric.key)
    return metric if key == metric.key else replace(metric, key=key)
