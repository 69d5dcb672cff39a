"""The api's Prometheus metrics (see the README's table), and the loop that refreshes the
queue gauges from PostgreSQL."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from jobs_api.interceptors import Context, Continuation, split_method, wrap_handler
from jobs_api.loops import BackgroundLoop
from jobs_common.store import QueueStore

__all__ = ["DEPENDENCY_UP", "JOBS_CREATED", "MetricsInterceptor", "QueueGaugesLoop"]

JOBS_CREATED = Counter(
    "jobscheduler_jobs_created_total", "Jobs created (a repeated request_id is not counted).", ["kind"]
)
DEPENDENCY_UP = Gauge("jobscheduler_dependency_up", "1 while the dependency answers the health probe.", ["dependency"])
EXECUTIONS = Gauge(
    "jobscheduler_executions", "Unfinished executions by queue and state (refreshed periodically).", ["queue", "state"]
)
OLDEST_READY_AGE = Gauge(
    "jobscheduler_oldest_ready_age_seconds",
    "How long the oldest due, waiting execution of a queue has waited.",
    ["queue"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds", "Time to handle an RPC (a stream: until it ends).", ["grpc_service", "grpc_method"]
)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary and server-streaming RPC. Put it first (outermost), so it
    sees the status the error interceptor sets."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return wrap_handler(await continuation(handler_call_details), handler_call_details.method, _observed)


@contextlib.asynccontextmanager
async def _observed(full_method: str, context: Context) -> AsyncIterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        service, method = split_method(full_method)
        code = context.code() or grpc.StatusCode.OK
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        GRPC_HANDLED.labels(service, method, name).inc()
        GRPC_HANDLING_SECONDS.labels(service, method).observe(time.perf_counter() - started)


class QueueGaugesLoop(BackgroundLoop):
    """Refreshes ``jobscheduler_executions`` and ``jobscheduler_oldest_ready_age_seconds`` from
    one grouped query over unfinished executions (bounded by the backlog, not by history)."""

    name = "queue-gauges"

    def __init__(self, stats: QueueStore, interval: timedelta) -> None:
        super().__init__(interval)
        self._stats = stats

    async def step(self) -> float:
        depth = await self._stats.depth()
        EXECUTIONS.clear()
        OLDEST_READY_AGE.clear()
        ages: dict[str, float] = {}
        for row in depth:
            EXECUTIONS.labels(row.queue, row.state.value).set(row.count)
            ages[row.queue] = max(ages.get(row.queue, 0.0), row.oldest_ready_age or 0.0)
        for queue, age in ages.items():
            OLDEST_READY_AGE.labels(queue).set(age)
        return self.interval
