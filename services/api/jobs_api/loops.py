"""The api's background loops: the scheduler (due ticks → executions), the reconciler
(executions Redis lost → re-dispatched), the history purge (retention) and the queue gauges.
Every replica runs them; they are safe side by side. Each records its last completed pass in
``jobscheduler_loop_last_pass_timestamp_seconds``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from datetime import UTC, datetime, timedelta

from prometheus_client import Gauge

from jobs_api.metrics import (
    DEAD_LETTERS,
    EXECUTIONS,
    FLOW_KEY_OPEN,
    FLOW_KEY_READY,
    FLOW_KEYS,
    HISTORY_PURGED,
    LOOP_LAST_PASS,
    OLDEST_READY_AGE,
    QUEUE_HELD_BACK,
    QUEUE_OPEN_DISPATCHES,
    QUEUE_PAUSED,
    WORKERS,
)
from jobs_common.arq_extension import Dispatch, Dispatcher, Flow, LimitsState, dispatch_of
from jobs_common.domain import TERMINAL_EXECUTION_STATES, ExecutionState, Retention
from jobs_common.errors import DEPENDENCY_ERRORS, REDIS_ERRORS
from jobs_common.store import (
    DeadLetters,
    FiredTicks,
    HistoryPurge,
    PurgedBatch,
    QueueStore,
    Reconciliation,
    TickStore,
)
from jobs_common.workers import WorkerRegistry

__all__ = ["BackgroundLoop", "HistoryPurgeLoop", "QueueGaugesLoop", "ReconcilerLoop", "SchedulerLoop"]

logger = logging.getLogger(__name__)


class BackgroundLoop(ABC):
    """Runs :meth:`step` until stopped; a step returns the seconds to wait before the next one.
    :meth:`wake` cuts the wait short."""

    name = "loop"

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval.total_seconds()
        self._wake = asyncio.Event()
        self._stopping = False

    def passed(self) -> None:
        """Records a completed pass."""
        LOOP_LAST_PASS.labels(self.name).set_to_current_time()

    @abstractmethod
    async def step(self) -> float: ...

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        LOOP_LAST_PASS.labels(self.name).set(0)  # never, until a pass completes
        while not self._stopping:
            delay = self.interval
            try:
                delay = await self.step()
            except DEPENDENCY_ERRORS as exc:
                logger.warning("%s: dependency unavailable (%s); retrying in %.1fs", self.name, exc, delay)
            except Exception:
                logger.exception("%s: step failed; retrying in %.1fs", self.name, delay)
            if delay > 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()


class SchedulerLoop(BackgroundLoop):
    """Fires due ticks of recurring jobs. It sleeps until the earliest next_run_time (at most
    SCHEDULER_INTERVAL, so jobs created on other replicas are seen), and is woken at once when
    this replica creates, changes or resumes a recurring job."""

    name = "scheduler"

    def __init__(self, ticks: TickStore, dispatcher: Dispatcher, interval: timedelta, batch_size: int) -> None:
        super().__init__(interval)
        self._ticks = ticks
        self._dispatcher = dispatcher
        self._batch_size = batch_size

    async def step(self) -> float:
        fired = await self.fire_due()
        if completed := await self._ticks.complete_ended_jobs(datetime.now(UTC)):
            logger.info("scheduler: %d recurring jobs completed (schedule ended, last runs finished)", completed)
        self.passed()
        if fired.jobs >= self._batch_size:
            return 0.0  # more may be due
        next_due = await self._ticks.next_due_time()
        if next_due is None:
            return self.interval
        return min(self.interval, max((next_due - datetime.now(UTC)).total_seconds(), 0.0))

    async def fire_due(self, now: datetime | None = None) -> FiredTicks:
        """One pass: commit the due ticks' executions, then enqueue them and abort the ones a
        CANCEL_PREVIOUS tick cancelled. An enqueue lost here is re-dispatched by the reconciler."""
        fired = await self._ticks.fire_due(now or datetime.now(UTC), self._batch_size)
        if fired.queued or fired.skipped or fired.buffered or fired.cancelled:
            try:
                await self._dispatcher.dispatch([dispatch_of(execution, queue) for execution, queue in fired.queued])
                await self._dispatcher.abort_many(fired.cancelled)
            except REDIS_ERRORS as exc:
                logger.warning("scheduler: %d executions committed but not enqueued: %s", len(fired.queued), exc)
            logger.info(
                "scheduler: %d due jobs → %d queued, %d skipped, %d buffered, %d cancelled, %d missed ticks dropped",
                fired.jobs,
                len(fired.queued),
                fired.skipped,
                fired.buffered,
                len(fired.cancelled),
                fired.missed,
            )
        return fired


class ReconcilerLoop(BackgroundLoop):
    """Every RECONCILE_INTERVAL, re-dispatches unfinished executions arq no longer holds:
    overdue waiting ones (by RECONCILE_GRACE) and RUNNING ones whose lease expired."""

    name = "reconciler"

    def __init__(
        self,
        reconciliation: Reconciliation,
        queues: QueueStore,
        dispatcher: Dispatcher,
        interval: timedelta,
        grace: timedelta,
        batch: int,
    ) -> None:
        super().__init__(interval)
        self._reconciliation = reconciliation
        self._queues = queues
        self._dispatcher = dispatcher
        self._grace = grace
        self._batch = batch

    async def step(self) -> float:
        if await self.reconcile() is not None:  # a replica that did not lead made no pass
            self.passed()
        return self.interval

    async def reconcile(self) -> dict[str, int] | None:
        """One pass; None when another replica holds the reconciler lock. Returns counts:
        checked, enqueued (lost by Redis), requeued (queue entry lost)."""
        async with self._reconciliation.leadership() as leader:
            if not leader:
                return None
            lost = await self._reconciliation.find(self._grace, self._batch)
            answers = await self._dispatcher.redispatch(
                [Dispatch(e.id, e.queue, e.schedule_time, e.priority, Flow.of(e.flow, e.flow_since)) for e in lost]
            )
            # Paused queues stay paused after Redis lost its data, and a resume Redis missed lands;
            # so do the rate limits.
            paused, limits = await self._queues.flags_and_limits()
            await self._dispatcher.sync_paused(paused)
            await self._dispatcher.sync_limits(limits)
        counts = {"checked": len(lost), "enqueued": answers.count(1), "requeued": answers.count(2)}
        if counts["enqueued"] or counts["requeued"]:
            redispatched = [str(e.id) for e, a in zip(lost, answers, strict=True) if a][:10]
            logger.warning(
                "reconciler: re-dispatched %d executions arq had lost, requeued %d (of %d checked), e.g. %s",
                counts["enqueued"],
                counts["requeued"],
                counts["checked"],
                ", ".join(redispatched),
            )
        return counts


class HistoryPurgeLoop(BackgroundLoop):
    """Deletes the history past each queue's retention (its own, or the server's default), one
    batch of every queue per pass: every HISTORY_PURGE_INTERVAL, and straight on while a batch
    comes back full. One replica purges at a time (:class:`~jobs_common.store.HistoryPurge`)."""

    name = "history-purge"

    def __init__(
        self, history: HistoryPurge, queues: QueueStore, default: Retention, interval: timedelta, batch_size: int
    ) -> None:
        super().__init__(interval)
        self._history = history
        self._queues = queues
        self._default = default
        self._batch_size = batch_size
        # What the passes since the last quiet one deleted (logged when they catch up).
        self._run = PurgedBatch()

    async def step(self) -> float:
        purged = await self.purge(datetime.now(UTC))
        if purged is None:  # another replica purges
            return self.interval
        self.passed()
        self._run += purged
        if purged.more:
            return 0.0
        if self._run.executions or self._run.dead_letters or self._run.jobs:  # one line per catch-up
            logger.info(
                "history-purge: deleted %d finished executions, %d dead letters and %d jobs past retention",
                self._run.executions,
                self._run.dead_letters,
                self._run.jobs,
            )
        self._run = PurgedBatch()
        return self.interval

    async def purge(self, now: datetime) -> PurgedBatch | None:
        """One pass; the sums over the queues, None when another replica holds the purge lock."""
        settings = {queue.name: queue for queue in await self._queues.all_queues()}
        total = PurgedBatch()
        for name in sorted(set(settings) | set(await self._history.queues())):
            info = settings.get(name)
            retention = info.retention(self._default) if info is not None else self._default
            batch = await self._history.purge(name, retention, now, self._batch_size)
            if batch is None:
                return None
            for kind, count in (
                ("executions", batch.executions),
                ("dead_letters", batch.dead_letters),
                ("jobs", batch.jobs),
            ):
                if count:
                    HISTORY_PURGED.labels(name, kind).inc(count)
            total += batch
        keys = await self._history.expired_deduplications(now, self._batch_size)
        if keys is None:
            return None
        return total + PurgedBatch(more=keys >= self._batch_size)


# Unfinished states: each is exported for every known queue, 0 when it has none.
_UNFINISHED = [state for state in ExecutionState if state not in TERMINAL_EXECUTION_STATES]


class QueueGaugesLoop(BackgroundLoop):
    """Refreshes the queue gauges for every known queue (a job names it, it has settings, or a
    worker serves it), 0 where there is nothing to count, so a series never vanishes because a
    queue emptied: executions by unfinished state and the oldest ready age (one grouped query
    over unfinished executions), dead letters, paused or not, and live workers; for queues with
    rate limits, what the limits hold back and the calls open (a Redis script each)."""

    name = "queue-gauges"

    def __init__(
        self,
        queues: QueueStore,
        dead_letters: DeadLetters,
        workers: WorkerRegistry,
        limits: LimitsState,
        worker_lease_ttl: timedelta,
        interval: timedelta,
        dead_letters_interval: timedelta,
    ) -> None:
        super().__init__(interval)
        self._limits = limits
        self._dead_letters_interval = dead_letters_interval.total_seconds()
        self._queues = queues
        self._dead_letters = dead_letters
        self._workers = workers
        self._worker_lease_ttl = worker_lease_ttl
        # The label sets each gauge was last given, to remove those no longer known.
        self._shown: dict[Gauge, set[tuple[str, ...]]] = {}
        self._dead: dict[str, int] = {}
        self._dead_letters_due = 0.0

    async def step(self) -> float:
        known = await self._queues.all_queues()
        depth = await self._queues.depth()
        if time.monotonic() >= self._dead_letters_due:
            self._dead = await self._dead_letters.count_by_queue()
            self._dead_letters_due = time.monotonic() + self._dead_letters_interval
        dead = self._dead
        live: Counter[str] | None
        try:
            live = Counter(worker.queue for worker in await self._workers.live(self._worker_lease_ttl))
        except REDIS_ERRORS as exc:
            logger.warning("queue-gauges: Redis did not answer (%s); workers not counted", exc)
            live = None
        names = {q.name for q in known} | {row.queue for row in depth} | set(dead) | set(live or ())
        counts = {(row.queue, row.state): row.count for row in depth}
        ages: dict[str, float] = {}
        for row in depth:
            ages[row.queue] = max(ages.get(row.queue, 0.0), row.oldest_ready_age or 0.0)
        paused = {q.name for q in known if q.paused}
        self._export(EXECUTIONS, {(n, s.value): counts.get((n, s), 0) for n in names for s in _UNFINISHED})
        self._export(OLDEST_READY_AGE, {(n,): ages.get(n, 0.0) for n in names})
        self._export(DEAD_LETTERS, {(n,): dead.get(n, 0) for n in names})
        self._export(QUEUE_PAUSED, {(n,): 1 if n in paused else 0 for n in names})
        if live is not None:
            self._export(WORKERS, {(n,): live[n] for n in names})
        limited = {q.name for q in known if not q.rate_limits.unlimited}
        try:
            held = {q.name: await self._limits.read(q.name) for q in sorted(known, key=lambda q: q.name)}
        except REDIS_ERRORS as exc:
            logger.warning("queue-gauges: Redis did not answer (%s); rate limits not read", exc)
        else:
            reasons: dict[tuple[str, ...], float] = {}
            for name, state in held.items():
                if name in limited:
                    reasons[(name, "concurrency")] = state.waiting_for_concurrency
                    reasons[(name, "rate")] = state.waiting_for_rate
                reasons[(name, "key_concurrency")] = state.waiting_for_key_concurrency
                reasons[(name, "key_rate")] = state.waiting_for_key_rate
            self._export(QUEUE_HELD_BACK, reasons)
            self._export(
                QUEUE_OPEN_DISPATCHES,
                {(name,): state.open_dispatches for name, state in held.items() if name in limited},
            )
            self._export(FLOW_KEYS, {(name,): state.flow_keys for name, state in held.items()})
            busiest = [(name, key) for name, state in held.items() for key in state.busiest_keys]
            self._export(FLOW_KEY_READY, {(name, key.key): key.due for name, key in busiest})
            self._export(FLOW_KEY_OPEN, {(name, key.key): key.open for name, key in busiest})
        self.passed()
        return self.interval

    def _export(self, gauge: Gauge, values: dict[tuple[str, ...], float]) -> None:
        """Sets every labelled value and removes only the label sets no longer known: a scrape
        never sees a known series missing (clearing first would leave a window without it)."""
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        for labels in self._shown.get(gauge, set()) - values.keys():
            gauge.remove(*labels)
        self._shown[gauge] = set(values)
