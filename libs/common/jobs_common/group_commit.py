"""Group commit: concurrent writes of one kind, coalesced into one statement per batch.

A write that arrives while no batch is being written goes out at once, alone: an idle worker
adds no delay to a claim. Writes that arrive while ``max_in_flight`` batches are being written
wait for the next one, up to ``max_batch`` per batch: under load, batches grow with the rate and
the round trip, as in graphile-worker's batched job completion and River's batch completer,
without a timer. Each caller gets its own item's answer, or the batch's error (a PostgreSQL that
did not answer fails every write of the batch, and each caller retries its own as before).

A caller that is cancelled while its batch is being written stops waiting; the batch goes on
(the statement is not cut short), and that caller's answer is given to ``on_abandoned``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Sequence[R]]],
        max_batch: int,
        max_in_flight: int = 1,
        on_abandoned: Callable[[T, R], None] | None = None,
    ) -> None:
        """``write`` takes a batch and answers one result per item, in order."""
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._write = write
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._on_abandoned = on_abandoned
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        # Figures for tests and benchmarks: batches written and the items they held.
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        """Writes ``item`` with whatever else is waiting; returns its answer."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start_flushes()
        return await future

    def _start_flushes(self) -> None:
        while self._waiting and len(self._flushes) < self._max_in_flight:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            flush = asyncio.get_running_loop().create_task(self._flush(batch))
            self._flushes.add(flush)
            flush.add_done_callback(self._flush_done)

    def _flush_done(self, flush: asyncio.Task[None]) -> None:
        self._flushes.discard(flush)
        self._start_flushes()

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._write([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} writes answered {len(results)} results")
        except asyncio.CancelledError:  # the loop is closing: so are its callers
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (item, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
            elif future.cancelled() and self._on_abandoned is not None:
                self._on_abandoned(item, result)
