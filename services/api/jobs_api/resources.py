"""What the api process holds open: one engine, one Redis pool, and the stores and clients built
on them. Opened once at start (:func:`open_resources`), handed to the server and the loops, and
closed last."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs_common.arq_extension import Dispatcher, create_redis_pool
from jobs_common.db import create_engine
from jobs_common.migrate import migrate
from jobs_common.settings import Settings
from jobs_common.store import DeadLetters, HistoryPurge, JobEvents, JobStore, QueueStore, Reconciliation, TickStore
from jobs_common.workers import WorkerRegistry

__all__ = ["ApiResources", "open_resources"]


@dataclass(frozen=True, slots=True)
class ApiResources:
    engine: AsyncEngine
    redis: ArqRedis
    jobs: JobStore
    ticks: TickStore
    queues: QueueStore
    dead_letters: DeadLetters
    reconciliation: Reconciliation
    history: HistoryPurge
    events: JobEvents
    dispatcher: Dispatcher
    workers: WorkerRegistry


@contextlib.asynccontextmanager
async def open_resources(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[ApiResources]:
    """Migrates (unless told not to), connects, and closes both connections on exit."""
    if run_migrations:
        await migrate(settings)
    engine = create_engine(settings)
    try:
        redis = await create_redis_pool(settings)
        try:
            yield ApiResources(
                engine=engine,
                redis=redis,
                jobs=JobStore(engine, settings.secret_box),
                ticks=TickStore(engine),
                queues=QueueStore(engine),
                dead_letters=DeadLetters(engine),
                reconciliation=Reconciliation(engine),
                history=HistoryPurge(engine),
                events=JobEvents(settings.database_url),
                dispatcher=Dispatcher(redis),
                workers=WorkerRegistry(redis),
            )
        finally:
            await redis.aclose()
    finally:
        await engine.dispose()
