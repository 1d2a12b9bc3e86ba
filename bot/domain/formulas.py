"""A metric's source in Datadog as people write it: one query, or named queries and a formula.

One text form, shared by the Markdown plan (the Metric Gate's Query cell) and the
`/rollout metrics` form (its query field). Parts are separated by `;` or new lines:

- one Datadog query, as always: `avg:trace.http.request.duration{service:{service}}`;
- or a formula over named queries, with an optional minimum of traffic:
  `100 * errors / hits; errors = sum:…errors{…}.as_count(); hits = sum:…hits{…}.as_count();
  at least 500 hits`.

Rules (each broken one is a `SourceError` saying which):

- a query name is a lower-case letter then letters, digits or `_`, at most 32 characters, and
  each name is given once;
- a formula holds only query names, numbers, `+ - * / ( )` and spaces (nothing else reaches
  Datadog), is a well-formed expression, and uses only names that are given;
- every named query is used by the formula or by the minimum;
- `at least N name` names one of the queries; N is a number above 0. Only formulas have it:
  a plain query has no name to count.

The control cohort (`control_query`) of a formula metric is written as the same named
queries on the control cohort, without formula or minimum: `errors = …; hits = …`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Source", "SourceError", "control_text", "parse_control", "parse_source", "source_text"]

NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ASSIGN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<query>.*)$", re.S)
_AT_LEAST = re.compile(r"^at least\s+(?P<count>\d+(?:\.\d+)?)\s+(?P<name>\S+)$", re.I)
_PARTS = re.compile(r"[;\n]")
_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/()]))")
FORMULA_CHARS = re.compile(r"^[A-Za-z0-9_.+\-*/() ]+$")


class SourceError(ValueError):
    """What is wrong with a metric's source, in words for the person who wrote it."""


@dataclass(frozen=True)
class Source:
    """`query` for a plain metric; `queries` (name, query) and `formula` for a formula one."""

    query: str = ""
    queries: tuple[tuple[str, str], ...] = ()
    formula: str = ""
    min_count: tuple[str, float] | None = None


def _parts(text: str) -> list[str]:
    return [part.strip() for part in _PARTS.split(text) if part.strip()]


def _named(parts: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    named: list[tuple[str, str]] = []
    rest: list[str] = []
    for part in parts:
        if assign := _ASSIGN.match(part):
            name, query = assign["name"], assign["query"].strip()
            if not NAME.fullmatch(name):
                raise SourceError(
                    f"“{name}” cannot name a query: use a lower-case letter, then letters, digits or _"
                )
            if not query:
                raise SourceError(f"the query “{name}” is empty")
            if any(name == seen for seen, _ in named):
                raise SourceError(f"the query “{name}” is given twice")
            named.append((name, query))
        else:
            rest.append(part)
    return named, rest


def parse_source(text: str) -> Source:
    """The source a query cell or field describes (rules in the module docstring)."""
    parts = _parts(text)
    named, rest = _named(parts)
    minimums = [m for part in rest if (m := _AT_LEAST.match(part))]
    rest = [part for part in rest if not _AT_LEAST.match(part)]
    if not named:
        if minimums:
            raise SourceError("“at least …” counts one of a formula's named queries; this has none")
        if len(rest) > 1:
            raise SourceError("give one query, or a formula with named queries (name = query)")
        return Source(query=rest[0] if rest else "")
    if len(rest) != 1:
        raise SourceError("give exactly one formula, such as 100 * errors / hits, beside the named queries")
    formula = " ".join(rest[0].split())
    names = {name for name, _ in named}
    used = check_formula(formula, names)
    minimum: tuple[str, float] | None = None
    if len(minimums) > 1:
        raise SourceError("give at most one “at least N name”")
    if minimums:
        count, counted = float(minimums[0]["count"]), minimums[0]["name"]
        if counted not in names:
            raise SourceError(f"“at least {minimums[0]['count']} {counted}”: there is no query “{counted}”")
        if count <= 0:
            raise SourceError("the minimum traffic must be above 0")
        minimum = (counted, count)
    unused = [name for name, _ in named if name not in used and (minimum is None or name != minimum[0])]
    if unused:
        raise SourceError(f"the query “{unused[0]}” is not used by the formula")
    return Source(queries=tuple(named), formula=formula, min_count=minimum)


def check_formula(formula: str, names: set[str]) -> set[str]:
    """The names a well-formed formula uses; SourceError when it is not one (module rules)."""
    if not FORMULA_CHARS.fullmatch(formula):
        bad = sorted({c for c in formula if not FORMULA_CHARS.fullmatch(c)})
        raise SourceError(
            f"a formula holds only query names, numbers, + - * / ( ) and spaces, not {' '.join(bad)}"
        )
    tokens: list[tuple[str, str]] = []
    at = 0
    while at < len(formula):
        match = _TOKEN.match(formula, at)
        if match is None or match.end() == at:
            raise SourceError(f"the formula “{formula}” cannot be read at “{formula[at:].strip()}”")
        kind = match.lastgroup or ""
        tokens.append((kind, match[kind]))
        at = match.end()
        while at < len(formula) and formula[at] == " ":
            at += 1
    used = {value for kind, value in tokens if kind == "name"}
    unknown = sorted(used - names)
    if unknown:
        raise SourceError(f"the formula uses “{unknown[0]}”, which is not one of its named queries")
    if not _Expression(tokens).complete():
        raise SourceError(f"the formula “{formula}” is not a complete expression")
    return used


class _Expression:
    """Recursive descent over: expr = term (('+'|'-') term)*; term = factor (('*'|'/') factor)*;
    factor = ('-'|'+') factor | number | name | '(' expr ')'."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def complete(self) -> bool:
        return self._expr() and self.at == len(self.tokens)

    def _peek(self) -> str:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else ""

    def _expr(self) -> bool:
        if not self._term():
            return False
        while self._peek() in ("+", "-"):
            self.at += 1
            if not self._term():
                return False
        return True

    def _term(self) -> bool:
        if not self._factor():
            return False
        while self._peek() in ("*", "/"):
            self.at += 1
            if not self._factor():
                return False
        return True

    def _factor(self) -> bool:
        if self.at >= len(self.tokens):
            return False
        kind, value = self.tokens[self.at]
        self.at += 1
        if value in ("-", "+"):
            return self._factor()
        if kind in ("number", "name"):
            return True
        if value == "(":
            if not self._expr() or self._peek() != ")":
                return False
            self.at += 1
            return True
        return False


def check_metric(
    queries: tuple[tuple[str, str], ...],
    formula: str,
    min_count: tuple[str, float] | None,
    control_queries: tuple[tuple[str, str], ...] = (),
) -> None:
    """SourceError when a stored or templated formula metric breaks the rules; a plain metric
    (no named queries) has nothing to check here."""
    if not queries:
        return
    source = parse_source(source_text("", queries, formula, min_count))
    if (source.queries, source.formula) != (queries, formula):
        raise SourceError("its queries do not read back as written (a name or a query holds ; or a new line)")
    if control_queries:
        parse_control(control_text("", control_queries), tuple(name for name, _ in queries))


def parse_control(text: str, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """A formula metric's control cohort: the same named queries, nothing else."""
    named, rest = _named(_parts(text))
    if rest:
        raise SourceError("the control cohort of a formula metric is its named queries only (name = query)")
    if tuple(name for name, _ in named) != names:
        raise SourceError(f"the control cohort needs the queries {', '.join(names)}, in that order")
    return tuple(named)


def source_text(query: str, queries: tuple[tuple[str, str], ...], formula: str, min_count: object) -> str:
    """The one-line text `parse_source` reads back to the same source."""
    if not queries:
        return query
    parts = [formula, *(f"{name} = {q}" for name, q in queries)]
    if isinstance(min_count, tuple) and len(min_count) == 2:
        count = float(min_count[1])
        parts.append(f"at least {int(count) if count.is_integer() else count!r} {min_count[0]}")
    return "; ".join(parts)


def control_text(control_query: str, control_queries: tuple[tuple[str, str], ...]) -> str:
    if not control_queries:
        return control_query
    return "; ".join(f"{name} = {q}" for name, q in control_queries)
