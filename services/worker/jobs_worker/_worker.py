"""The arq worker: settings mapped to arq, shared resources created in on_startup."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
from arq.connections import ArqRedis
from arq.worker import func

from jobs_common.arq_extension import (
    ARQ_MAX_TRIES,
    RUN_EXECUTION,
    ClaimingWorker,
    connect,
    quiet_arq_job_lines,
    redis_settings,
    warn_if_redis_can_evict,
)
from jobs_common.db import create_engine
from jobs_common.errors import DEPENDENCY_ERRORS, REDIS_ERRORS
from jobs_common.metrics import serve_metrics
from jobs_common.settings import Settings
from jobs_common.store import ExecutionLeases
from jobs_common.throughput import Throughput
from jobs_common.workers import WorkerInfo, WorkerRegistry
from jobs_worker._clients import HttpClients, load_connection_backend
from jobs_worker._collector import PacedCollector
from jobs_worker._lease_keeper import LeaseKeeper, Renewal
from jobs_worker._open_files import raise_open_files_limit
from jobs_worker._runner import ExecutionRunner
from jobs_worker.metrics import FULL_COLLECTION_SECONDS

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
    open_files = raise_open_files_limit(concurrency)
    # Pools of a few hundred connections, `concurrency` in all (jobs_worker._clients says why).
    clients = HttpClients(
        settings.egress_policy, concurrency, httpx.Timeout(settings.worker_http_timeout.total_seconds())
    )
    ctx["engine"], ctx["http"] = engine, clients
    await load_connection_backend()
    ctx["stop_metrics"] = serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    ctx["lease_engine"] = lease_engine = create_engine(settings, pool_size=1)
    leases = ExecutionLeases(
        engine, ctx["worker_id"], settings.worker_lease_ttl, settings.secret_box, lease_engine=lease_engine
    )
    await leases.join()
    ctx["runner"] = ExecutionRunner(
        leases,
        clients,
        capture_bytes=settings.response_body_capture_bytes,
        record_deadline=settings.worker_record_deadline,
        throughput=Throughput(settings.worker_queue),
        max_redirects=settings.egress_max_redirects,
    )
    # The lease, from a thread of its own (jobs_worker._lease_keeper says why).
    worker: JobsWorker = ctx["worker"]
    ctx["keeper"] = keeper = LeaseKeeper(
        _lease_renewal(worker, settings, ctx["runner"]),
        settings.worker_heartbeat_interval.total_seconds(),
        settings.worker_loop_stall_limit.total_seconds(),
    )
    keeper.start()
    # Last: what the start made is frozen, never scanned again (jobs_worker._collector says why).
    ctx["collector"] = collector = PacedCollector()
    collector.start()
    logger.info(
        "worker %s ready on queue %r: %d concurrent calls (%d open files), poll every %.0f ms",
        ctx["worker_id"],
        settings.worker_queue,
        concurrency,
        open_files,
        settings.queue_poll_interval.total_seconds() * 1000,
    )


def _lease_renewal(worker: JobsWorker, settings: Settings, runner: ExecutionRunner) -> Renewal:
    """What the lease keeper's thread renews, on connections of its own: the worker's row in
    PostgreSQL, then its lease in the queue's Redis hash, each whatever became of the other."""

    @contextlib.asynccontextmanager
    async def renewal() -> AsyncIterator[Callable[[], Awaitable[None]]]:
        engine = create_engine(settings, pool_size=1)
        # Connected at the first renewal, without arq's retries: the next renewal is the retry.
        assert worker.redis_settings is not None  # build_worker gives them
        quick = dataclasses.replace(worker.redis_settings, conn_retries=0)
        redis: ArqRedis | None = None

        async def renew() -> None:
            nonlocal redis
            try:
                await runner.renew_lease(engine)
            except DEPENDENCY_ERRORS as exc:
                logger.warning("lease renewal: PostgreSQL did not answer (%s)", exc)
            try:
                if redis is None:
                    redis = await connect(quick)
                await worker.renew_lease(redis)
            except REDIS_ERRORS as exc:
                logger.warning("lease renewal: Redis did not answer (%s)", exc)

        try:
            yield renew
        finally:
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    return renewal


async def _shutdown(ctx: dict[str, Any]) -> None:
    if "keeper" in ctx:  # before the lease is given up: a renewal after would take it again
        await ctx["keeper"].stop()
    if "collector" in ctx:
        ctx["collector"].stop()
    if "runner" in ctx:
        try:  # nothing runs any more: what it still held is free at once
            await ctx["runner"].leave()
        except DEPENDENCY_ERRORS as exc:
            logger.warning("could not give up the worker lease (%s); it lapses by itself", exc)
    if "stop_metrics" in ctx:
        await asyncio.to_thread(ctx["stop_metrics"])
    if "http" in ctx:
        await ctx["http"].aclose()
    for name in ("engine", "lease_engine"):
        if name in ctx:
            await ctx[name].dispose()
    logger.info("worker %s stopped", ctx["worker_id"])


try:
    VERSION = version("jobs-worker")
except PackageNotFoundError:  # run from a source tree without the package installed
    VERSION = "unknown"


class JobsWorker(ClaimingWorker):
    """The worker process: arq with our claim path (:class:`ClaimingWorker`, where everything we
    change of arq lives), plus what runs beside the calls.

    * A lease keeper (a thread of its own) that renews this worker's lease in PostgreSQL (its
      worker_leases row) and in Redis (the queue's worker leases) to WORKER_LEASE_TTL every
      WORKER_HEARTBEAT_INTERVAL: two writes, however many calls run, made while the event loop
      is busy, not once it is stuck (:mod:`jobs_worker._lease_keeper`).
    * A heartbeat, as often, that tells QueueService.ListWorkers it is alive, flushes its counts
      and makes the paced full garbage collections.
    * SIGTERM drains (arq's ``job_completion_wait``).
    * A health file refreshed from the poll loop (at most once a second), so a container
      health check proves the loop runs, not only that the process exists; it holds the
      problem when WORKER_UNHEALTHY_AFTER_ERRORS claims or records in a row failed.
    """

    def __init__(self, *args: Any, health_file: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx["worker"] = self  # for on_startup, which starts the lease keeper
        settings: Settings = self.ctx["settings"]
        self._health_file = Path(health_file)
        self._last_health_write = 0.0
        self._heartbeat_s = settings.worker_heartbeat_interval.total_seconds()
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
                await self.beat()
            except Exception:  # a heartbeat that stopped would hide this worker from ListWorkers
                logger.exception("heartbeat failed; trying again in %.1fs", self._heartbeat_s)
            self._collect_garbage_if_due()
            await asyncio.sleep(self._heartbeat_s)

    def _collect_garbage_if_due(self) -> None:
        """A full collection, when one is due, right after the lease was renewed: the pause it
        makes (up to 1.5 s at 10,000 calls) comes out of a fresh lease."""
        collector: PacedCollector | None = self.ctx.get("collector")
        if collector is not None and (took := collector.collect_if_due()) is not None:
            FULL_COLLECTION_SECONDS.observe(took)

    async def beat(self) -> None:
        """Tells QueueService.ListWorkers this worker is alive, and flushes its counts (the
        lease is renewed by the lease keeper's thread)."""
        if not self.connected:
            return
        try:
            await WorkerRegistry(self.control).beat(self._describe(self.in_flight))
            await self._flush_throughput()
        except REDIS_ERRORS as exc:
            logger.warning("heartbeat: Redis did not answer (%s)", exc)

    async def _flush_throughput(self) -> None:
        runner: ExecutionRunner | None = self.ctx.get("runner")
        if runner is not None:
            await runner.throughput.flush(self.control)

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

    async def close(self) -> None:
        if self.connected:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._flush_throughput()
                await WorkerRegistry(self.control).leave(self.ctx["worker_id"])
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
    """An arq Worker for WORKER_QUEUE, configured from the settings (see docs/configuration.md)."""
    quiet_arq_job_lines()  # the runner's line per attempt says what arq's two per job would
    return JobsWorker(
        health_file=settings.worker_health_file,
        queue=settings.worker_queue,
        lease_ttl_ms=int(settings.worker_lease_ttl.total_seconds() * 1000),
        functions=[
            func(
                run_execution,
                name=RUN_EXECUTION,
                timeout=settings.arq_job_timeout.total_seconds(),
                max_tries=ARQ_MAX_TRIES,
            )
        ],
        redis_settings=redis_settings(settings),
        burst=burst,
        handle_signals=handle_signals,
        on_startup=_startup,
        on_shutdown=_shutdown,
        max_jobs=settings.worker_max_concurrent_jobs,
        job_timeout=settings.arq_job_timeout,
        keep_result=settings.queue_keep_result,
        poll_delay=settings.queue_poll_interval,
        # Claimed jobs leave the queue, so a poll reads one batch of ready jobs, whatever runs.
        queue_read_limit=settings.queue_batch_size,
        max_tries=ARQ_MAX_TRIES,
        allow_abort_jobs=True,
        # SIGTERM/SIGINT: take no new jobs, let calls in flight finish up to the drain deadline.
        job_completion_wait=int(settings.worker_drain_timeout.total_seconds()),
        ctx={"settings": settings, "worker_id": worker_id()},
    )
