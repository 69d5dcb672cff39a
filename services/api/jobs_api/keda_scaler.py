"""KEDA's external scaler (``externalscaler.ExternalScaler``) on the api's gRPC port, so KEDA can
scale the worker Deployment on job-scheduler's own backlog.

The ScaledObject's trigger metadata picks the queue and the target:

* ``queue`` (default ``default``): the job-scheduler queue whose workers are scaled;
* ``targetPerWorker`` (default 100): the backlog one worker should carry.

The metric is the queue's backlog: executions RUNNING, or waiting and due within
``dueWithinSeconds`` (default 30). KEDA's HPA then asks for ``ceil(backlog / targetPerWorker)``
workers (within the ScaledObject's min/max), and scales to zero (or ``minReplicaCount``) when
IsActive is false: nothing running and nothing due.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import grpc

from externalscaler import externalscaler_pb2 as keda
from externalscaler import externalscaler_pb2_grpc
from jobs_api.validation import validate_queue_name
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobs_common.store import QueueStore

__all__ = ["ExternalScalerServicer", "Trigger", "add_to_server", "metric_name"]

DEFAULT_QUEUE = "default"
DEFAULT_TARGET_PER_WORKER = 100.0
DEFAULT_DUE_WITHIN = timedelta(seconds=30)
# Bounds of the trigger's numbers: a backlog per worker, and seconds (366 days).
MAX_TARGET_PER_WORKER = 1_000_000.0
MAX_DUE_WITHIN_S = 366 * 24 * 3600.0
# StreamIsActive: how often the backlog is looked at (an answer is sent when activity changes).
STREAM_CHECK_INTERVAL = 5.0


def metric_name(queue: str) -> str:
    return f"jobscheduler-{queue}-backlog"


class Trigger:
    """The trigger's metadata, checked: INVALID_ARGUMENT names a bad key."""

    def __init__(self, metadata: Mapping[str, str]) -> None:
        self.queue = validate_queue_name(metadata.get("queue") or DEFAULT_QUEUE, "scalerMetadata.queue")
        self.target = _positive(metadata, "targetPerWorker", DEFAULT_TARGET_PER_WORKER, MAX_TARGET_PER_WORKER)
        due_within = _positive(metadata, "dueWithinSeconds", DEFAULT_DUE_WITHIN.total_seconds(), MAX_DUE_WITHIN_S)
        self.due_within = timedelta(seconds=due_within)


def _positive(metadata: Mapping[str, str], key: str, default: float, maximum: float) -> float:
    """A positive number up to ``maximum`` (``inf`` or ``1e300`` would overflow what is made of it)."""
    raw = metadata.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= maximum:
        raise InvalidArgumentError(
            [FieldViolation(f"scalerMetadata.{key}", f"must be a number above 0 and at most {maximum:g}, not {raw!r}")]
        )
    return value


class ExternalScalerServicer(externalscaler_pb2_grpc.ExternalScalerServicer):
    def __init__(self, stats: QueueStore, stream_interval: float = STREAM_CHECK_INTERVAL) -> None:
        self._stats = stats
        self._stream_interval = stream_interval

    async def _backlog(self, trigger: Trigger) -> int:
        return await self._stats.backlog(trigger.queue, trigger.due_within)

    async def IsActive(self, request: keda.ScaledObjectRef, context: Any) -> keda.IsActiveResponse:
        return keda.IsActiveResponse(result=await self._backlog(Trigger(request.scalerMetadata)) > 0)

    async def StreamIsActive(self, request: keda.ScaledObjectRef, context: Any) -> AsyncIterator[keda.IsActiveResponse]:
        trigger = Trigger(request.scalerMetadata)
        last: bool | None = None
        while True:
            active = await self._backlog(trigger) > 0
            if active != last:
                last = active
                yield keda.IsActiveResponse(result=active)
            await asyncio.sleep(self._stream_interval)

    async def GetMetricSpec(self, request: keda.ScaledObjectRef, context: Any) -> keda.GetMetricSpecResponse:
        trigger = Trigger(request.scalerMetadata)
        spec = keda.MetricSpec(
            metricName=metric_name(trigger.queue), targetSize=round(trigger.target), targetSizeFloat=trigger.target
        )
        return keda.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(self, request: keda.GetMetricsRequest, context: Any) -> keda.GetMetricsResponse:
        trigger = Trigger(request.scaledObjectRef.scalerMetadata)
        backlog = await self._backlog(trigger)
        value = keda.MetricValue(metricName=metric_name(trigger.queue), metricValue=backlog, metricValueFloat=backlog)
        return keda.GetMetricsResponse(metricValues=[value])


def add_to_server(servicer: ExternalScalerServicer, server: grpc.aio.Server) -> str:
    """Registers the scaler; returns its full service name (for reflection)."""
    externalscaler_pb2_grpc.add_ExternalScalerServicer_to_server(servicer, server)
    return keda.DESCRIPTOR.services_by_name["ExternalScaler"].full_name
