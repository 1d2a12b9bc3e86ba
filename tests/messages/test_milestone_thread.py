"""`milestone_thread` is `milestone(...)[0]` without the stakeholder line, which announcing
renders only when a stakeholder channel will get it: the thread message must be the same one,
push text and blocks, for every kind of milestone (the snapshots hold `milestone`'s)."""

from __future__ import annotations

from typing import Any

import pytest

from messages.announcements import milestone, milestone_thread
from messages.views import RolloutView
from tests.messages import samples as s

CASES: dict[str, tuple[str, RolloutView, dict[str, Any]]] = {
    "started": ("started", s.rollout(), {"actor": "U_OWNER"}),
    "advanced": ("advanced", s.rollout(phase=1), {"actor": "U_OWNER", "phase_done": "Internal Testing"}),
    "overridden": (
        "advanced",
        s.rollout(phase=1),
        {"actor": "U_OWNER", "override": True, "reason": "QA said yes", "blockers": ["No P1 bugs open."]},
    ),
    "completed": ("completed", s.rollout("completed", phase=2), {"actor": "U_OWNER"}),
    "paused": ("paused", s.rollout("paused", phase=1), {"actor": None, "reason": "error rate *up*"}),
    "resumed": ("resumed", s.rollout(phase=1), {"actor": "U_OWNER"}),
    "rolled_back": ("rolled_back", s.rollout("rolled_back", phase=1), {"reason": "checkout errors"}),
    "update": ("update", s.rollout(phase=1), {"actor": "U_ANA", "text": "1% looks <healthy>"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_thread_message_alone_is_the_milestones(case: str) -> None:
    kind, view, extra = CASES[case]
    assert milestone_thread(kind, view, **extra) == milestone(kind, view, **extra)[0]
