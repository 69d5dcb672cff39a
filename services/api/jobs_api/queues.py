"""QueueService: list queues, read a queue's figures, pause and resume a queue.

A pause is written to PostgreSQL (``queue_settings``, the record) and then to Redis (the key the
workers' claim script checks); the reconciler sets the Redis key again each pass, so a pause
outlives the loss of Redis's data.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeAlias

import grpc

from jobs_api.convert import duration_proto, timestamp_proto
from jobs_common.domain import ExecutionState
from jobs_common.queue import Dispatcher
from jobs_common.store import QueueInfo, QueueStats
from jobs_common.validation import validate_queue_name
from jobscheduler.v1 import queue_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2_grpc

__all__ = ["QueueServicer"]

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _queue(info: QueueInfo) -> api.Queue:
    message = api.Queue(name=info.name, paused=info.paused)
    if info.pause_time is not None:
        message.pause_time.CopyFrom(timestamp_proto(info.pause_time))
    return message


class QueueServicer(queue_service_pb2_grpc.QueueServiceServicer):
    def __init__(self, queues: QueueStats, dispatcher: Dispatcher) -> None:
        self._queues = queues
        self._dispatcher = dispatcher

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
