"""The async client: one method per API call, typed errors, page iterators, WatchJob as an async
iterator, and a request_id on every create so a retried call never makes two jobs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from jobs_client._connection import Connection
from jobs_client._errors import from_rpc_error
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["AsyncJobsClient"]

_R = TypeVar("_R")
_I = TypeVar("_I")


class AsyncJobsClient:
    """``async with AsyncJobsClient() as client: job = await client.create_job(http_job(url))``.

    Connects as ``connection`` says (default: :meth:`Connection.from_env`). Every failed call
    raises a :class:`~jobs_client.JobsError` subclass; UNAVAILABLE is retried by the channel
    first (see ``RETRIED_METHODS``). ``timeout`` is each unary call's deadline in seconds.
    """

    def __init__(self, connection: Connection | None = None, *, timeout: float | None = 30.0) -> None:
        self.connection = connection or Connection.from_env()
        self._timeout = timeout
        self._channel = self.connection.async_channel()
        self._jobs = job_service_pb2_grpc.JobServiceStub(self._channel)
        self._queues = queue_service_pb2_grpc.QueueServiceStub(self._channel)

    async def __aenter__(self) -> AsyncJobsClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[_R]], request: Any) -> _R:
        try:
            return await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def _pages(
        self, method: Callable[..., Awaitable[Any]], request: Any, items: Callable[[Any], Sequence[_I]]
    ) -> AsyncIterator[_I]:
        """Every item of a listing, page after page (the request's page_token is filled in)."""
        while True:
            page = await self._call(method, request)
            for item in items(page):
                yield item
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    # Jobs.

    async def create_job(
        self,
        job: pb.Job,
        *,
        request_id: str | None = None,
        deduplication_key: str = "",
        deduplication_window: timedelta | None = None,
        debounce: bool = False,
    ) -> pb.Job:
        """Creates ``job`` and answers it as stored. ``request_id`` (a UUID, made here when not
        given) makes the call idempotent: the same id answers the job it made before. With a
        ``deduplication_key``, a create with the key within ``deduplication_window`` of the first
        makes nothing and answers the first one's job; with ``debounce`` too, the job runs a
        window after the last such create, with that create's definition."""
        request = api.CreateJobRequest(job=job, request_id=request_id or str(uuid.uuid4()))
        if deduplication_key or deduplication_window is not None or debounce:
            request.deduplication.key = deduplication_key
            if debounce:
                request.deduplication.mode = api.DEDUPLICATION_MODE_DEBOUNCE
            if deduplication_window is not None:
                request.deduplication.window.FromTimedelta(deduplication_window)
        return (await self._call(self._jobs.CreateJob, request)).job

    async def create_jobs(self, jobs: Sequence[pb.Job]) -> list[pb.Job]:
        """Creates up to 1,000 jobs in one call (each with a request_id of its own)."""
        requests = [api.CreateJobRequest(job=job, request_id=str(uuid.uuid4())) for job in jobs]
        answer = await self._call(self._jobs.BatchCreateJobs, api.BatchCreateJobsRequest(requests=requests))
        return list(answer.jobs)

    async def get_job(self, job_id: str) -> pb.Job:
        return (await self._call(self._jobs.GetJob, api.GetJobRequest(id=job_id))).job

    def list_jobs(
        self,
        *,
        state: pb.JobState.ValueType = pb.JOB_STATE_UNSPECIFIED,
        queue: str = "",
        labels: Mapping[str, str] | None = None,
        kind: pb.JobKind.ValueType = pb.JOB_KIND_UNSPECIFIED,
        last_execution_state: pb.ExecutionState.ValueType = pb.EXECUTION_STATE_UNSPECIFIED,
        full: bool = False,
        page_size: int = 0,
    ) -> AsyncIterator[pb.Job]:
        """Every matching job, newest first. ``full``: with their headers and bodies (JOB_VIEW_FULL)."""
        request = api.ListJobsRequest(
            state=state,
            queue=queue,
            labels=dict(labels or {}),
            kind=kind,
            last_execution_state=last_execution_state,
            view=api.JOB_VIEW_FULL if full else api.JOB_VIEW_BASIC,
            page_size=page_size,
        )
        return self._pages(self._jobs.ListJobs, request, lambda page: page.jobs)

    async def update_job(self, job: pb.Job, paths: Sequence[str] = ()) -> pb.Job:
        """Changes the fields ``paths`` names (``"http_request.url"``, ``"schedule"``) to their
        values in ``job`` (``job.id`` names it); no paths: every field set in ``job``."""
        request = api.UpdateJobRequest(job=job, update_mask=FieldMask(paths=list(paths)))
        return (await self._call(self._jobs.UpdateJob, request)).job

    async def pause_job(self, job_id: str) -> pb.Job:
        return (await self._call(self._jobs.PauseJob, api.PauseJobRequest(id=job_id))).job

    async def resume_job(self, job_id: str) -> pb.Job:
        return (await self._call(self._jobs.ResumeJob, api.ResumeJobRequest(id=job_id))).job

    async def run_job(self, job_id: str) -> api.RunJobResponse:
        """Runs the job now, outside its schedule (not retried on UNAVAILABLE: a second run
        would be another execution)."""
        return await self._call(self._jobs.RunJob, api.RunJobRequest(id=job_id))

    async def delete_job(self, job_id: str) -> pb.Job:
        return (await self._call(self._jobs.DeleteJob, api.DeleteJobRequest(id=job_id))).job

    async def watch(self, job_id: str) -> AsyncGenerator[api.WatchJobResponse, None]:
        """The job now, then each change as it commits; ends when a one-off job is final or the
        job is deleted (a recurring job's watch goes on until the caller stops). Leaving early:
        ``aclose()`` it (or ``contextlib.aclosing``) to end the stream at once."""
        stream = self._jobs.WatchJob(api.WatchJobRequest(id=job_id))
        try:
            async for change in stream:
                yield change
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            stream.cancel()

    # Executions.

    async def get_execution(self, execution_id: str) -> pb.Execution:
        """The execution with its attempts."""
        return (await self._call(self._jobs.GetExecution, api.GetExecutionRequest(id=execution_id))).execution

    def list_executions(self, job_id: str, *, page_size: int = 0) -> AsyncIterator[pb.Execution]:
        """Every execution of the job, newest first (without attempts)."""
        request = api.ListExecutionsRequest(job_id=job_id, page_size=page_size)
        return self._pages(self._jobs.ListExecutions, request, lambda page: page.executions)

    async def cancel_execution(self, execution_id: str) -> pb.Execution:
        request = api.CancelExecutionRequest(id=execution_id)
        return (await self._call(self._jobs.CancelExecution, request)).execution

    async def replay_execution(self, execution_id: str) -> pb.Execution:
        """A new execution of a DEAD or CANCELLED one (the same replay when asked again)."""
        request = api.ReplayExecutionRequest(id=execution_id)
        return (await self._call(self._jobs.ReplayExecution, request)).execution

    # Queues and dead letters.

    def list_queues(self, *, page_size: int = 0) -> AsyncIterator[queue_service_pb2.Queue]:
        request = queue_service_pb2.ListQueuesRequest(page_size=page_size)
        return self._pages(self._queues.ListQueues, request, lambda page: page.queues)

    async def get_queue_stats(self, name: str) -> queue_service_pb2.GetQueueStatsResponse:
        return await self._call(self._queues.GetQueueStats, queue_service_pb2.GetQueueStatsRequest(name=name))

    async def get_queue(self, name: str) -> queue_service_pb2.Queue:
        """The queue's settings: paused, retention, rate limits."""
        return (await self._call(self._queues.GetQueue, queue_service_pb2.GetQueueRequest(name=name))).queue

    async def pause_queue(self, name: str) -> queue_service_pb2.Queue:
        return (await self._call(self._queues.PauseQueue, queue_service_pb2.PauseQueueRequest(name=name))).queue

    async def resume_queue(self, name: str) -> queue_service_pb2.Queue:
        return (await self._call(self._queues.ResumeQueue, queue_service_pb2.ResumeQueueRequest(name=name))).queue

    async def update_queue(
        self,
        name: str,
        *,
        history_retention: timedelta | None = None,
        dead_letter_retention: timedelta | None = None,
        max_dispatches_per_second: float | None = None,
        max_burst_size: int | None = None,
        max_concurrent_dispatches: int | None = None,
        reset: Sequence[str] = (),
    ) -> queue_service_pb2.Queue:
        """Sets the retentions given (``timedelta(0)`` keeps for ever) and the rate limits given
        (0: no limit); the fields named in ``reset`` (``"rate_limits"`` for all three limits) go
        back to the server's defaults."""
        queue = queue_service_pb2.Queue(name=name)
        paths = list(reset)
        limits = {
            "max_dispatches_per_second": max_dispatches_per_second,
            "max_burst_size": max_burst_size,
            "max_concurrent_dispatches": max_concurrent_dispatches,
        }
        for field, value in limits.items():
            if value is not None:
                setattr(queue.rate_limits, field, value)
                paths.append(f"rate_limits.{field}")
        if history_retention is not None:
            queue.history_retention.FromTimedelta(history_retention)
            paths.append("history_retention")
        if dead_letter_retention is not None:
            queue.dead_letter_retention.FromTimedelta(dead_letter_retention)
            paths.append("dead_letter_retention")
        request = queue_service_pb2.UpdateQueueRequest(queue=queue, update_mask=FieldMask(paths=paths))
        return (await self._call(self._queues.UpdateQueue, request)).queue

    async def list_workers(self, *, queue: str = "") -> list[queue_service_pb2.Worker]:
        """The live workers (of ``queue`` only, when given), by id."""
        request = queue_service_pb2.ListWorkersRequest(queue=queue)
        return list((await self._call(self._queues.ListWorkers, request)).workers)

    async def get_scaling_recommendation(self, queue: str) -> queue_service_pb2.GetScalingRecommendationResponse:
        request = queue_service_pb2.GetScalingRecommendationRequest(queue=queue)
        return await self._call(self._queues.GetScalingRecommendation, request)

    def list_dead_letters(
        self,
        *,
        queue: str = "",
        job_id: str = "",
        error_kind: pb.ErrorKind.ValueType = pb.ERROR_KIND_UNSPECIFIED,
        ended_after: datetime | None = None,
        ended_before: datetime | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[pb.Execution]:
        """Every dead letter (DEAD execution not replayed yet) matching the filter, newest first."""
        matching = dead_letter_filter(queue, job_id, error_kind, ended_after, ended_before)
        request = queue_service_pb2.ListDeadLettersRequest(filter=matching, page_size=page_size)
        return self._pages(self._queues.ListDeadLetters, request, lambda page: page.executions)

    async def replay_dead_letters(
        self,
        ids: Sequence[str] = (),
        *,
        queue: str = "",
        job_id: str = "",
        error_kind: pb.ErrorKind.ValueType = pb.ERROR_KIND_UNSPECIFIED,
        ended_after: datetime | None = None,
        ended_before: datetime | None = None,
        limit: int = 0,
    ) -> queue_service_pb2.ReplayDeadLettersResponse:
        """Replays the dead letters ``ids`` or, without ids, up to ``limit`` (0: 100) matching the
        filter; the answer has the new executions and the ids that were not dead letters."""
        request = queue_service_pb2.ReplayDeadLettersRequest(
            ids=list(ids), filter=dead_letter_filter(queue, job_id, error_kind, ended_after, ended_before), limit=limit
        )
        return await self._call(self._queues.ReplayDeadLetters, request)

    async def purge_dead_letters(
        self,
        *,
        queue: str = "",
        job_id: str = "",
        error_kind: pb.ErrorKind.ValueType = pb.ERROR_KIND_UNSPECIFIED,
        ended_after: datetime | None = None,
        ended_before: datetime | None = None,
        limit: int = 0,
    ) -> int:
        """Deletes up to ``limit`` (0: 1,000) dead letters matching the filter; answers how many."""
        request = queue_service_pb2.PurgeDeadLettersRequest(
            filter=dead_letter_filter(queue, job_id, error_kind, ended_after, ended_before), limit=limit
        )
        return (await self._call(self._queues.PurgeDeadLetters, request)).purged


def dead_letter_filter(
    queue: str = "",
    job_id: str = "",
    error_kind: pb.ErrorKind.ValueType = pb.ERROR_KIND_UNSPECIFIED,
    ended_after: datetime | None = None,
    ended_before: datetime | None = None,
) -> queue_service_pb2.DeadLetterFilter:
    """The DeadLetterFilter of these criteria (every one given must match)."""
    matching = queue_service_pb2.DeadLetterFilter(queue=queue, job_id=job_id, error_kind=error_kind)
    if ended_after is not None:
        matching.end_time_after.FromDatetime(ended_after)
    if ended_before is not None:
        matching.end_time_before.FromDatetime(ended_before)
    return matching
