"""Assembly of the api process: resources, gRPC server, background probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jobs_api.auth import AuthInterceptor
from jobs_api.errors import ErrorInterceptor
from jobs_api.health import DependencyProbe
from jobs_api.loops import BackgroundLoop, QueueGaugesLoop, ReconcilerLoop, SchedulerLoop
from jobs_api.metrics import DEPENDENCY_UP, MetricsInterceptor
from jobs_api.queues import QueueServicer
from jobs_api.scaler import ExternalScalerServicer
from jobs_api.scaler import add_to_server as add_scaler
from jobs_api.scaling import IdleClock
from jobs_api.servicer import JobServicer
from jobs_api.tracing import TracingInterceptor
from jobs_api.transport import add_api_port, health_only_server, server_options
from jobs_api.validation import JobLimits
from jobs_common.db import create_engine
from jobs_common.metrics import serve_metrics
from jobs_common.migrate import migrate
from jobs_common.queue import Dispatcher, create_redis_pool
from jobs_common.settings import Settings
from jobs_common.store import DeadLetters, JobEvents, JobStore, QueueStore, Reconciliation, TickStore
from jobs_common.workers import WorkerRegistry
from jobscheduler.v1 import job_service_pb2, job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc

__all__ = ["RunningApi", "running_api", "serve"]

logger = logging.getLogger(__name__)

JOB_SERVICE = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
QUEUE_SERVICE = queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name


@dataclass(frozen=True, slots=True)
class RunningApi:
    server: grpc.aio.Server
    port: int
    health_port: int | None
    health: health.aio.HealthServicer
    scheduler: SchedulerLoop
    reconciler: ReconcilerLoop


@contextlib.asynccontextmanager
async def running_api(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[RunningApi]:
    """Starts the api (migrations, pools, server, health probe) and stops it on exit."""
    if run_migrations:
        await migrate(settings)
    engine = create_engine(settings)
    redis = await create_redis_pool(settings)
    store, ticks, dispatcher = JobStore(engine, settings.secret_box), TickStore(engine), Dispatcher(redis)
    events = JobEvents(settings.database_url)
    scheduler = SchedulerLoop(ticks, dispatcher, settings.scheduler_interval, settings.scheduler_batch_size)
    queues = QueueStore(engine)
    reconciler = ReconcilerLoop(
        Reconciliation(engine),
        queues,
        dispatcher,
        settings.reconcile_interval,
        settings.reconcile_grace,
        settings.reconcile_batch_size,
    )

    # The metrics and tracing interceptors go outside the others, so they see the status those set.
    tokens = settings.api_token_list
    server = grpc.aio.server(
        interceptors=[
            MetricsInterceptor(),
            TracingInterceptor(),
            AuthInterceptor(tokens, settings.open_services),
            ErrorInterceptor(),
        ],
        options=server_options(settings),
    )
    if not tokens:
        logger.warning("API_TOKENS is empty: the api accepts every call without authentication")
    if settings.secret_box.current_key_id is None:
        logger.warning("SECRETS_KEYS is empty: secret header values and signing secrets are stored in clear")
    job_service_pb2_grpc.add_JobServiceServicer_to_server(
        JobServicer(
            store, ticks, dispatcher, settings, JobLimits.from_settings(settings), events, wake_scheduler=scheduler.wake
        ),
        server,
    )
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(
        QueueServicer(
            queues, dispatcher, WorkerRegistry(redis), IdleClock(redis), DeadLetters(engine), store, redis, settings
        ),
        server,
    )
    scaler_service = add_scaler(ExternalScalerServicer(queues), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            JOB_SERVICE,
            QUEUE_SERVICE,
            scaler_service,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port, transport = add_api_port(server, settings)
    health_server = health_only_server(settings, health_servicer)
    health_port = health_server[1] if health_server is not None else None
    probe = DependencyProbe(
        health_servicer,
        ["", JOB_SERVICE, QUEUE_SERVICE],
        {"postgresql": store.ping, "redis": redis.ping},
        settings.health_check_interval.total_seconds(),
        on_check=lambda name, ok: DEPENDENCY_UP.labels(name).set(1 if ok else 0),
    )
    await probe.check_once()
    probe_task = asyncio.create_task(probe.run(), name="health-probe")
    loops: list[BackgroundLoop] = [
        QueueGaugesLoop(
            queues,
            DeadLetters(engine),
            WorkerRegistry(redis),
            settings.worker_lease_ttl,
            settings.metrics_refresh_interval,
            settings.metrics_dead_letters_interval,
        )
    ]
    if settings.scheduler_enabled:
        loops.append(scheduler)
    if settings.reconciler_enabled:
        loops.append(reconciler)
    loop_tasks = [asyncio.create_task(loop.run(), name=loop.name) for loop in loops]
    loop_tasks.append(asyncio.create_task(events.run(), name="job-events"))
    await server.start()
    if health_server is not None:
        await health_server[0].start()
    stop_metrics = serve_metrics(settings.metrics_host, settings.metrics_port)
    logger.info(
        "api listening on %s:%d, %s (JobService, QueueService, KEDA's ExternalScaler, grpc.health.v1, "
        "reflection; authentication %s; health-only port %s; background: %s)",
        settings.grpc_host,
        port,
        transport,
        "on" if tokens else "off",
        health_port or "off",
        ", ".join(loop.name for loop in loops) or "none",
    )
    try:
        yield RunningApi(server, port, health_port, health_servicer, scheduler, reconciler)
    finally:
        await asyncio.to_thread(stop_metrics)
        probe.stop()
        for loop in loops:
            loop.stop()
        events.stop()
        await asyncio.gather(probe_task, *loop_tasks)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(settings.grpc_shutdown_grace.total_seconds())
        if health_server is not None:
            await health_server[0].stop(None)
        await redis.aclose()
        await engine.dispose()
        logger.info("api stopped")


async def serve(settings: Settings) -> None:
    """Runs until SIGINT or SIGTERM, then drains in-flight RPCs for GRPC_SHUTDOWN_GRACE."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_api(settings):
        await stop.wait()
        logger.info("api stopping")
