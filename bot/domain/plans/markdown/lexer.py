"""A plan document cut into what the reader works on: numbered lines, plans and sections.

- Every line keeps its number (1-based, from the document's start) and loses the white space
  around it.
- A title (`# ` heading) starts a plan; a document may hold several.
- Every other heading starts a section, whose kind is known from its words ("Overview",
  "Phase 2: Canary", "Metric Gate", …) or "unknown". A "Planning" heading under a phase
  continues that phase (the back-end questionnaire's layout).
- The shapes a line can take inside a section (a `**Field:**`, a `> quote`, a list item, a
  table row, a thematic break) are the patterns below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The largest document the importer reads, in bytes of UTF-8: 1 MiB. Hand-written plans are a
# few KB (the seeds are under 3 KB) and an export with a run's results some tens of KB; 1 MiB
# is about 35,000 lines, hundreds of phases, and still parses in well under a second. The text
# is also kept as the template's source in the database. Anything larger is not a plan written
# by people, and is refused before any of it is read.
MAX_DOCUMENT_BYTES = 1024 * 1024


class DocumentTooLarge(ValueError):
    """A document over MAX_DOCUMENT_BYTES; the message says the size and the limit."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the plan document is {size:,} bytes; documents of up to {MAX_DOCUMENT_BYTES:,} bytes "
            "(1 MiB) are imported. Split it into smaller documents."
        )
        self.size = size


def check_size(text: str) -> None:
    """Raises DocumentTooLarge for a document over MAX_DOCUMENT_BYTES."""
    if len(text) <= MAX_DOCUMENT_BYTES // 4:  # a character is at most 4 bytes of UTF-8
        return
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(size)


# --- the shapes of lines ------------------------------------------------------------------

# "## Phase I: Canary (1%)"; the number of #s only matters for the title (one #). A closing
# run of #s after a space is layout (CommonMark), so "## Overview ##" is "Overview". The closing
# run is only tried where the text ends on a non-space (`(?<!\s)`, where the shortest text ends
# anyway), so that a long run of spaces is not retried from each of its spaces (quadratic).
HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.*?)(?:(?<!\s)\s++#++)?$")
# "Phase 1: Internal Testing", "Phase II: 25% - 100%".
PHASE_HEADING = re.compile(r"^Phase\s+(?:\d+|[IVXLC]+)\b\s*[:.)\-–—]?\s*(?P<name>.*)$", re.I)
# "**Owner:** [PM Name]", "**Tasks:**": a bold label and what follows it.
FIELD = re.compile(r"^\*\*(?P<key>[^*]+?):\*\*\s*(?P<value>.*)$")
# "> Deploy to internal team members": a phase's description.
QUOTE = re.compile(r"^>\s?(?P<text>.*)$")
# "- [ ] Deploy to staging", "- [x] Done", "- DataDog: …": a list item, checkbox or not.
BULLET = re.compile(r"^[-*+]\s+(?:\[[ xX]\]\s*)?(?P<text>.*)$")
# "---": a thematic break, layout only.
BREAK = re.compile(r"^(?:-{3,}|\*{3,}|_{3,})$")
# "| a | b |": a table row; "|---|:--:|": the row under a table's header.
TABLE_ROW = re.compile(r"^\|.*\|$")
TABLE_RULE = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+$")
# A cell boundary: a pipe not escaped as `\|`.
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
# A template blank still to be filled in, e.g. "[X days]", "[1-10]%".
PLACEHOLDER = re.compile(r"\[[^\]]*\]")

# Section headings by their words (trailing ":" and case ignored); phases by PHASE_HEADING.
SECTION_KINDS = {
    "planning": "planning",
    "results": "results",
    "charts": "results",  # pictures of a past run (the export's chart files), like its results
    "overview": "overview",
    "rollout strategy": "strategy",
    "success metrics": "success_metrics",
    "rollback triggers": "rollback",
    "metric gate": "metric_gate",
}


@dataclass(frozen=True)
class Line:
    number: int
    text: str  # without surrounding white space


@dataclass
class Section:
    kind: str
    heading: Line | None
    title: str
    body: list[Line] = field(default_factory=list)
    continued: list[Line] = field(default_factory=list)  # "Planning" headings folded into a phase


def lines(text: str) -> list[Line]:
    return [Line(n, raw.strip()) for n, raw in enumerate(text.splitlines(), 1)]


def split_plans(lines: list[Line]) -> list[list[Line]]:
    """Cuts a document before every title (`# `) but the first."""
    groups: list[list[Line]] = [[]]
    titles = 0
    for line in lines:
        if is_title(line):
            titles += 1
            if titles > 1:
                groups.append([])
        groups[-1].append(line)
    return groups


def is_title(line: Line) -> bool:
    heading = HEADING.match(line.text)
    return bool(heading and len(heading["hashes"]) == 1)


def sections(lines: list[Line]) -> list[Section]:
    """Cuts a plan at its headings. A "Planning" heading continues its phase."""
    found = [Section("header", None, "")]
    for line in lines:
        heading = HEADING.match(line.text)
        if not heading:
            found[-1].body.append(line)
            continue
        kind = section_kind(heading["text"], len(heading["hashes"]))
        if kind == "planning" and found[-1].kind == "phase":
            found[-1].continued.append(line)
            continue
        found.append(Section(kind, line, heading["text"]))
    return found


def section_kind(title: str, level: int) -> str:
    if level == 1:
        return "header"
    if PHASE_HEADING.match(title):
        return "phase"
    return SECTION_KINDS.get(title.rstrip(":").strip().lower(), "unknown")


def has_placeholder(text: str) -> bool:
    """Whether `text` holds a blank like "[X days]": `PLACEHOLDER.search` without its scan to
    the line's end from every "[" (quadratic on a line like "[[[[…")."""
    start = text.find("[")
    return start >= 0 and text.find("]", start + 1) >= 0


def table_cells(text: str) -> list[str]:
    """The cells of a table row `| a | b \\| c |`: ["a", "b | c"]. `\\|` is a pipe in a cell."""
    return [c.strip().replace("\\|", "|") for c in CELL_SEPARATOR.split(text[1:-1])]
