"""The words a plan document shares between the importer and the export, both ways.

The export (messages/plan_document.py) writes steps, rollback triggers and the Metric Gate
table in these words; the importer reads them back to the same values. A change to one side
belongs next to the other, here:

- a step: "25% — 3000 users, at least 1 business day", "internal (0%) — …";
- a metric's rule in a sentence: "Error rate increases by more than 0.5 pp" (a change against
  the baseline), "Checkout errors go above 50" (a bound), "Records … is not zero", with its
  comparison as written: "less than"/"under"/"<" is strict, "at most"/"no more than"/"≤" is
  inclusive (a trigger's "more than" fires beyond the threshold: inclusive; "at least": strict);
- a rule in a report: "absolute, +0.5 pp vs baseline", "upper bound, 50", "must be 0";
- the Metric Gate table: its introduction, its columns and the two kinds of row.
"""

from __future__ import annotations

import re

from bot.domain.plans.model import JUDGES, MANN_WHITNEY, Comparison, Direction, Metric, Rule, Step

# --- the Metric Gate table and the Rollback Triggers list ------------------------------------

ROLLBACK_INTRO = "Immediately halt and rollback if:"
GATE_INTRO = (
    "How the bot checks the success criteria and rollback triggers in Datadog; change them with "
    "`/rollout metrics`. A query may use `{feature}`, `{flag}` and `{service}`."
)
GATE_COLUMNS = (
    "Kind", "Key", "Metric", "Rule", "Threshold", "Unit", "Worse when",
    "Aggregator", "Window (min)", "Query", "Control query", "Judge", "At threshold",
)  # fmt: skip
# The Query cell holds one Datadog query or a formula with its named queries and minimum
# traffic, in the text of bot/domain/formulas.py: `100 * errors / hits; errors = …; hits = …;
# at least 500 hits`. The Judge cell: empty, or "mann-whitney", then ", critical" and/or
# ", weight 2" (bot/domain/canary.py). Tables written before these had no Judge column.
JUDGE_CELL = re.compile(
    r"^(?P<judge>[a-z-]+)(?P<critical>,\s*critical)?(?:,\s*weight\s+(?P<weight>\d+(?:\.\d+)?))?$"
)


def judge_cell(metric: Metric) -> str:
    if not metric.judge:
        return ""
    critical = ", critical" if metric.critical else ""
    weight = f", weight {num(metric.weight)}" if metric.weight != 1 else ""
    return f"{metric.judge}{critical}{weight}"


def judge_from_cell(text: str) -> tuple[str, bool, float]:
    """(judge, critical, weight) of a Judge cell; ValueError when it is not one."""
    text = text.strip().lower()
    if not text:
        return "", False, 1.0
    match = JUDGE_CELL.match(text)
    if not match or match["judge"] not in JUDGES:
        raise ValueError(f"judge must be empty or “{MANN_WHITNEY}”, optionally “, critical” and “, weight N”")
    weight = float(match["weight"]) if match["weight"] else 1.0
    if weight <= 0:
        raise ValueError("a judged metric's weight must be above 0")
    return match["judge"], bool(match["critical"]), weight


# The "At threshold" cell: does a value exactly at the threshold keep the rule? A table
# without the column (exported before it existed) means "passes", as the bot then judged.
AT_THRESHOLD = {Comparison.INCLUSIVE: "passes", Comparison.STRICT: "fails"}
SUCCESS_KIND = "success criterion"
TRIGGER_KIND = "rollback trigger"

# --- numbers ---------------------------------------------------------------------------------

# A number as export writes it (Python's shortest form: "25", "0.5", "1e-06").
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?"


def num(value: float) -> str:
    """Shortest text that reads back as the same float: 0.5, 25, 0.05."""
    text = f"{value:g}"
    return text if float(text) == value else repr(float(value))


def amount(value: float, unit: str) -> str:
    if unit == "%":
        return f"{num(value)}%"
    return f"{num(value)} {unit}" if unit else num(value)


# --- steps -------------------------------------------------------------------------------------

# An exported step: "25% — 3000 users, at least 1 business day", "internal (0%) — …".
# `(?<!\s)`: see the sentence patterns below.
STEP_LINE = re.compile(
    rf"^(?:(?P<label>[^—]+?)(?<!\s)\s+\((?P<labelled>{NUMBER})%\)|(?P<percent>{NUMBER})%)(?:\s+—\s+(?P<details>.+))?$"
)
# A number of users is a few digits. Longer runs are not read as one: int() of a run of
# thousands of digits takes time quadratic in its length, and past 4,300 digits it refuses.
MAX_USER_DIGITS = 15
STEP_USERS = re.compile(r"^(?P<users>\d{1,3}(?:,\d{3})+|\d+) users?$")
STEP_SOAK = re.compile(rf"^at least (?P<days>{NUMBER}) business days?$")


def step_line(step: Step) -> str:
    """A step as a `**Steps:**` list item, in the form `step_from_line` reads."""
    share = f"{step.label} ({num(step.percent)}%)" if step.label else f"{num(step.percent)}%"
    details = []
    if step.desired_users is not None:
        details.append(f"{step.desired_users} users")
    if step.min_business_days:
        days = num(step.min_business_days)
        details.append(f"at least {days} business day{'' if days == '1' else 's'}")
    if step.advance:
        details.append(f"{step.advance} advance")  # how it is reached (bot/domain/windows.py)
    return f"{share} — {', '.join(details)}" if details else share


def step_from_line(text: str) -> Step | None:
    match = STEP_LINE.match(text)
    if not match:
        return None
    percent = float(match["percent"] or match["labelled"])
    users, days, advance = None, 0.0, ""
    for detail in match["details"].split(", ") if match["details"] else []:
        if (m := STEP_USERS.match(detail)) and len(m["users"]) <= MAX_USER_DIGITS:
            users = int(m["users"].replace(",", ""))
        elif m := STEP_SOAK.match(detail):
            days = float(m["days"])
        elif detail.strip().lower() in ("auto advance", "manual advance"):
            advance = detail.strip().lower().split()[0]
        else:
            return None
    label = (match["label"] or "").strip()
    return Step(percent, desired_users=users, min_business_days=days, label=label, advance=advance)


# --- a metric's rule in a sentence ---------------------------------------------------------------

# In these patterns a lazy subject is followed by `(?<!\s)\s+`: the shortest subject never ends
# inside a run of spaces (ending before the run matches first), and saying so stops the search
# from retrying the whole run at each of its spaces, which was quadratic in the run's length.

# A metric that moves: "Error rate increases by more than 0.5%" (a trigger),
# "Latency increases by no more than 10% of its baseline" (a criterion).
CHANGE = re.compile(
    r"^(?P<subject>.+?)(?<!\s)\s+(?P<verb>increases|rises|grows|decreases|drops|falls)\s+(?:by\s+)?"
    r"(?P<cmp>no more than|at most|less than|under|at least|more than|over)\s+(?P<amount>-?\d+(?:\.\d+)?)\s*"
    r"(?P<unit>%|pp|percentage points?|[^\s\d][^\s]*?)?(?P<relative>\s+of (?:its |the )?baseline)?\.?$",
    re.I,
)
# A metric against a bound: "Checkout errors go above 50", "Conversion stays above 2%",
# "Checkout errors reach or go above 50" (a trigger that fires at 50 itself).
BOUND = re.compile(
    r"^(?P<subject>.+?)(?<!\s)\s+(?:(?P<reaches>reaches or goes)|goes|go|is|stays|remains)\s+"
    r"(?P<side>above|over|below|under)\s+"
    r"(?P<amount>-?\d+(?:\.\d+)?)\s*(?P<unit>%|[^\s\d][^\s]*?)?\.?$",
    re.I,
)
# "Records not of type 5103 is not zero" (trigger), "… stays at zero" (criterion).
NOT_ZERO = re.compile(r"^(?P<subject>.+?)(?<!\s)\s+(?:is|are) not zero\.?$", re.I)
STAYS_ZERO = re.compile(r"^(?P<subject>.+?)(?<!\s)\s+(?:is|are|stays|stay|remains) (?:at )?zero\.?$", re.I)
# A Success Metrics target such as "<0.1% increase" or "< 10% increase".
TARGET = re.compile(
    r"^(?P<op><=|[<≤])\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>%|pp|[a-z]+)?\s+(?P<verb>increase|decrease|rise|drop)$",
    re.I,
)
# Metrics the importer can name from prose, with the key, name and unit the built-in
# templates use, so an imported plan reads like one of ours.
ERROR_RATE = re.compile(r"\berror[- ]?rates?\b", re.I)
LATENCY = re.compile(r"\blatency\b", re.I)
PERCENTILE = re.compile(r"\bp(?P<n>\d{2,3})\b", re.I)


# The comparison a sentence's words make, read as a success criterion's rule; a trigger's words
# say when it fires, so its rule is the other side ("more than 0.5" fires beyond 0.5: the rule
# keeps 0.5 itself, inclusive).
STRICT_WORDS = frozenset({"less than", "under", "at least", "<"})


def comparison_of(words: str) -> Comparison:
    return Comparison.STRICT if words.lower() in STRICT_WORDS else Comparison.INCLUSIVE


def trigger_sentence(metric: Metric) -> str:
    """A trigger in words that `metric_from_sentence` reads back to the same rule."""
    verb = "increases" if metric.bad is Direction.UP else "decreases"
    by = "by at least" if metric.comparison is Comparison.STRICT else "by more than"
    match metric.rule:
        case Rule.RELATIVE:
            return f"{metric.name} {verb} {by} {num(metric.threshold)}% of its baseline"
        case Rule.ABSOLUTE:
            unit = "pp" if metric.unit == "%" else metric.unit
            return f"{metric.name} {verb} {by} {num(metric.threshold)}{' ' + unit if unit else ''}"
        case Rule.UPPER | Rule.LOWER if metric.comparison is Comparison.STRICT:
            side = "above" if metric.rule is Rule.UPPER else "below"
            return f"{metric.name} reaches or goes {side} {amount(metric.threshold, metric.unit)}"
        case Rule.UPPER:
            return f"{metric.name} goes above {amount(metric.threshold, metric.unit)}"
        case Rule.LOWER:
            return f"{metric.name} goes below {amount(metric.threshold, metric.unit)}"
        case Rule.ZERO:
            return f"{metric.name} is not zero"


def metric_from_sentence(text: str, *, trigger: bool) -> Metric | None:
    """A metric from a sentence like "Error rate increases by more than 0.5%".

    A bare "%" means percentage points for a metric that is itself a rate (error rate) and a
    change relative to the baseline otherwise (latency); "pp" and "% of its baseline" say it
    outright. "Above"/"below" is the side that fires a trigger or that a criterion stays on."""
    if m := CHANGE.match(text):
        key, name, unit = known_metric(m["subject"])
        bad = Direction.UP if m["verb"].lower() in ("increases", "rises", "grows") else Direction.DOWN
        token = (m["unit"] or "").lower()
        if token.startswith(("pp", "percentage point")):
            rule, unit = Rule.ABSOLUTE, "%"
        elif token == "%":
            rule = Rule.RELATIVE if m["relative"] or unit != "%" else Rule.ABSOLUTE
        elif token:
            rule, unit = Rule.ABSOLUTE, token
        else:
            rule = Rule.ABSOLUTE
        cmp = comparison_of(m["cmp"])
        return Metric(key, name, "", rule, float(m["amount"]), bad, unit=unit, comparison=cmp)
    if m := BOUND.match(text):
        key, name, unit = known_metric(m["subject"])
        above = m["side"].lower() in ("above", "over")
        rule = Rule.UPPER if above == trigger else Rule.LOWER
        bad = Direction.UP if rule is Rule.UPPER else Direction.DOWN
        # "stays below 250" keeps under 250 (strict); a trigger "goes above 50" fires beyond 50
        # only, so 50 itself keeps its rule (inclusive); "reaches or goes above 50" fires at 50.
        strict = not trigger or bool(m["reaches"])
        cmp = Comparison.STRICT if strict else Comparison.INCLUSIVE
        return Metric(key, name, "", rule, float(m["amount"]), bad, unit=m["unit"] or unit, comparison=cmp)
    if m := (NOT_ZERO if trigger else STAYS_ZERO).match(text):
        key, name, unit = known_metric(m["subject"])
        return Metric(key, name, "", Rule.ZERO, aggregator="sum", unit=unit)
    return None


def sentence_subject(sentence: str) -> str:
    """The metric a trigger sentence names, as written."""
    match = CHANGE.match(sentence) or BOUND.match(sentence) or NOT_ZERO.match(sentence)
    return match["subject"] if match else ""


def known_metric(subject: str) -> tuple[str, str, str]:
    """Key, name and unit for a metric named in prose: ours for error rate and latency, else
    the words as written."""
    if ERROR_RATE.search(subject):
        return "error_rate", "Error rate", "%"
    if LATENCY.search(subject):
        if p := PERCENTILE.search(subject):
            return f"latency_p{p['n']}", f"Latency (p{p['n']})", "ms"
        return "latency", "Latency", "ms"
    name = subject.strip()
    name = name[:1].upper() + name[1:]
    return slug(name), name, "%" if re.search(r"\brate\b", name, re.I) else ""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "metric"


def rule_summary(metric: Metric) -> str:
    """E.g. "absolute, +0.5 pp vs baseline", "relative, +50% vs baseline", "must be 0"; a
    strict rule adds "exactly at it fails"."""
    summary = _rule_summary(metric)
    if metric.comparison is Comparison.STRICT and metric.rule is not Rule.ZERO:
        summary += ", exactly at it fails"
    return summary


def _rule_summary(metric: Metric) -> str:
    sign = "+" if metric.bad is Direction.UP else "−"
    match metric.rule:
        case Rule.RELATIVE:
            return f"relative, {sign}{num(metric.threshold)}% vs baseline"
        case Rule.ABSOLUTE:
            unit = "pp" if metric.unit == "%" else metric.unit
            return f"absolute, {sign}{amount(metric.threshold, unit)} vs baseline"
        case Rule.UPPER:
            return f"upper bound, {amount(metric.threshold, metric.unit)}"
        case Rule.LOWER:
            return f"lower bound, {amount(metric.threshold, metric.unit)}"
        case Rule.ZERO:
            return "must be 0"
