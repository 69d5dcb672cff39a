"""The lease keeper renews from a thread of its own: while the worker's event loop is busy (one
long pass over thousands of tasks, a garbage collection) the lease still is renewed; once the
loop has not turned for the stall limit, it is not, and it is again when the loop turns."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from jobs_worker._lease_keeper import LeaseKeeper


class Renewals:
    def __init__(self, fail_to_open: int = 0) -> None:
        self.times: list[float] = []
        self.threads: set[int] = set()
        self.fail_to_open = fail_to_open

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        if self.fail_to_open:
            self.fail_to_open -= 1
            raise ConnectionError("Redis did not answer")

        async def renew() -> None:
            self.times.append(time.monotonic())
            self.threads.add(threading.get_ident())

        yield renew

    def between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.times)


def _hold_the_loop(seconds: float) -> None:
    """The event loop gets no turn for ``seconds``: what a long pass over ready tasks does."""
    time.sleep(seconds)


async def test_it_renews_every_interval_from_its_own_thread():
    renewals = Renewals()
    keeper = LeaseKeeper(renewals, interval_s=0.05, stall_limit_s=1.0)
    keeper.start()
    await asyncio.sleep(0.5)
    await keeper.stop()
    assert len(renewals.times) >= 5
    assert renewals.threads
    assert threading.get_ident() not in renewals.threads
    stopped = len(renewals.times)
    await asyncio.sleep(0.2)
    assert len(renewals.times) == stopped  # none after stop


async def test_a_busy_loop_keeps_its_lease():
    renewals = Renewals()
    keeper = LeaseKeeper(renewals, interval_s=0.05, stall_limit_s=2.0)
    keeper.start()
    try:
        await asyncio.sleep(0.1)
        started = time.monotonic()
        _hold_the_loop(1.0)  # as 10,000 answers at once did
        ended = time.monotonic()
        assert renewals.between(started, ended) >= 10
        assert keeper.skipped == 0
    finally:
        await keeper.stop()


async def test_a_stuck_loop_stops_the_renewals_until_it_turns_again():
    renewals = Renewals()
    keeper = LeaseKeeper(renewals, interval_s=0.05, stall_limit_s=0.3)
    keeper.start()
    try:
        await asyncio.sleep(0.1)
        started = time.monotonic()
        _hold_the_loop(1.2)
        assert renewals.between(started + 0.3 + 0.1, time.monotonic()) == 0
        assert keeper.skipped >= 5
        resumed = time.monotonic()
        await asyncio.sleep(0.3)
        assert renewals.between(resumed, time.monotonic()) >= 2
    finally:
        await keeper.stop()


async def test_connections_that_could_not_be_made_are_tried_again():
    renewals = Renewals(fail_to_open=2)
    keeper = LeaseKeeper(renewals, interval_s=0.05, stall_limit_s=1.0)
    keeper.start()
    await asyncio.sleep(0.5)
    await keeper.stop()
    assert renewals.fail_to_open == 0
    assert len(renewals.times) >= 3
