"""Plan documents in Markdown, read into Plans. Pure: text in, Plan out.

`parse_plan` reads the two forms teams write by hand (see shared/seeds/):

- the house template: `# Rollout Plan: X`, `**Owner:**`-style header fields, `## Overview`,
  `## Rollout Strategy` holding `### Phase N: Name` sections (a `> description`,
  `**Duration:**`, `**Tasks:**` and `**Exit Criteria:**` checklists), a `## Success Metrics`
  table and a `## Rollback Triggers` list;
- the back-end questionnaire: `## Phase I: Canary (1%)` sections whose `### Planning` answers
  "Desired number of users:", "Desired date range or test duration:", "How will you make the
  product available…" and lists `- DataDog: …` success criteria.

The export (messages/plan_document.py) writes the template form back, plus the two things the
template has no place for and the bot needs to run a plan: a `**Steps:**` list in each phase
and a `## Metric Gate` table holding every metric's rule and Datadog query. When a document
has those, the importer takes them as written instead of reading steps and metrics out of
prose, so an exported plan imports back unchanged. The words both sides use are in
vocabulary.py.

Every non-blank line is either understood or reported as a `Problem` with its line number.
A document over MAX_DOCUMENT_BYTES (1 MiB) is refused whole with `DocumentTooLarge`. Reading
takes time linear in the document's size.
"Results" sections describe a past run, not a plan: the importer skips them.

The modules, in the order a document goes through them: lexer.py (lines, plans, sections),
reader.py (each section into drafts), metrics.py (metrics from prose or the Metric Gate) and
assembly.py (drafts into a Plan, and the entry points).
"""

from bot.domain.plans.markdown.assembly import ImportResult, parse_plan, parse_plans
from bot.domain.plans.markdown.lexer import MAX_DOCUMENT_BYTES, DocumentTooLarge
from bot.domain.plans.markdown.reader import Problem

# The data a run adds to an export, once defined here beside the writer; importable from here
# still for the callers that fill it in.
from bot.domain.plans.results import (
    Decision,
    PhaseResults,
    Reading,
    RolloutResults,
    Snapshot,
    StepReached,
    Tick,
)

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "Decision",
    "DocumentTooLarge",
    "ImportResult",
    "PhaseResults",
    "Problem",
    "Reading",
    "RolloutResults",
    "Snapshot",
    "StepReached",
    "Tick",
    "parse_plan",
    "parse_plans",
]
