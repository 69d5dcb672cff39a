"""KEDA's external scaler (``externalscaler.ExternalScaler``) on the api's gRPC port, so KEDA can
scale the worker Deployment on job-scheduler's own backlog.

The ScaledObject's trigger metadata picks the queue and the target:

* ``queue`` (default ``default``): the job-scheduler queue whose workers are scaled;
* ``targetPerWorker`` (default 100): the backlog one worker should carry.

The metric is the queue's backlog: executions RUNNING, or waiting and due within
``dueWithinSeconds`` (default 30). KEDA's HPA then asks for ``ceil(backlog / targetPerWorker)``
workers (within the ScaledObject's min/max), and scales to zero (or ``minReplicaCount``) when
IsActive is false: nothing running and nothing due.

Every StreamIsActive stream on one queue (and ``dueWithinSeconds``) shares one backlog query
each STREAM_CHECK_INTERVAL, however many KEDA (or anyone) opens; streams count against the
api's stream caps (:mod:`jobs_api.streams`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc

from externalscaler import externalscaler_pb2 as keda
from externalscaler import externalscaler_pb2_grpc
from jobs_api.callers import current_tenant
from jobs_api.streams import StreamLimits
from jobs_api.validation import validate_queue_name
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobs_common.store import QueueStore

__all__ = ["BacklogPolls", "ExternalScalerServicer", "Trigger", "add_to_server", "metric_name"]

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


# A backlog, or the error that ended the poll reading it.
_Reading = int | Exception


@dataclass(eq=False)
class _Poll:
    streams: set[asyncio.Queue[_Reading]] = field(default_factory=set)
    latest: int | None = None
    task: asyncio.Task[None] | None = None


class BacklogPolls:
    """One backlog query per (queue, due_within) every ``interval`` while any stream wants it;
    each stream gets every reading (the latest one at once when it joins)."""

    def __init__(self, stats: QueueStore, interval: float) -> None:
        self._stats = stats
        self._interval = interval
        self._polls: dict[tuple[str, timedelta], _Poll] = {}

    @property
    def running(self) -> int:
        return len(self._polls)

    @contextlib.asynccontextmanager
    async def readings(self, trigger: Trigger) -> AsyncIterator[asyncio.Queue[_Reading]]:
        key = (trigger.queue, trigger.due_within)
        poll = self._polls.get(key)
        if poll is None:
            poll = self._polls[key] = _Poll()
            poll.task = asyncio.create_task(self._run(key, poll), name=f"backlog poll {trigger.queue}")
        readings: asyncio.Queue[_Reading] = asyncio.Queue(maxsize=1)
        if poll.latest is not None:
            readings.put_nowait(poll.latest)
        poll.streams.add(readings)
        try:
            yield readings
        finally:
            poll.streams.discard(readings)
            if not poll.streams and self._polls.get(key) is poll:
                del self._polls[key]
                if poll.task is not None:
                    poll.task.cancel()

    async def _run(self, key: tuple[str, timedelta], poll: _Poll) -> None:
        while True:
            reading: _Reading
            try:
                reading = poll.latest = await self._stats.backlog(*key)
            except Exception as error:  # every stream ends with it (UNAVAILABLE for a database down)
                reading = error
            for readings in poll.streams:
                if readings.full():  # a stream that has not read the last one wants this one
                    readings.get_nowait()
                readings.put_nowait(reading)
            if isinstance(reading, Exception):
                # The next stream starts a new poll.
                if self._polls.get(key) is poll:
                    del self._polls[key]
                return
            await asyncio.sleep(self._interval)


class ExternalScalerServicer(externalscaler_pb2_grpc.ExternalScalerServicer):
    def __init__(
        self, stats: QueueStore, streams: StreamLimits, stream_interval: float = STREAM_CHECK_INTERVAL
    ) -> None:
        self._stats = stats
        self._streams = streams
        self.polls = BacklogPolls(stats, stream_interval)

    async def _backlog(self, trigger: Trigger) -> int:
        return await self._stats.backlog(trigger.queue, trigger.due_within)

    async def IsActive(self, request: keda.ScaledObjectRef, context: Any) -> keda.IsActiveResponse:
        return keda.IsActiveResponse(result=await self._backlog(Trigger(request.scalerMetadata)) > 0)

    async def StreamIsActive(self, request: keda.ScaledObjectRef, context: Any) -> AsyncIterator[keda.IsActiveResponse]:
        trigger = Trigger(request.scalerMetadata)
        with self._streams.hold(context.peer(), current_tenant(), "StreamIsActive"):
            async with self.polls.readings(trigger) as readings:
                last: bool | None = None
                while True:
                    reading = await readings.get()
                    if isinstance(reading, Exception):
                        raise reading
                    active = reading > 0
                    if active != last:
                        last = active
                        yield keda.IsActiveResponse(result=active)

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
