"""arq's Worker with our claim path: claimed jobs leave the ready set, liveness is one lease per
worker, and the poll loop's cost does not grow with the calls in flight.

Everything here overrides or reads arq 0.28 internals (pinned by
``tests/common/arq_extension/test_pinned_arq.py``): ``_poll_iteration``, ``finish_job``,
``finish_failed_job``, ``sem``, ``job_counter``, ``tasks``, ``job_tasks``, ``aborting_tasks``,
``run_job`` (and the transaction it begins with), ``pool``, ``heart_beat``,
``_release_sem_dec_counter_on_complete``,
``handle_sig_wait_for_completion``, ``job_timeout_s``, ``_pool`` and ``_handle_signals``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import logging
import signal
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

from arq import Worker
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from arq.utils import to_ms

from jobs_common.arq_extension._claimer import DueJobClaimer, JobStart
from jobs_common.arq_extension._connection import connect
from jobs_common.arq_extension._keys import (
    BELL_LENGTH,
    MAX_IDLE_WAIT_MS,
    arq_queue_name,
    due_and_priority,
    flow_prefix,
    held_key,
    queue_bell_key,
    worker_bell_key,
    worker_leases_key,
)
from jobs_common.arq_extension._scripts import FLOW_FINISH_SCRIPT, HAND_BACK_SCRIPT, RENEW_LEASE_SCRIPT
from jobs_common.backoff import Backoff
from jobs_common.errors import REDIS_ERRORS
from jobs_common.group_commit import GroupCommit

__all__ = ["POLL_LAG_TARGET_S", "ClaimingWorker", "claims_allowed"]

logger = logging.getLogger(__name__)

# Backoff between poll iterations while Redis does not answer.
REDIS_BACKOFF_FIRST = 0.2
REDIS_BACKOFF_CAP = 5.0
# How long one BLPOP on the bells blocks in Redis; a wait that ends sooner leaves it pending.
LISTEN_S = 5.0

# A poll that comes this much later than asked (its claim's round trip included) finds the
# event loop congested: it claims proportionally fewer jobs (:func:`claims_allowed`). Opening
# thousands of calls at once, one worker's polls came seconds apart, and so did its heartbeat,
# whose lease then lapsed under calls that were running fine.
POLL_LAG_TARGET_S = 0.05


def claims_allowed(batch: int, poll_lag_s: float) -> int:
    """How many jobs a poll may claim, out of ``batch``, when it came ``poll_lag_s`` late: all
    of them up to POLL_LAG_TARGET_S, then in proportion (never none, so a worker always moves)."""
    if poll_lag_s <= POLL_LAG_TARGET_S:
        return batch
    return max(1, int(batch * POLL_LAG_TARGET_S / poll_lag_s))


def _retrieve_exception(task: asyncio.Task[bool]) -> None:
    """Marks a listener's error seen: one cancelled or dropped after a Redis error is not news
    (the poll's own round trips meet the same error)."""
    if not task.cancelled():
        task.exception()


# Job ends written in one transaction at most (a few hundred commands).
FINISHES_PER_TRANSACTION = 100

# The start the claim made of the job whose run_job runs in this context (each run_job is a
# task of its own, started in a context that holds its start); taken by run_job's first use of
# the pool.
_CLAIMED_START: contextvars.ContextVar[tuple[str, JobStart] | None] = contextvars.ContextVar(
    "claimed_start", default=None
)


class _ClaimedStartAnswers:
    """Stands in for the pool in the transaction arq's run_job begins each job with (GET of the
    job, INCR and EXPIRE of its retry key, ZREM from the abort set): the claim did those in its
    own round trip (CLAIM_SCRIPT), one transaction less per job. It answers them with what the
    claim returned, after checking that they are those commands for that job; anything else
    is an arq this was not written for, and fails the job's run loudly. run_job keeps it (its
    ``pipe``) for as long as the call runs, so once answered it holds nothing."""

    __slots__ = ("_asked", "_job_id", "_start", "_with_abort")

    def __init__(self, job_id: str, start: JobStart, with_abort: bool) -> None:
        self._job_id = job_id
        self._start: JobStart | None = start
        self._with_abort = with_abort
        self._asked: list[tuple[object, ...]] = []

    def pipeline(self, transaction: bool = True) -> _ClaimedStartAnswers:
        return self

    async def __aenter__(self) -> _ClaimedStartAnswers:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def get(self, key: str) -> None:
        self._asked.append(("get", key))

    def incr(self, key: str) -> None:
        self._asked.append(("incr", key))

    def expire(self, key: str, seconds: int) -> None:
        self._asked.append(("expire", key, seconds))

    def zrem(self, key: str, *members: str) -> None:
        self._asked.append(("zrem", key, *members))

    async def execute(self) -> list[object]:
        job_id, start, asked = self._job_id, self._start, self._asked
        self._start, self._asked = None, []
        expected: list[tuple[object, ...]] = [
            ("get", job_key_prefix + job_id),
            ("incr", retry_key_prefix + job_id),
            ("expire", retry_key_prefix + job_id, 88400),
        ]
        if self._with_abort:
            expected.append(("zrem", abort_jobs_ss, job_id))
        if start is None or asked != expected:
            raise RuntimeError(f"arq's run_job began job {job_id} with {asked}, not once with {expected}")
        answers: list[object] = [start.payload, start.job_try, True, start.aborted]
        return answers[: len(expected)]


@dataclass(frozen=True, slots=True)
class _Finish:
    """How a run of ``job_id`` ended: finished (its result kept for ``result_px`` ms, None: for
    ever), or to run again at the score ``again_at``."""

    job_id: str
    result: bytes | None = None
    result_px: int | None = None
    again_at: int | None = None
    # Its flow key (Job.flow_control), when it has one.
    flow_key: str | None = None


class ClaimingWorker(Worker):
    """arq's Worker, with what we change of its loop:

    * our claim path (:class:`DueJobClaimer`) replaces arq's private ``_poll_iteration``: one
      round trip per poll, and a claimed job leaves the queue's sorted set for this worker's
      held hash, so a poll reads only ready jobs (at most QUEUE_BATCH_SIZE), whatever runs;
    * liveness is one lease per worker (:meth:`renew_lease`, the heartbeat's, one write however
      many calls run), not one per call. When it lapses, the next claim anywhere on the queue
      puts everything this worker held back in the queue at once;
    * arq's ``finish_job``/``finish_failed_job`` also release the job from the held hash, and a
      retry (``Retry(defer=...)``) or a cancelled run goes back to the queue at the score arq
      would have given it (arq's ZINCRBY needs the job still in the queue);
    * aborts of the jobs it holds come back with its claim (its own abort set, filled by
      :meth:`Dispatcher.abort_many`), instead of a second round trip per poll reading arq's
      whole abort set;
    * a poll that comes late (a congested event loop) claims fewer jobs, so opening thousands of
      calls at once cannot starve the heartbeat (:func:`claims_allowed`);
    * a poll that finds less than it could take makes the next one wait on the queue's bell and
      its own (:meth:`_wait_for_work`), so an idle worker does not poll every ``poll_delay``;
    * finished tasks are collected by callback, not by scanning every task at each poll;
    * Redis going away does not end the process: the poll loop backs off and tries again, and a
      job whose arq bookkeeping failed is handed back once Redis answers;
    * a second SIGTERM while draining is logged, not obeyed, and none is once the drain is over.

    In burst mode the worker ends once the queue is empty and its running jobs are done (a job
    they put back for a retry is left for the next worker).
    """

    # The longest an idle worker waits for its bells (see _keys.MAX_IDLE_WAIT_MS).
    max_idle_wait_ms = MAX_IDLE_WAIT_MS

    def __init__(self, *args: Any, queue: str, lease_ttl_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, queue_name=arq_queue_name(queue), **kwargs)
        self._queue = queue
        self._lease_ttl_ms = lease_ttl_ms
        # This process's name in the queue's leases and in its jobs' in-progress keys: a new one
        # at each start, so a restarted process never inherits what its predecessor held.
        self.holder = f"{self.ctx.get('worker_id', 'worker')}#{uuid.uuid4().hex[:12]}"
        self._held_key = held_key(self.holder)
        self._leases_key = worker_leases_key(queue)
        # The poll loop's and heartbeat's own Redis client. redis-py's asyncio pool hands out
        # connections under one lock, held across a read on each: with thousands of calls doing
        # their arq bookkeeping, a heartbeat's command waited 0.3 to 1.2 s for its turn (while the
        # event loop itself was 40 ms late), and the lease lapsed under running calls.
        self._control: ArqRedis | None = None
        self._claimer: DueJobClaimer | None = None
        self._hand_back_script: Any = None
        self._renew_lease_script: Any = None
        # The score each running job was claimed at, to put it back where arq would, and its
        # flow key (None: none).
        self._claimed: dict[str, tuple[int, str | None]] = {}
        self._flow_prefix = flow_prefix(queue)
        # Runs that ended since the last poll checked how. The task, not only the job id: a job
        # retried at once can be claimed again (a new task under the same id) first.
        self._finished: collections.deque[tuple[str, asyncio.Task[None]]] = collections.deque()
        self._to_hand_back: set[str] = set()
        self._pending_aborts: set[str] = set()
        self._last_poll_start: float | None = None
        # How much later than poll_delay this poll came after the previous one started (the
        # previous one's wait for its bells not counted).
        self.poll_lag_s = 0.0
        # Set by a claim that found less than it wanted: how long (ms) the next poll may wait for
        # a bell first (:meth:`_wait_for_work`); None: poll again after poll_delay.
        self._idle_wait_ms: int | None = None
        self._finishes = GroupCommit(self._write_finishes, FINISHES_PER_TRANSACTION)
        # Whether the last claim found the queue limiting its concurrent calls: the end of each
        # call then rings the queue's bell, for the workers waiting for a slot.
        self._concurrency_limited = False
        self._waited_s = 0.0
        self._listener: asyncio.Task[bool] | None = None
        self._bells = [queue_bell_key(queue), worker_bell_key(self.holder)]
        self._queue_bell = self._bells[0]
        self._redis_backoff = Backoff(REDIS_BACKOFF_FIRST, REDIS_BACKOFF_CAP)
        self._draining = False

    @property
    def connected(self) -> bool:
        """Whether main() has connected to Redis (arq makes its pool there, and we ours)."""
        return self._pool is not None and self._control is not None

    @property
    def pool(self) -> ArqRedis:
        """arq's pool; in a run_job whose job the claim started, its first use (the transaction
        it begins with) is answered by :class:`_ClaimedStartAnswers`."""
        claimed = _CLAIMED_START.get()
        if claimed is None:
            return cast(ArqRedis, self._pool)
        _CLAIMED_START.set(None)
        return cast(ArqRedis, _ClaimedStartAnswers(*claimed, self.allow_abort_jobs))

    @property
    def control(self) -> ArqRedis:
        """The Redis client of the poll loop and the heartbeat (not of the jobs' bookkeeping)."""
        assert self._control is not None, "main() connects first"
        return self._control

    async def main(self) -> None:
        assert self.redis_settings is not None, "the worker is built from settings"
        if self._control is None:
            self._control = await connect(self.redis_settings)
        if self._pool is None:  # arq would make it with its own create_pool, which lacks Sentinel's password
            self._pool = await connect(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        await super().main()

    @property
    def in_flight(self) -> int:
        return len(self.tasks)

    async def renew_lease(self, client: ArqRedis | None = None) -> None:
        """This worker's lease on everything it holds, pushed to WORKER_LEASE_TTL from now
        (every poll renews it too; the heartbeat keeps it while polls wait on Redis). ``client``:
        a Redis client of the caller's (one of another thread's loop), instead of the control one."""
        if client is not None:
            script = client.register_script(RENEW_LEASE_SCRIPT)  # no round trip: EVALSHA when run
        else:
            if self._renew_lease_script is None:
                self._renew_lease_script = self.control.register_script(RENEW_LEASE_SCRIPT)
            script = self._renew_lease_script
        await script(keys=[self._leases_key], args=[self._lease_ttl_ms, self.holder])

    async def hand_back(self, job_ids: list[str] | None = None) -> int:
        """Puts held jobs back in the queue (all of them, and leaves the queue's leases, when
        ``job_ids`` is None: a clean stop); returns how many it looked at."""
        if self._hand_back_script is None:
            self._hand_back_script = self.control.register_script(HAND_BACK_SCRIPT)
        answer = await self._hand_back_script(
            keys=[self.queue_name, self._held_key, self._leases_key, self._queue_bell],
            args=[in_progress_key_prefix, self.holder, BELL_LENGTH, self._flow_prefix, *(job_ids or [])],
        )
        return int(answer)

    async def _poll_iteration(self) -> None:
        started = self.loop.time()
        if self._last_poll_start is not None:
            self.poll_lag_s = max(0.0, started - self._last_poll_start - self.poll_delay_s - self._waited_s)
        self._last_poll_start = started
        self._waited_s = 0.0
        try:
            await self._wait_for_work()
            await self._poll_once()
        except REDIS_ERRORS as exc:
            delay = self._redis_backoff.next_delay()
            if self._redis_backoff.failures == 1:
                logger.warning("Redis did not answer (%s); retrying with backoff up to %.0fs", exc, REDIS_BACKOFF_CAP)
            await asyncio.sleep(delay)
            self._last_poll_start = None  # the backoff is not the loop's lag
            self._idle_wait_ms = None
            if self._listener is not None and self._listener.done():
                self._listener = None  # its error is the one just handled
        else:
            if self._redis_backoff.failures:
                logger.info("Redis answers again after %d failed polls", self._redis_backoff.failures)
                self._redis_backoff.reset()

    async def _wait_for_work(self) -> None:
        """Waits on the queue's bell and this worker's own, for at most what the last claim said
        (when it found less than it wanted), instead of polling every poll_delay: an idle worker
        makes a claim a second, not one per poll_delay, and a new job is claimed as soon as its
        enqueue rings (``_keys.MAX_IDLE_WAIT_MS`` says what rings).

        The wait's end is timed here, not by BLPOP's timeout: Redis times those out at its
        ``hz`` (10 by default: 100 ms late on an idle server). The BLPOP stays pending across
        waits (:meth:`_listen`), so a timer that ends one costs no round trip."""
        wait_ms, self._idle_wait_ms = self._idle_wait_ms, None
        if not wait_ms or not self.allow_pick_jobs or self._to_hand_back or self._pending_aborts:
            if not self.allow_pick_jobs or self.job_counter >= self.max_jobs:
                self._stop_listening()  # a ring it took now would be one another worker misses
            return
        started = self.loop.time()
        deadline = started + wait_ms / 1000
        while (left := deadline - self.loop.time()) > 0:
            if self._listener is None:
                self._listener = self.loop.create_task(self._listen())
                self._listener.add_done_callback(_retrieve_exception)
            done, _ = await asyncio.wait({self._listener}, timeout=left)
            if not done:
                break
            listener, self._listener = self._listener, None
            if listener.result():  # a ring (a Redis error goes to the poll's backoff)
                break
        self._waited_s = self.loop.time() - started

    async def _listen(self) -> bool:
        """One BLPOP on the bells; whether it took a ring (False: Redis's timeout passed)."""
        # Redis takes the timeout in seconds with decimals; redis-py's stub says whole seconds.
        timeout: Any = LISTEN_S
        ring = await cast(Awaitable[list[bytes] | None], self.control.blpop(self._bells, timeout=timeout))
        return ring is not None

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._listener = None

    async def _poll_once(self) -> None:
        count = claims_allowed(self.queue_read_limit, self.poll_lag_s)
        if self.burst and self.max_burst_jobs >= 0:
            remaining = self.max_burst_jobs - self._jobs_started()
            if remaining < 1:
                return
            count = min(remaining, count)
        if self._to_hand_back:
            await self.hand_back(sorted(self._to_hand_back))
            self._to_hand_back.clear()
        await self._start_claimed_jobs(count if self.allow_pick_jobs and self.job_counter < self.max_jobs else 0)
        while self._finished:
            self._check_finished(*self._finished.popleft())
        await self.heart_beat()

    def _check_finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        """Propagates errors of run_job as arq does, except Redis failing in arq's bookkeeping
        around a job: PostgreSQL has the outcome, and the job goes back to the queue once Redis
        answers, so a later delivery finds the execution settled (or due) and acts on that."""
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, REDIS_ERRORS):
            logger.warning("job %s: arq could not update Redis (%s); it will be redelivered and settled", job_id, exc)
            self._claimed.pop(job_id, None)
            self._to_hand_back.add(job_id)
        elif exc is not None:
            raise exc

    async def _start_claimed_jobs(self, read_limit: int) -> None:
        """Claims (and, first, puts back what lapsed workers held and renews this worker's
        lease, even when it takes nothing), then starts what it claimed."""
        if self._claimer is None:  # the pool exists only once main() has started
            self._claimer = DueJobClaimer(self.control, self._queue, self.holder)
        wanted = min(self.max_jobs - self.job_counter, read_limit)
        claimed = await self._claimer.claim(
            now_ms=int(time.time() * 1000),
            read_limit=read_limit,
            wanted=wanted,
            in_progress_ms=int((self.job_timeout_s + 10) * 1000),
            lease_ms=self._lease_ttl_ms,
        )
        self._concurrency_limited = claimed.concurrency_limited
        if wanted > 0 and len(claimed.jobs) < wanted and not self.burst:
            longest = self.max_idle_wait_ms
            self._idle_wait_ms = longest if claimed.wait_ms is None else min(claimed.wait_ms, longest)
        if self.allow_abort_jobs:
            self._cancel_aborted(claimed.aborts)
        for job_id, score in claimed.jobs:
            await self.sem.acquire()
            self.job_counter += 1
            # Kept in its priority's band, to go back there; arq's run_job reckons with the due
            # time (its "delayed" log, a retry's increment: due + increment stays in the band).
            self._claimed[job_id] = (score, claimed.flow_keys.get(job_id))
            due, _ = due_and_priority(score)
            # Its run_job's own context holds its start (no other run sees it).
            context = contextvars.copy_context()
            context.run(_CLAIMED_START.set, (job_id, claimed.starts[job_id]))
            task = self.loop.create_task(self.run_job(job_id, due), context=context)
            task.add_done_callback(functools.partial(self._job_done, job_id))
            self.tasks[job_id] = task

    def _cancel_aborted(self, job_ids: list[str]) -> None:
        """Cancels the calls of these held jobs (arq's ``_cancel_aborted_jobs``, fed by the claim
        instead of a read of arq's whole abort set at every poll). A job whose run_job has not
        yet started its call is tried again at the next poll; one no longer running is done
        (arq's finish_job removed its abort, or its next start aborts it)."""
        self._pending_aborts.update(job_ids)
        for job_id in list(self._pending_aborts):
            call = self.job_tasks.get(job_id)
            if call is not None:
                self.aborting_tasks.add(job_id)
                call.cancel()
            elif job_id in self.tasks and not self.tasks[job_id].done():
                continue
            self._pending_aborts.discard(job_id)

    def _job_done(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._release_sem_dec_counter_on_complete()
        if self.tasks.get(job_id) is task:  # not a newer run of the same job, claimed since
            del self.tasks[job_id]
        self._finished.append((job_id, task))

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's finish_job, for a job that left the queue when it was claimed: a finished one
        keeps its result as arq does; one to run again (a retry, or cancelled by a shutdown)
        goes back to the queue at its claimed score plus arq's increment. Either way it leaves
        this worker's held hash, in the same transaction (:meth:`_write_finishes`)."""
        score, flow_key = self._claimed.pop(job_id, (int(time.time() * 1000), None))
        if finish:
            expire = None if keep_result_forever else result_timeout_s
            ending = _Finish(job_id, result_data or None, to_ms(expire), flow_key=flow_key)
        else:
            ending = _Finish(job_id, again_at=score + (incr_score or 0), flow_key=flow_key)
        await self._finishes.submit(ending)

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        _, flow_key = self._claimed.pop(job_id, (0, None))
        # As arq: result_data would only be None if serializing the result failed.
        keep = result_data is not None and (self.keep_result_forever or self.keep_result_s > 0)
        expire = 0 if self.keep_result_forever else self.keep_result_s
        await self._finishes.submit(_Finish(job_id, result_data if keep else None, to_ms(expire), flow_key=flow_key))

    async def _write_finishes(self, endings: list[_Finish]) -> list[None]:
        """The ends of jobs that finished together, in one transaction (group commit: one round
        trip for the batch, not one per job; py-spy put 10 % of the worker's CPU in the
        pipelines of one transaction per job under ``make bench``)."""
        ring = False
        async with cast(ArqRedis, self._pool).pipeline(transaction=True) as tr:
            for ending in endings:
                job_id = ending.job_id
                delete_keys = [in_progress_key_prefix + job_id]
                if ending.again_at is None:
                    if ending.result is not None:
                        tr.set(result_key_prefix + job_id, ending.result, px=ending.result_px)
                    delete_keys += [retry_key_prefix + job_id, job_key_prefix + job_id]
                    tr.zrem(abort_jobs_ss, job_id)
                    tr.zrem(self.queue_name, job_id)
                else:
                    if ending.flow_key is None:
                        tr.zadd(self.queue_name, {job_id: ending.again_at})
                    # see _keys.MAX_IDLE_WAIT_MS
                    due, _ = due_and_priority(ending.again_at)
                    ring = ring or due <= time.time() * 1000 + MAX_IDLE_WAIT_MS
                if ending.flow_key is not None:
                    again_at = "" if ending.again_at is None else str(ending.again_at)
                    args = (self._flow_prefix, ending.flow_key, job_id, self.holder, again_at, self._queue_bell)
                    tr.eval(FLOW_FINISH_SCRIPT, 0, *args, str(BELL_LENGTH))
                tr.hdel(self._held_key, job_id)
                tr.delete(*delete_keys)
            if ring or self._concurrency_limited:
                tr.lpush(self._queue_bell, b"1")
                tr.ltrim(self._queue_bell, 0, BELL_LENGTH - 1)
            await tr.execute()
        return [None] * len(endings)

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        if self._draining:
            logger.warning(
                "%s again: already draining, %d calls in flight", signal.Signals(signum).name, len(self.tasks)
            )
            return
        self._draining = True
        super().handle_sig_wait_for_completion(signum)

    async def close(self) -> None:
        self._stop_listening()
        if self.connected:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)  # their finish_job first
            try:
                if handed := await self.hand_back():
                    logger.info("handed %d held jobs back to the queue", handed)
            except REDIS_ERRORS as exc:  # its lease lapses instead; other workers put them back
                logger.warning("could not hand held jobs back (%s); they return when the lease lapses", exc)
        if self._handle_signals:
            # The drain is over; a signal now would only cut short the clean-up.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        await super().close()
        if self._control is not None:
            await self._control.aclose()
            self._control = None
