"""The worker's cyclic garbage collection, paced.

A call held open for 90 seconds lives long enough for CPython to move its objects to the oldest
generation, and CPython collects that generation whenever it has grown by a quarter: while a
worker opened 10,000 calls, that was a dozen full collections, the last ones 1.1 to 1.5 s each
(measured with ``gc.callbacks`` under ``make bench-scale``), every one stopping the event loop.
Several close together starved the heartbeat, and the lease of a worker whose calls were all
running fine lapsed.

So the worker freezes what it loaded at start (it is never garbage) and makes the full
collections itself, from the heartbeat right after it renewed the lease: at most one every
MIN_INTERVAL, and rarer the longer they take, so they cost at most FULL_COLLECTION_SHARE of the
worker's time. The young generations are collected as CPython always does.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["FULL_COLLECTION_SHARE", "MIN_INTERVAL", "PacedCollector"]

FULL_COLLECTION_SHARE = 0.01
MIN_INTERVAL = 30.0  # seconds
# CPython collects the oldest generation after this many collections of the middle one: never.
_NEVER = 2**31 - 1


class PacedCollector:
    """Full collections when :meth:`collect_if_due` says so, none by CPython."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due = clock() + MIN_INTERVAL
        self._automatic: tuple[int, int, int] | None = None

    def start(self) -> None:
        """Freezes what is alive (imports, settings, pools: the worker's start) and turns off
        CPython's own full collections."""
        gc.collect()
        gc.freeze()
        self._automatic = gc.get_threshold()
        young, middle, _ = self._automatic
        gc.set_threshold(young, middle, _NEVER)

    def stop(self) -> None:
        """CPython's own collections again, over everything."""
        if self._automatic is not None:
            gc.set_threshold(*self._automatic)
            gc.unfreeze()
            self._automatic = None

    def collect_if_due(self) -> float | None:
        """Makes a full collection when one is due; returns how long it took (s), else None."""
        if self._automatic is None or self._clock() < self._due:
            return None
        started = time.perf_counter()
        gc.collect()
        took = time.perf_counter() - started
        self._due = self._clock() + max(MIN_INTERVAL, took / FULL_COLLECTION_SHARE)
        return took
