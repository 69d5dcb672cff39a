"""The worker makes its full garbage collections itself, paced (jobs_worker._collector): none by
CPython, at most one per MIN_INTERVAL, and what it loaded at start is frozen."""

from __future__ import annotations

import gc
import weakref

from jobs_worker._collector import MIN_INTERVAL, PacedCollector


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def _old_garbage() -> weakref.ref[_Node]:
    """A cycle that lived long enough to reach the oldest generation, then died."""
    node = _Node()
    gc.collect(0)
    gc.collect(1)  # survived twice: now in the oldest generation
    return weakref.ref(node)


def test_full_collections_come_only_when_due_and_free_old_cycles():
    clock = _Clock()
    collector = PacedCollector(clock)
    before = gc.get_threshold()
    collector.start()
    try:
        assert gc.get_freeze_count() > 0  # the start is frozen
        assert gc.get_threshold()[:2] == before[:2]  # the young generations as always
        assert gc.get_threshold()[2] == 2**31 - 1  # the oldest: never by CPython
        dead = _old_garbage()
        gc.collect(1)
        assert dead() is not None  # young collections leave the oldest generation alone

        clock.now += MIN_INTERVAL - 1
        assert collector.collect_if_due() is None
        assert dead() is not None
        clock.now += 1
        took = collector.collect_if_due()
        assert took is not None
        assert took >= 0
        assert dead() is None

        # The next one waits MIN_INTERVAL again (a quick collection costs well under 1 %).
        clock.now += MIN_INTERVAL - 1
        assert collector.collect_if_due() is None
        clock.now += 1
        assert collector.collect_if_due() is not None
    finally:
        collector.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
