"""The web worker and the work process freeze what they start with (bot/runtime.py
`freeze_start_up_objects`), so a full collection no longer walks it: garbage first collected,
what is alive then frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bot.runtime import start_web_worker


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite collects as usual


def test_a_web_worker_freezes_what_is_alive_and_collects_what_is_not(thawed: None) -> None:
    alive = [[n] for n in range(1000)]  # 1,001 tracked objects
    garbage = Node()
    garbage.other = Node()
    garbage.other.other = garbage  # a cycle only a collection frees
    gone = weakref.ref(garbage)
    del garbage
    assert gc.get_freeze_count() == 0

    start_web_worker(bolt=None, app_token=None)  # HTTP: no socket to open

    assert gone() is None  # collected before the freeze, not kept for good
    assert gc.get_freeze_count() >= len(alive)
    assert all(gc.is_tracked(item) for item in alive)
