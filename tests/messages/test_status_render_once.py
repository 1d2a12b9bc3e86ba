"""The status copy of a view that has not changed is not rendered again: only its "Updated"
line is new. A changed view (a box ticked) is rendered anew."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from bot.usecases.views import rollout_view
from messages.blocks import status_message
from tests.messages.test_rendering import NOW, rollout_with_items


def test_asking_twice_for_an_unchanged_rollout_renders_it_once() -> None:
    view = rollout_with_items(4, 2)
    first = status_message(rollout_view(view), now=NOW, interactive=False)
    again = status_message(rollout_view(view), now=NOW + timedelta(minutes=5), interactive=False)
    assert all(a is b for a, b in zip(first.blocks[:-1], again.blocks[:-1], strict=True))
    assert first.text == again.text
    # The footer says when, each time.
    assert first.blocks[-1] != again.blocks[-1]
    assert "Updated" in str(again.blocks[-1])


def test_a_ticked_box_is_rendered_anew() -> None:
    view = rollout_view(rollout_with_items(4))
    before = status_message(view, now=NOW)
    phase = view.phases[0]
    ticked = dataclasses.replace(phase.items[0], checked_by="U2", checked_at=NOW)
    changed = dataclasses.replace(
        view,
        revision=view.revision + 1,
        phases=(dataclasses.replace(phase, items=(ticked, *phase.items[1:])), *view.phases[1:]),
    )
    after = status_message(changed, now=NOW)
    assert before.blocks != after.blocks
    assert "U2" in str(after.blocks) and "U2" not in str(before.blocks)
