"""QueueService: list queues, read a queue's figures, pause and resume a queue, list the live
workers, and recommend a worker count (:mod:`jobs_api.scaling`).

A pause is written to PostgreSQL (``queue_settings``, the record) and then to Redis (the key the
workers' claim script checks); the reconciler sets the Redis key again each pass, so a pause
outlives the loss of Redis's data.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeAlias

import grpc

from jobs_api.convert import duration_proto, timestamp_proto
from jobs_api.scaling import IdleClock, ScalingInputs, recommend
from jobs_common.domain import ExecutionState
from jobs_common.queue import Dispatcher
from jobs_common.settings import Settings
from jobs_common.store import QueueInfo, QueueStats
from jobs_common.validation import validate_queue_name
from jobs_common.workers import WorkerInfo, WorkerRegistry
from jobscheduler.v1 import queue_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2_grpc

__all__ = ["QueueServicer"]

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _queue(info: QueueInfo) -> api.Queue:
    message = api.Queue(name=info.name, paused=info.paused)
    if info.pause_time is not None:
        message.pause_time.CopyFrom(timestamp_proto(info.pause_time))
    return message


def _worker(info: WorkerInfo) -> api.Worker:
    return api.Worker(
        id=info.id,
        host=info.host,
        pid=info.pid,
        queue=info.queue,
        start_time=timestamp_proto(info.start_time),
        last_heartbeat_time=timestamp_proto(info.last_heartbeat),
        in_flight=info.in_flight,
        capacity=info.capacity,
        version=info.version,
    )


class QueueServicer(queue_service_pb2_grpc.QueueServiceServicer):
    def __init__(
        self, queues: QueueStats, dispatcher: Dispatcher, workers: WorkerRegistry, idle: IdleClock, settings: Settings
    ) -> None:
        self._queues = queues
        self._dispatcher = dispatcher
        self._workers = workers
        self._idle = idle
        self._settings = settings

    async def ListQueues(self, request: api.ListQueuesRequest, context: Context) -> api.ListQueuesResponse:
        return api.ListQueuesResponse(queues=[_queue(q) for q in await self._queues.all_queues()])

    async def GetQueueStats(self, request: api.GetQueueStatsRequest, context: Context) -> api.GetQueueStatsResponse:
        info = await self._queues.get(validate_queue_name(request.name))
        counts = {state: 0 for state in ExecutionState}
        oldest = 0.0
        for row in await self._queues.depth_of(info.name):
            counts[row.state] = row.count
            oldest = max(oldest, row.oldest_ready_age or 0.0)
        return api.GetQueueStatsResponse(
            queue=_queue(info),
            scheduled=counts[ExecutionState.SCHEDULED],
            queued=counts[ExecutionState.QUEUED],
            running=counts[ExecutionState.RUNNING],
            retry_scheduled=counts[ExecutionState.RETRY_SCHEDULED],
            oldest_ready_age=duration_proto(timedelta(seconds=oldest)),
        )

    async def PauseQueue(self, request: api.PauseQueueRequest, context: Context) -> api.PauseQueueResponse:
        info = await self._queues.set_paused(validate_queue_name(request.name), True)
        # If Redis does not answer, the error is UNAVAILABLE and the reconciler sets the key later.
        await self._dispatcher.set_paused(info.name, True)
        return api.PauseQueueResponse(queue=_queue(info))

    async def ResumeQueue(self, request: api.ResumeQueueRequest, context: Context) -> api.ResumeQueueResponse:
        info = await self._queues.set_paused(validate_queue_name(request.name), False)
        await self._dispatcher.set_paused(info.name, False)
        return api.ResumeQueueResponse(queue=_queue(info))

    async def ListWorkers(self, request: api.ListWorkersRequest, context: Context) -> api.ListWorkersResponse:
        queue = validate_queue_name(request.queue, "queue") if request.queue else None
        live = await self._workers.live(self._settings.worker_lease_ttl, queue)
        return api.ListWorkersResponse(workers=[_worker(w) for w in live])

    async def GetScalingRecommendation(
        self, request: api.GetScalingRecommendationRequest, context: Context
    ) -> api.GetScalingRecommendationResponse:
        settings = self._settings
        queue = validate_queue_name(request.queue, "queue")
        backlog = await self._queues.backlog(queue, settings.scaling_due_within)
        running = sum(row.count for row in await self._queues.depth_of(queue) if row.state is ExecutionState.RUNNING)
        workers = await self._workers.live(settings.worker_lease_ttl, queue)
        capacity = (
            round(sum(w.capacity for w in workers) / len(workers)) if workers else settings.worker_max_concurrent_jobs
        )
        inputs = ScalingInputs(
            backlog=backlog,
            current_workers=len(workers),
            per_worker_capacity=capacity,
            target_utilization=settings.scaling_target_utilization,
            min_workers=settings.scaling_min_workers,
            max_workers=settings.scaling_max_workers,
            scale_down_cooldown=settings.scaling_scale_down_cooldown,
            idle_for=await self._idle.observe(queue, busy=backlog > 0),
        )
        desired, reason = recommend(inputs)
        return api.GetScalingRecommendationResponse(
            queue=queue,
            desired_workers=desired,
            current_workers=inputs.current_workers,
            backlog=backlog,
            in_flight=running,
            per_worker_capacity=capacity,
            target_utilization=inputs.target_utilization,
            min_workers=inputs.min_workers,
            max_workers=inputs.max_workers,
            scale_down_cooldown=duration_proto(inputs.scale_down_cooldown),
            idle_for=duration_proto(inputs.idle_for),
            reason=reason,
        )
