"""Assembly of the api process: resources (:mod:`jobs_api.resources`), the gRPC server
(:func:`build_server`), the background loops (:func:`build_loops`) and the health probe, started
and stopped in order by :func:`running_api`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jobs_api.auth import AuthInterceptor
from jobs_api.errors import ErrorInterceptor
from jobs_api.health import DependencyProbe
from jobs_api.heap import start_frozen
from jobs_api.idle_clock import IdleClock
from jobs_api.job_service import JobServicer
from jobs_api.keda_scaler import ExternalScalerServicer
from jobs_api.keda_scaler import add_to_server as add_scaler
from jobs_api.loops import BackgroundLoop, HistoryPurgeLoop, QueueGaugesLoop, ReconcilerLoop, SchedulerLoop
from jobs_api.metrics import DEPENDENCY_UP, MetricsInterceptor
from jobs_api.queue_service import QueueServicer
from jobs_api.resources import ApiResources, open_resources
from jobs_api.streams import StreamLimits
from jobs_api.tracing import TracingInterceptor
from jobs_api.transport import add_api_port, health_only_server, server_options
from jobs_api.validation import JobLimits
from jobs_common.arq_extension import LimitsState
from jobs_common.metrics import serve_metrics
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2, job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc

__all__ = [
    "ApiLoops",
    "BuiltServer",
    "InsecureSettingsError",
    "RunningApi",
    "build_loops",
    "build_server",
    "check_security_settings",
    "running_api",
    "serve",
]

logger = logging.getLogger(__name__)

JOB_SERVICE = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
QUEUE_SERVICE = queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name


@dataclass(frozen=True, slots=True)
class BuiltServer:
    """The gRPC server, not started yet, with the port it bound and how (``transport``)."""

    server: grpc.aio.Server
    port: int
    transport: str
    health: health.aio.HealthServicer


@dataclass(frozen=True, slots=True)
class ApiLoops:
    scheduler: SchedulerLoop
    reconciler: ReconcilerLoop
    # The ones this replica runs (the scheduler, the reconciler and the purge can be switched off).
    running: list[BackgroundLoop]


@dataclass(frozen=True, slots=True)
class RunningApi:
    server: grpc.aio.Server
    port: int
    health_port: int | None
    health: health.aio.HealthServicer
    scheduler: SchedulerLoop
    reconciler: ReconcilerLoop


def build_loops(settings: Settings, resources: ApiResources) -> ApiLoops:
    """The scheduler, the reconciler, the history purge and the queue gauges; every replica may
    run them."""
    scheduler = SchedulerLoop(
        resources.ticks, resources.dispatcher, settings.scheduler_interval, settings.scheduler_batch_size
    )
    reconciler = ReconcilerLoop(
        resources.reconciliation,
        resources.queues,
        resources.dispatcher,
        settings.reconcile_interval,
        settings.reconcile_grace,
        settings.reconcile_batch_size,
    )
    running: list[BackgroundLoop] = [
        QueueGaugesLoop(
            resources.queues,
            resources.dead_letters,
            resources.workers,
            LimitsState(resources.redis),
            settings.worker_lease_ttl,
            settings.metrics_refresh_interval,
            settings.metrics_dead_letters_interval,
        )
    ]
    if settings.scheduler_enabled:
        running.append(scheduler)
    if settings.reconciler_enabled:
        running.append(reconciler)
    if settings.history_purge_enabled:
        running.append(
            HistoryPurgeLoop(
                resources.history,
                resources.queues,
                settings.retention,
                settings.history_purge_interval,
                settings.history_purge_batch_size,
            )
        )
    return ApiLoops(scheduler, reconciler, running)


def build_server(settings: Settings, resources: ApiResources, wake_scheduler: Callable[[], None]) -> BuiltServer:
    """The gRPC server with every service, interceptor and reflection, bound to its port."""
    tokens = settings.api_token_list
    streams = StreamLimits(settings.streams_max, settings.streams_max_per_connection, settings.streams_max_per_tenant)
    # The metrics and tracing interceptors go outside the others, so they see the status those set.
    server = grpc.aio.server(
        interceptors=[
            MetricsInterceptor(),
            TracingInterceptor(),
            AuthInterceptor(tokens, settings.open_services),
            ErrorInterceptor(),
        ],
        options=server_options(settings),
    )
    job_service_pb2_grpc.add_JobServiceServicer_to_server(
        JobServicer(
            resources.jobs,
            resources.ticks,
            resources.dispatcher,
            settings,
            JobLimits.from_settings(settings),
            resources.events,
            streams,
            wake_scheduler=wake_scheduler,
        ),
        server,
    )
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(
        QueueServicer(
            resources.queues,
            resources.dispatcher,
            resources.workers,
            IdleClock(resources.redis),
            resources.dead_letters,
            resources.jobs,
            resources.redis,
            settings,
        ),
        server,
    )
    scaler_service = add_scaler(ExternalScalerServicer(resources.queues, streams), server)
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
    return BuiltServer(server, port, transport, health_servicer)


class InsecureSettingsError(RuntimeError):
    """The api would run without authentication or with secrets in clear, outside development."""


def check_security_settings(settings: Settings) -> None:
    """Refuses what only development may run with (each missing setting named), unless
    ALLOW_INSECURE; warns where it lets it run.

    Raises:
        InsecureSettingsError: ENVIRONMENT is production (the default) and a setting is missing.
    """
    missing = []
    if not settings.api_token_list:
        missing.append(("API_TOKENS", "the api accepts every call without authentication"))
    if settings.secret_box.current_key_id is None:
        missing.append(("SECRETS_KEYS", "secret header values and signing secrets are stored in clear"))
    if missing and settings.environment != "development" and not settings.allow_insecure:
        raise InsecureSettingsError(
            "refusing to start with ENVIRONMENT=production and "
            + " and ".join(f"{name} empty ({risk})" for name, risk in missing)
            + ": set them (docs/security.md), or ENVIRONMENT=development on a machine of your own, or"
            " ALLOW_INSECURE=true to accept the risk"
        )
    for name, risk in missing:
        logger.warning("%s is empty: %s", name, risk)


@contextlib.asynccontextmanager
async def running_api(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[RunningApi]:
    """Starts the api (migrations, pools, server, loops, health probe) and stops it on exit.

    Raises:
        InsecureSettingsError: outside development, API_TOKENS or SECRETS_KEYS is empty.
    """
    check_security_settings(settings)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(logger.info, "api stopped")  # last, once the pools are closed too
        resources = await stack.enter_async_context(open_resources(settings, run_migrations=run_migrations))
        loops = build_loops(settings, resources)
        built = build_server(settings, resources, loops.scheduler.wake)
        health_server = health_only_server(settings, built.health)
        health_port = health_server[1] if health_server is not None else None
        probe = DependencyProbe(
            built.health,
            ["", JOB_SERVICE, QUEUE_SERVICE],
            {"postgresql": resources.jobs.ping, "redis": resources.redis.ping},
            settings.health_check_interval.total_seconds(),
            on_check=lambda name, ok: DEPENDENCY_UP.labels(name).set(1 if ok else 0),
        )
        await probe.check_once()
        tasks = [asyncio.create_task(probe.run(), name="health-probe")]
        tasks += [asyncio.create_task(loop.run(), name=loop.name) for loop in loops.running]
        tasks.append(asyncio.create_task(resources.events.run(), name="job-events"))
        await built.server.start()
        if health_server is not None:
            await health_server[0].start()
        stop_metrics = serve_metrics(settings.metrics_host, settings.metrics_port)
        logger.info(
            "api listening on %s:%d, %s (JobService, QueueService, KEDA's ExternalScaler, grpc.health.v1, "
            "reflection; authentication %s; health-only port %s; background: %s)",
            settings.grpc_host,
            built.port,
            built.transport,
            "on" if settings.api_token_list else "off",
            health_port or "off",
            ", ".join(loop.name for loop in loops.running) or "none",
        )
        try:
            with start_frozen():
                yield RunningApi(built.server, built.port, health_port, built.health, loops.scheduler, loops.reconciler)
        finally:
            await asyncio.to_thread(stop_metrics)
            probe.stop()
            for loop in loops.running:
                loop.stop()
            resources.events.stop()
            await asyncio.gather(*tasks)
            await built.health.enter_graceful_shutdown()
            await built.server.stop(settings.grpc_shutdown_grace.total_seconds())
            if health_server is not None:
                await health_server[0].stop(None)


async def serve(settings: Settings) -> None:
    """Runs until SIGINT or SIGTERM, then drains in-flight RPCs for GRPC_SHUTDOWN_GRACE."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_api(settings):
        await stop.wait()
        logger.info("api stopping")
