"""The api's Prometheus metrics (see the table in docs/operations.md); :mod:`jobs_api.loops` refreshes the
queue gauges."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from jobs_api.interceptors import Context, Continuation, split_method, wrap_handler

__all__ = [
    "DEAD_LETTERS",
    "DEPENDENCY_UP",
    "EXECUTIONS",
    "FLOW_KEYS",
    "FLOW_KEY_OPEN",
    "FLOW_KEY_READY",
    "HISTORY_PURGED",
    "JOBS_CREATED",
    "LOOP_LAST_PASS",
    "OLDEST_READY_AGE",
    "QUEUE_PAUSED",
    "WORKERS",
    "MetricsInterceptor",
]

JOBS_CREATED = Counter(
    "jobscheduler_jobs_created_total", "Jobs created (a repeated request_id is not counted).", ["kind"]
)
DEPENDENCY_UP = Gauge("jobscheduler_dependency_up", "1 while the dependency answers the health probe.", ["dependency"])
EXECUTIONS = Gauge(
    "jobscheduler_executions", "Unfinished executions by queue and state (refreshed periodically).", ["queue", "state"]
)
OLDEST_READY_AGE = Gauge(
    "jobscheduler_oldest_ready_age_seconds",
    "How long the oldest due, waiting execution of a queue has waited (0 when none waits).",
    ["queue"],
)
DEAD_LETTERS = Gauge("jobscheduler_dead_letters", "Dead letters (DEAD executions not replayed) by queue.", ["queue"])
QUEUE_PAUSED = Gauge("jobscheduler_queue_paused", "1 while the queue is paused (PauseQueue), else 0.", ["queue"])
QUEUE_HELD_BACK = Gauge(
    "jobscheduler_queue_held_back",
    "Due executions a queue's rate limits hold back now, by reason (concurrency: its"
    " max_concurrent_dispatches calls are open; rate: its token bucket is empty; queues with limits only),"
    " and those their flow key holds back (key_concurrency, key_rate; every queue).",
    ["queue", "reason"],
)
FLOW_KEYS = Gauge("jobscheduler_flow_keys", "Flow keys (Job.flow_control) of a queue with jobs ready.", ["queue"])
# Bounded cardinality: only the 10 keys of each queue with the most due jobs have series.
FLOW_KEY_READY = Gauge(
    "jobscheduler_flow_key_ready",
    "Due executions ready to start of a flow key, for the 10 keys of each queue with the most.",
    ["queue", "key"],
)
FLOW_KEY_OPEN = Gauge(
    "jobscheduler_flow_key_open_dispatches",
    "Calls of a flow key open now across the queue's live workers, for the 10 keys of each queue with the most due.",
    ["queue", "key"],
)
QUEUE_OPEN_DISPATCHES = Gauge(
    "jobscheduler_queue_open_dispatches",
    "Calls of a queue open now across its live workers (queues with rate limits only).",
    ["queue"],
)
WORKERS = Gauge("jobscheduler_workers", "Live workers (heartbeat within WORKER_LEASE_TTL) by queue.", ["queue"])
HISTORY_PURGED = Counter(
    "jobscheduler_history_purged_total",
    "History deleted past its queue's retention, by queue and kind (executions, dead_letters, jobs).",
    ["queue", "kind"],
)
LOOP_LAST_PASS = Gauge(
    "jobscheduler_loop_last_pass_timestamp_seconds",
    "When this api's background loop last completed a pass (the reconciler: one it led), Unix time.",
    ["loop"],
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
