"""arq's Worker with our claim path, held in-progress keys and a poll loop that outlives Redis.

Everything here overrides or reads arq 0.28 internals (pinned by
``tests/common/arq_extension/test_pinned_arq.py``): ``_poll_iteration``, ``sem``, ``job_counter``,
``tasks``, ``run_job``, ``_cancel_aborted_jobs``, ``heart_beat``,
``_release_sem_dec_counter_on_complete``, ``handle_sig_wait_for_completion``, ``_pool`` and
``_handle_signals``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from arq import Worker
from arq.constants import in_progress_key_prefix

from jobs_common.arq_extension._claimer import DueJobClaimer
from jobs_common.backoff import Backoff
from jobs_common.errors import REDIS_ERRORS

__all__ = ["ClaimingWorker"]

logger = logging.getLogger(__name__)

# Backoff between poll iterations while Redis does not answer.
REDIS_BACKOFF_FIRST = 0.2
REDIS_BACKOFF_CAP = 5.0


class ClaimingWorker(Worker):
    """arq's Worker, with what we change of its loop:

    * our claim path (:class:`DueJobClaimer`): one round trip per poll instead of three per job
      in the read window, running ones included. It replaces arq's private ``_poll_iteration``;
      the rest of the iteration is arq's own;
    * a claimed job's in-progress key lasts ``in_progress_ttl_ms`` and
      :meth:`renew_in_progress` (the heartbeat's) extends it, instead of arq's longest job
      timeout + 10 s with no renewal: it lapses one TTL after the worker dies, and the next poll
      anywhere takes the job;
    * Redis going away does not end the process: the poll loop backs off and tries again, and a
      job whose arq bookkeeping failed is left for its in-progress key to lapse;
    * a second SIGTERM while draining is logged, not obeyed, and none is once the drain is over.
    """

    def __init__(self, *args: Any, paused_key: str, in_progress_ttl_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused_key = paused_key
        self._in_progress_ttl_ms = in_progress_ttl_ms
        self._claimer: DueJobClaimer | None = None
        self._redis_backoff = Backoff(REDIS_BACKOFF_FIRST, REDIS_BACKOFF_CAP)
        self._draining = False

    @property
    def connected(self) -> bool:
        """Whether main() has connected to Redis (arq makes its pool there)."""
        return self._pool is not None

    def running_job_ids(self) -> list[str]:
        """The arq job ids this process runs now."""
        return [job_id for job_id, task in self.tasks.items() if not task.done()]

    async def renew_in_progress(self, job_ids: list[str]) -> None:
        """Extends the in-progress keys of ``job_ids`` by the TTL, in one round trip."""
        if job_ids:
            async with self.pool.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    # PEXPIRE, not SET: a key arq deleted as the job ended stays deleted.
                    pipe.pexpire(in_progress_key_prefix + job_id, self._in_progress_ttl_ms)
                await pipe.execute()

    async def _poll_iteration(self) -> None:
        try:
            await self._poll_once()
        except REDIS_ERRORS as exc:
            delay = self._redis_backoff.next_delay()
            if self._redis_backoff.failures == 1:
                logger.warning("Redis did not answer (%s); retrying with backoff up to %.0fs", exc, REDIS_BACKOFF_CAP)
            await asyncio.sleep(delay)
        else:
            if self._redis_backoff.failures:
                logger.info("Redis answers again after %d failed polls", self._redis_backoff.failures)
                self._redis_backoff.reset()

    async def _poll_once(self) -> None:
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            remaining = self.max_burst_jobs - self._jobs_started()
            if remaining < 1:
                return
            count = min(remaining, count)
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            await self._start_claimed_jobs(count)
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                self._check_finished(job_id, task)
        await self.heart_beat()

    @staticmethod
    def _check_finished(job_id: str, task: asyncio.Task[None]) -> None:
        """Propagates errors of run_job as arq does, except Redis failing in arq's bookkeeping
        around a job: PostgreSQL has the outcome, and the job's in-progress key lapses so a
        later delivery finds the execution settled (or due) and acts on that."""
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, REDIS_ERRORS):
            logger.warning("job %s: arq could not update Redis (%s); it will be redelivered and settled", job_id, exc)
        elif exc is not None:
            raise exc

    async def _start_claimed_jobs(self, read_limit: int) -> None:
        if self._claimer is None:  # the pool exists only once main() has started
            self._claimer = DueJobClaimer(self.pool, self.queue_name, self._paused_key)
        claimed = await self._claimer.claim(
            now_ms=int(time.time() * 1000),
            read_limit=read_limit,
            wanted=min(self.max_jobs - self.job_counter, read_limit),
            in_progress_ms=self._in_progress_ttl_ms,
        )
        for job_id, score in claimed:
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        if self._draining:
            logger.warning(
                "%s again: already draining, %d calls in flight", signal.Signals(signum).name, len(self.tasks)
            )
            return
        self._draining = True
        super().handle_sig_wait_for_completion(signum)

    async def close(self) -> None:
        if self._handle_signals:
            # The drain is over; a signal now would only cut short the clean-up.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        await super().close()
