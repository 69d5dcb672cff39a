"""The worker's lease, renewed from a thread of its own while the event loop keeps turning.

The lease says "this worker is alive". Renewed from the event loop, it also said "this worker's
event loop got a turn within WORKER_LEASE_TTL", which a busy loop can fail: when the target of
10,000 held calls answered them all at once, the loop spent 3 to 6 s in one pass over 10,000
ready tasks (reading each answer, deciding, asking to record it), the heartbeat's steps waited
their turn behind them, the 4-second lease lapsed (in each of two runs of ``make bench-scale``'s
drain) and every one of those calls was free to be taken over and made again, though nothing
had failed.

So a thread renews it, with its own event loop and its own connections to Redis and PostgreSQL
(one each), every WORKER_HEARTBEAT_INTERVAL, for as long as the worker's own loop has turned
within WORKER_LOOP_STALL_LIMIT (a callback it runs every TICK_S proves that). A worker that
dies, or is stopped (SIGSTOP stops every thread), loses its lease within WORKER_LEASE_TTL as
before; one whose loop is stuck, within the stall limit plus the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

__all__ = ["TICK_S", "LeaseKeeper", "Renewal"]

logger = logging.getLogger(__name__)

TICK_S = 0.1  # how often the worker's loop says it turned
JOIN_TIMEOUT_S = 5.0

# Made inside the keeper's thread (its connections belong to that thread's loop); gives one
# renewal of everything the lease covers.
Renewal = Callable[[], AbstractAsyncContextManager[Callable[[], Awaitable[None]]]]


class LeaseKeeper:
    def __init__(self, renewal: Renewal, interval_s: float, stall_limit_s: float) -> None:
        self._renewal = renewal
        self._interval_s = interval_s
        self._stall_limit_s = stall_limit_s
        self._last_turn = time.monotonic()
        self._tick: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        # Figures for tests: renewals made, and passes skipped because the loop had stalled.
        self.renewals = 0
        self.skipped = 0

    def start(self) -> None:
        """Starts the ticks on the running loop, then the thread (its first renewal at once)."""
        self._turned()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()
        self._started.wait(JOIN_TIMEOUT_S)

    async def stop(self) -> None:
        """Stops renewing (the lease is given up or lapses after this) and waits for the thread."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # its loop already closed
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, JOIN_TIMEOUT_S)
            self._thread = None

    def _turned(self) -> None:
        self._last_turn = time.monotonic()
        self._tick = asyncio.get_running_loop().call_later(TICK_S, self._turned)

    def _run(self) -> None:
        asyncio.run(self._keep())

    async def _keep(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        self._started.set()
        while not self._stopping.is_set():
            try:
                async with self._renewal() as renew:
                    await self._renew_until_stopped(renew)
            except Exception:  # its connections could not be made: again, after an interval
                logger.exception("the lease keeper could not connect; trying again in %.1fs", self._interval_s)
                await self._wait()

    async def _renew_until_stopped(self, renew: Callable[[], Awaitable[None]]) -> None:
        assert self._stopping is not None
        stalled = False
        while not self._stopping.is_set():
            since_turn = time.monotonic() - self._last_turn
            if since_turn > self._stall_limit_s:
                self.skipped += 1
                if not stalled:
                    logger.error(
                        "the worker's event loop has not turned for %.0fs: its lease is no longer renewed, "
                        "and its calls will be taken over",
                        since_turn,
                    )
                stalled = True
            else:
                if stalled:
                    logger.warning("the worker's event loop turns again; renewing its lease")
                stalled = False
                await self._renew(renew)
            await self._wait()

    async def _wait(self) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._interval_s)

    async def _renew(self, renew: Callable[[], Awaitable[None]]) -> None:
        try:
            await renew()
        except Exception:  # a keeper that stopped would hand every call to another worker
            logger.exception("lease renewal failed; trying again in %.1fs", self._interval_s)
        else:
            self.renewals += 1
