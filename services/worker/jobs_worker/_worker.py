"""The arq worker: settings mapped to arq, shared resources created in on_startup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
from arq import Worker
from arq.constants import in_progress_key_prefix
from arq.worker import func

from jobs_common.db import create_engine
from jobs_common.errors import DEPENDENCY_ERRORS, REDIS_ERRORS
from jobs_common.metrics import serve_metrics
from jobs_common.queue import (
    ARQ_MAX_TRIES,
    RUN_EXECUTION,
    arq_queue_name,
    paused_key,
    redis_settings,
    warn_if_redis_can_evict,
)
from jobs_common.settings import Settings
from jobs_common.store import ExecutionLeases
from jobs_common.throughput import Throughput
from jobs_common.workers import WorkerInfo, WorkerRegistry
from jobs_worker._claim import DueJobClaimer
from jobs_worker._egress import guarded_client
from jobs_worker._runner import ExecutionRunner

__all__ = ["JobsWorker", "build_worker", "worker_id"]

logger = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_execution(ctx: dict[str, Any], execution_id: str) -> str:
    runner: ExecutionRunner = ctx["runner"]
    return await runner.run(execution_id)


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    await warn_if_redis_can_evict(ctx["redis"])
    if settings.secret_box.current_key_id is None:
        logger.warning("SECRETS_KEYS is empty: this worker opens only secrets stored in clear")
    engine = create_engine(settings)
    concurrency = settings.worker_max_concurrent_jobs
    # One pooled client for every call of this process, sized to its concurrency.
    client = guarded_client(
        settings.egress_policy, concurrency, httpx.Timeout(settings.worker_http_timeout.total_seconds())
    )
    ctx["engine"], ctx["http"] = engine, client
    ctx["stop_metrics"] = serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    ctx["runner"] = ExecutionRunner(
        ExecutionLeases(engine, ctx["worker_id"], settings.worker_lease_ttl, settings.secret_box),
        client,
        capture_bytes=settings.response_body_capture_bytes,
        record_deadline=settings.worker_record_deadline,
        throughput=Throughput(settings.worker_queue),
        max_redirects=settings.egress_max_redirects,
    )
    logger.info(
        "worker %s ready on queue %r: %d concurrent calls, poll every %.0f ms",
        ctx["worker_id"],
        settings.worker_queue,
        concurrency,
        settings.queue_poll_interval.total_seconds() * 1000,
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    if "stop_metrics" in ctx:
        await asyncio.to_thread(ctx["stop_metrics"])
    if "http" in ctx:
        await ctx["http"].aclose()
    if "engine" in ctx:
        await ctx["engine"].dispose()
    logger.info("worker %s stopped", ctx["worker_id"])


try:
    VERSION = version("jobs-worker")
except PackageNotFoundError:  # run from a source tree without the package installed
    VERSION = "unknown"

# Backoff between poll iterations while Redis does not answer.
REDIS_BACKOFF_FIRST = 0.2
REDIS_BACKOFF_CAP = 5.0


class JobsWorker(Worker):
    """arq's Worker plus what job-scheduler adds on top of it, kept in this one class.

    * Our claim path (:mod:`jobs_worker._claim`): one round trip per poll instead of three per
      job in the read window, running ones included. It replaces arq's private
      ``_poll_iteration``; arq is pinned (0.28.0, maintenance-only), and the rest of the
      iteration is arq's own.
    * A heartbeat every WORKER_HEARTBEAT_INTERVAL that renews, for every job this process runs,
      arq's in-progress key in Redis and the execution's lease in PostgreSQL, both to
      WORKER_LEASE_TTL. arq sets that key for its longest job timeout + 10 s with no renewal;
      ours lapses one TTL after the worker dies, and arq's next poll anywhere takes the job.
    * Redis going away does not end the process: the poll loop backs off and tries again, and a
      job whose arq bookkeeping failed is left for its in-progress key to lapse.
    * SIGTERM drains (arq's ``job_completion_wait``); a second SIGTERM is logged, not obeyed.
    * A health file refreshed from the poll loop (at most once a second), so a container
      health check proves the loop runs, not only that the process exists; it holds the
      problem when WORKER_UNHEALTHY_AFTER_ERRORS claims or records in a row failed.
    """

    def __init__(self, *args: Any, health_file: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings: Settings = self.ctx["settings"]
        self._health_file = Path(health_file)
        self._last_health_write = 0.0
        self._claimer: DueJobClaimer | None = None
        self._lease_ttl_ms = int(settings.worker_lease_ttl.total_seconds() * 1000)
        self._heartbeat_s = settings.worker_heartbeat_interval.total_seconds()
        self._redis_failures = 0
        self._draining = False
        self._started = datetime.now(UTC)

    async def main(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(), name="lease-heartbeat")
        try:
            await super().main()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self.renew_leases()
            except Exception:  # a heartbeat that stopped would hand every call to another worker
                logger.exception("heartbeat failed; trying again in %.1fs", self._heartbeat_s)
            await asyncio.sleep(self._heartbeat_s)

    async def renew_leases(self) -> None:
        """Renews, in Redis and in PostgreSQL, the hold on every job this process runs."""
        if self._pool is None:  # main() has not connected yet
            return
        running = [job_id for job_id, task in self.tasks.items() if not task.done()]
        try:
            if running:
                async with self.pool.pipeline(transaction=False) as pipe:
                    for job_id in running:
                        # PEXPIRE, not SET: a key arq deleted as the job ended stays deleted.
                        pipe.pexpire(in_progress_key_prefix + job_id, self._lease_ttl_ms)
                    await pipe.execute()
            await WorkerRegistry(self.pool).beat(self._describe(len(running)))
            await self._flush_throughput()
        except REDIS_ERRORS as exc:
            logger.warning("heartbeat: Redis did not answer (%s)", exc)
        runner: ExecutionRunner | None = self.ctx.get("runner")
        if runner is not None and runner.held:
            try:
                await runner.renew_leases()
            except DEPENDENCY_ERRORS as exc:
                logger.warning("heartbeat: PostgreSQL did not answer (%s)", exc)

    async def _flush_throughput(self) -> None:
        runner: ExecutionRunner | None = self.ctx.get("runner")
        if runner is not None:
            await runner.throughput.flush(self.pool)

    def _describe(self, in_flight: int) -> WorkerInfo:
        """This worker as QueueService.ListWorkers shows it."""
        settings: Settings = self.ctx["settings"]
        host, _, pid = str(self.ctx["worker_id"]).rpartition(":")
        return WorkerInfo(
            id=self.ctx["worker_id"],
            host=host,
            pid=int(pid),
            queue=settings.worker_queue,
            start_time=self._started,
            last_heartbeat=datetime.now(UTC),
            in_flight=in_flight,
            capacity=self.max_jobs,
            version=VERSION,
        )

    async def _poll_iteration(self) -> None:
        try:
            await self._poll_once()
        except REDIS_ERRORS as exc:
            backoff = min(REDIS_BACKOFF_FIRST * 2 ** min(self._redis_failures, 8), REDIS_BACKOFF_CAP)
            self._redis_failures += 1
            if self._redis_failures == 1:
                logger.warning("Redis did not answer (%s); retrying with backoff up to %.0fs", exc, REDIS_BACKOFF_CAP)
            await asyncio.sleep(backoff)
        else:
            if self._redis_failures:
                logger.info("Redis answers again after %d failed polls", self._redis_failures)
                self._redis_failures = 0

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
            self._claimer = DueJobClaimer(self.pool, self.queue_name, paused_key(self.ctx["settings"].worker_queue))
        claimed = await self._claimer.claim(
            now_ms=int(time.time() * 1000),
            read_limit=read_limit,
            wanted=min(self.max_jobs - self.job_counter, read_limit),
            in_progress_ms=self._lease_ttl_ms,
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
        if self._pool is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._flush_throughput()
                await WorkerRegistry(self.pool).leave(self.ctx["worker_id"])
        if self._handle_signals:
            # The drain is over; a signal now would only cut short the clean-up.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        await super().close()

    async def record_health(self) -> None:
        await super().record_health()
        now = time.monotonic()
        if now - self._last_health_write >= 1.0:
            self._last_health_write = now
            # Empty while healthy; else why not, for the health check to print.
            runner: ExecutionRunner | None = self.ctx.get("runner")
            settings: Settings = self.ctx["settings"]
            problem = runner.health_problem(settings.worker_unhealthy_after_errors) if runner else None
            self._health_file.write_text(problem or "")


def build_worker(settings: Settings, *, burst: bool = False, handle_signals: bool = True) -> JobsWorker:
    """An arq Worker for WORKER_QUEUE, configured from the settings (see the README's table)."""
    fleet_in_flight = settings.worker_pool_size * settings.worker_max_concurrent_jobs
    return JobsWorker(
        health_file=settings.worker_health_file,
        functions=[
            func(
                run_execution,
                name=RUN_EXECUTION,
                timeout=settings.arq_job_timeout.total_seconds(),
                max_tries=ARQ_MAX_TRIES,
            )
        ],
        queue_name=arq_queue_name(settings.worker_queue),
        redis_settings=redis_settings(settings),
        burst=burst,
        handle_signals=handle_signals,
        on_startup=_startup,
        on_shutdown=_shutdown,
        max_jobs=settings.worker_max_concurrent_jobs,
        job_timeout=settings.arq_job_timeout,
        keep_result=settings.queue_keep_result,
        poll_delay=settings.queue_poll_interval,
        # arq reads from offset 0 and running jobs stay in the queue, so the window must hold every
        # running job of the fleet plus a batch of waiting ones.
        queue_read_limit=fleet_in_flight + settings.queue_batch_size,
        max_tries=ARQ_MAX_TRIES,
        allow_abort_jobs=True,
        # SIGTERM/SIGINT: take no new jobs, let calls in flight finish up to the drain deadline.
        job_completion_wait=int(settings.worker_drain_timeout.total_seconds()),
        ctx={"settings": settings, "worker_id": worker_id()},
    )
