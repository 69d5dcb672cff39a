"""QueueService: list queues, read a queue's figures, pause and resume a queue, set its retention, list the live
workers, recommend a worker count (:mod:`jobs_common.domain._scaling`), and list, replay and purge dead
letters.

A pause is written to PostgreSQL (``queue_settings``, the record) and then to Redis (the key the
workers' claim script checks); the reconciler sets the Redis key again each pass, so a pause
outlives the loss of Redis's data.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, TypeAlias

import grpc
from redis.asyncio import Redis

from jobs_api.callers import current_tenant
from jobs_api.convert import (
    duration_proto,
    error_kind_from_proto,
    execution_to_proto,
    set_duration,
    set_timestamp,
    timestamp_field,
    timestamp_proto,
)
from jobs_api.idle_clock import IdleClock
from jobs_api.validation import (
    MAX_PAGE_SIZE,
    validate_id,
    validate_page_size,
    validate_queue_name,
    validate_queue_update,
)
from jobs_common.arq_extension import Dispatch, Dispatcher, LimitsState, dispatch_of
from jobs_common.domain import (
    DeadLetterFilter,
    ExecutionState,
    QueueInfo,
    Retention,
    ScalingPolicy,
    oldest_ready_age,
    recommend,
)
from jobs_common.errors import (
    REDIS_ERRORS,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
)
from jobs_common.paging import decode_name_token, encode_name_token
from jobs_common.settings import Settings
from jobs_common.store import DeadLetters, JobStore, QueueStore
from jobs_common.throughput import read_throughput
from jobs_common.tracing import current_traceparent
from jobs_common.workers import WorkerInfo, WorkerRegistry
from jobscheduler.v1 import queue_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2_grpc

__all__ = ["QueueServicer"]

logger = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _queue(info: QueueInfo, default: Retention) -> api.Queue:
    retention = info.retention(default)
    limits = info.rate_limits
    message = api.Queue(
        name=info.name,
        paused=info.paused,
        history_retention=duration_proto(retention.history),
        dead_letter_retention=duration_proto(retention.dead_letters),
        rate_limits=api.RateLimits(
            max_dispatches_per_second=limits.max_dispatches_per_second,
            max_burst_size=limits.burst,
            max_concurrent_dispatches=limits.max_concurrent_dispatches,
        ),
    )
    if info.pause_time is not None:
        set_timestamp(message.pause_time, info.pause_time)
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
        self,
        queues: QueueStore,
        dispatcher: Dispatcher,
        workers: WorkerRegistry,
        idle: IdleClock,
        dead_letters: DeadLetters,
        jobs: JobStore,
        redis: Redis,
        settings: Settings,
    ) -> None:
        self._redis = redis
        self._limits_state = LimitsState(redis)
        self._dead_letters = dead_letters
        self._jobs = jobs
        self._queues = queues
        self._dispatcher = dispatcher
        self._workers = workers
        self._idle = idle
        self._settings = settings
        self._scaling = scaling_policy(settings)

    def _queue(self, info: QueueInfo) -> api.Queue:
        return _queue(info, self._settings.retention)

    async def ListQueues(self, request: api.ListQueuesRequest, context: Context) -> api.ListQueuesResponse:
        page_size = validate_page_size(request.page_size) if request.page_size else MAX_PAGE_SIZE
        queues, more = await self._queues.page(decode_name_token(request.page_token), page_size)
        token = encode_name_token(queues[-1].name) if more else ""
        return api.ListQueuesResponse(queues=[self._queue(q) for q in queues], next_page_token=token)

    async def GetQueueStats(self, request: api.GetQueueStatsRequest, context: Context) -> api.GetQueueStatsResponse:
        info = await self._queues.get(validate_queue_name(request.name))
        depth = await self._queues.depth(info.name)
        counts = {state: 0 for state in ExecutionState}
        counts.update((row.state, row.count) for row in depth)
        rates = await read_throughput(self._redis, info.name)
        held = await self._limits_state.read(info.name)
        response = api.GetQueueStatsResponse(
            open_dispatches=held.open_dispatches,
            waiting_for_concurrency=held.waiting_for_concurrency,
            waiting_for_rate=held.waiting_for_rate,
            flow_keys=held.flow_keys,
            waiting_for_key_concurrency=held.waiting_for_key_concurrency,
            waiting_for_key_rate=held.waiting_for_key_rate,
            busiest_flow_keys=[api.FlowKeyStats(key=k.key, ready=k.due, open=k.open) for k in held.busiest_keys],
            started_last_minute=rates.started_last_minute,
            succeeded_last_minute=rates.succeeded_last_minute,
            failed_last_minute=rates.failed_last_minute,
            started_last_hour=rates.started_last_hour,
            succeeded_last_hour=rates.succeeded_last_hour,
            failed_last_hour=rates.failed_last_hour,
            attempt_duration_sample=rates.duration_sample,
            queue=self._queue(info),
            scheduled=counts[ExecutionState.SCHEDULED],
            queued=counts[ExecutionState.QUEUED],
            running=counts[ExecutionState.RUNNING],
            retry_scheduled=counts[ExecutionState.RETRY_SCHEDULED],
            oldest_ready_age=duration_proto(oldest_ready_age(depth)),
        )
        if rates.duration_p50 is not None and rates.duration_p95 is not None:
            set_duration(response.attempt_duration_p50, timedelta(seconds=rates.duration_p50))
            set_duration(response.attempt_duration_p95, timedelta(seconds=rates.duration_p95))
        return response

    async def PauseQueue(self, request: api.PauseQueueRequest, context: Context) -> api.PauseQueueResponse:
        info = await self._queues.set_paused(validate_queue_name(request.name), True)
        # If Redis does not answer, the error is UNAVAILABLE and the reconciler sets the key later.
        await self._dispatcher.set_paused(info.name, True)
        return api.PauseQueueResponse(queue=self._queue(info))

    async def ResumeQueue(self, request: api.ResumeQueueRequest, context: Context) -> api.ResumeQueueResponse:
        info = await self._queues.set_paused(validate_queue_name(request.name), False)
        await self._dispatcher.set_paused(info.name, False)
        return api.ResumeQueueResponse(queue=self._queue(info))

    async def GetQueue(self, request: api.GetQueueRequest, context: Context) -> api.GetQueueResponse:
        return api.GetQueueResponse(queue=self._queue(await self._queues.get(validate_queue_name(request.name))))

    async def UpdateQueue(self, request: api.UpdateQueueRequest, context: Context) -> api.UpdateQueueResponse:
        name, changes = validate_queue_update(request)
        info = await self._queues.update(name, changes)
        if changes.set_rate_limits:
            # As a pause: if Redis does not answer, the error is UNAVAILABLE, and the reconciler
            # mirrors the limits PostgreSQL now holds at its next pass.
            await self._dispatcher.sync_limits({info.name: info.rate_limits})
            await self._dispatcher.ring(info.name)
        return api.UpdateQueueResponse(queue=self._queue(info))

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
        depth = await self._queues.depth(queue)
        rates = await read_throughput(self._redis, queue)
        mean = None if rates.duration_mean is None else timedelta(seconds=rates.duration_mean)
        workers = await self._workers.live(settings.worker_lease_ttl, queue)
        inputs = self._scaling.inputs(
            backlog=backlog,
            depth=depth,
            worker_capacities=[worker.capacity for worker in workers],
            started_last_minute=rates.started_last_minute,
            mean_duration=mean,
            idle_for=await self._idle.observe(queue, busy=backlog > 0),
        )
        desired, reason = recommend(inputs)
        return api.GetScalingRecommendationResponse(
            queue=queue,
            desired_workers=desired,
            current_workers=inputs.current_workers,
            backlog=backlog,
            in_flight=sum(row.count for row in depth if row.state is ExecutionState.RUNNING),
            per_worker_capacity=inputs.per_worker_capacity,
            target_utilization=inputs.target_utilization,
            min_workers=inputs.min_workers,
            max_workers=inputs.max_workers,
            scale_down_cooldown=duration_proto(inputs.scale_down_cooldown),
            idle_for=duration_proto(inputs.idle_for),
            reason=reason,
            arrival_rate=inputs.arrival_rate,
            mean_attempt_duration=None if mean is None else duration_proto(mean),
            processing_demand=inputs.processing_demand,
            oldest_ready_age=duration_proto(inputs.oldest_ready_age),
            max_ready_age=duration_proto(inputs.max_ready_age),
        )

    async def ListDeadLetters(
        self, request: api.ListDeadLettersRequest, context: Context
    ) -> api.ListDeadLettersResponse:
        page = await self._dead_letters.page(
            current_tenant(),
            _dead_letter_filter(request.filter),
            validate_page_size(request.page_size),
            request.page_token,
        )
        return api.ListDeadLettersResponse(
            executions=[execution_to_proto(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def ReplayDeadLetters(
        self, request: api.ReplayDeadLettersRequest, context: Context
    ) -> api.ReplayDeadLettersResponse:
        limit = _limit(request.limit, default=100, maximum=1000)
        tenant = current_tenant()
        if request.ids:
            if len(request.ids) > limit:
                raise InvalidArgumentError([FieldViolation("ids", f"at most {limit} ids per call")])
            ids = [validate_id(value, f"ids[{i}]") for i, value in enumerate(request.ids)]
        else:
            ids = await self._dead_letters.ids(tenant, _dead_letter_filter(request.filter), limit)
        response = api.ReplayDeadLettersResponse()
        queued: list[Dispatch] = []
        trace_parent = current_traceparent()
        for execution_id in ids:
            try:
                replayed = await self._jobs.replay_execution(
                    tenant, execution_id, dead_only=True, trace_parent=trace_parent
                )
            except (NotFoundError, FailedPreconditionError):
                response.skipped_ids.append(str(execution_id))
                continue
            queued.append(dispatch_of(replayed.execution, replayed.queue))
            response.executions.append(execution_to_proto(replayed.execution))
        try:
            await self._dispatcher.dispatch(queued)
        except REDIS_ERRORS as exc:  # committed: the reconciler dispatches them
            logger.warning("%d replayed executions committed but not enqueued: %s", len(queued), exc)
        return response

    async def PurgeDeadLetters(
        self, request: api.PurgeDeadLettersRequest, context: Context
    ) -> api.PurgeDeadLettersResponse:
        limit = _limit(request.limit, default=1000, maximum=10_000)
        return api.PurgeDeadLettersResponse(
            purged=await self._dead_letters.purge(current_tenant(), _dead_letter_filter(request.filter), limit)
        )


def scaling_policy(settings: Settings) -> ScalingPolicy:
    """GetScalingRecommendation's bounds (SCALING_*)."""
    return ScalingPolicy(
        target_utilization=settings.scaling_target_utilization,
        min_workers=settings.scaling_min_workers,
        max_workers=settings.scaling_max_workers,
        scale_down_cooldown=settings.scaling_scale_down_cooldown,
        max_ready_age=settings.scaling_max_ready_age,
        default_capacity=settings.worker_max_concurrent_jobs,
    )


def _limit(value: int, default: int, maximum: int) -> int:
    if value < 0:
        raise InvalidArgumentError([FieldViolation("limit", "must not be negative")])
    return min(value or default, maximum)


def _dead_letter_filter(message: api.DeadLetterFilter) -> DeadLetterFilter:
    return DeadLetterFilter(
        queue=validate_queue_name(message.queue, "filter.queue") if message.queue else None,
        job_id=validate_id(message.job_id, "filter.job_id") if message.job_id else None,
        ended_after=timestamp_field(message, "end_time_after", "filter.end_time_after"),
        ended_before=timestamp_field(message, "end_time_before", "filter.end_time_before"),
        error_kind=error_kind_from_proto(message.error_kind, "filter.error_kind"),
    )
