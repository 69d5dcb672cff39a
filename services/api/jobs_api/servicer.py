"""JobService: checks the request, calls the store, dispatches to arq, answers in protobuf.

Servicers raise domain errors; :mod:`jobs_api.errors` turns them into statuses.
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import grpc
from redis.exceptions import RedisError

from jobs_api import convert
from jobs_common.domain import Execution, ExecutionState, Job
from jobs_common.errors import FieldViolation, InvalidArgumentError
from jobs_common.queue import Dispatcher
from jobs_common.settings import Settings
from jobs_common.store import JobStore
from jobs_common.validation import validate_id, validate_job, validate_page_size, validate_request_id
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc

__all__ = ["JobServicer"]

logger = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
_WAITING = (ExecutionState.QUEUED, ExecutionState.SCHEDULED)


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, store: JobStore, dispatcher: Dispatcher, settings: Settings) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._settings = settings

    async def CreateJob(self, request: api.CreateJobRequest, context: Context) -> api.CreateJobResponse:
        request_id = validate_request_id(request.request_id)
        if not request.HasField("job"):
            raise InvalidArgumentError([FieldViolation("job", "is required")])
        spec = validate_job(convert.job_draft(request.job), self._settings)
        created = await self._store.create_job(spec, request_id)
        # Also for a repeated request_id: if the first dispatch was lost, this one makes up for it
        # (the arq job id is the execution's, so a second enqueue is a no-op).
        await self._dispatch_waiting(created.job)
        return api.CreateJobResponse(job=convert.job_to_proto(created.job))

    async def GetJob(self, request: api.GetJobRequest, context: Context) -> api.GetJobResponse:
        job = await self._store.get_job(validate_id(request.id))
        return api.GetJobResponse(job=convert.job_to_proto(job))

    async def ListJobs(self, request: api.ListJobsRequest, context: Context) -> api.ListJobsResponse:
        page = await self._store.list_jobs(
            page_size=validate_page_size(request.page_size),
            page_token=request.page_token,
            state=convert.job_state_from_proto(request.state),
            queue=request.queue or None,
            labels=dict(request.labels),
        )
        return api.ListJobsResponse(
            jobs=[convert.job_to_proto(j) for j in page.items], next_page_token=page.next_page_token
        )

    async def DeleteJob(self, request: api.DeleteJobRequest, context: Context) -> api.DeleteJobResponse:
        job, cancelled = await self._store.delete_job(validate_id(request.id))
        for execution_id in cancelled:
            await self._abort(execution_id)
        return api.DeleteJobResponse(job=convert.job_to_proto(job))

    async def GetExecution(self, request: api.GetExecutionRequest, context: Context) -> api.GetExecutionResponse:
        execution = await self._store.get_execution(validate_id(request.id))
        return api.GetExecutionResponse(execution=convert.execution_to_proto(execution))

    async def ListExecutions(self, request: api.ListExecutionsRequest, context: Context) -> api.ListExecutionsResponse:
        page = await self._store.list_executions(
            validate_id(request.job_id, "job_id"), validate_page_size(request.page_size), request.page_token
        )
        return api.ListExecutionsResponse(
            executions=[convert.execution_to_proto(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def CancelExecution(
        self, request: api.CancelExecutionRequest, context: Context
    ) -> api.CancelExecutionResponse:
        execution = await self._store.cancel_execution(validate_id(request.id))
        await self._abort(execution.id)
        return api.CancelExecutionResponse(execution=convert.execution_to_proto(execution))

    async def ReplayExecution(
        self, request: api.ReplayExecutionRequest, context: Context
    ) -> api.ReplayExecutionResponse:
        replayed = await self._store.replay_execution(validate_id(request.id))
        await self._dispatch(replayed.execution, replayed.queue)
        return api.ReplayExecutionResponse(execution=convert.execution_to_proto(replayed.execution))

    async def _dispatch_waiting(self, job: Job) -> None:
        execution = job.last_execution
        if execution is not None and execution.state in _WAITING:
            await self._dispatch(execution, job.spec.queue)

    async def _dispatch(self, execution: Execution, queue: str) -> None:
        """Enqueues after the commit. A failure here loses nothing: the execution is on record and
        is dispatched again by a retried request or the reconciler."""
        run_at = execution.schedule_time if execution.state is ExecutionState.SCHEDULED else None
        try:
            await self._dispatcher.dispatch(execution.id, queue, run_at)
        except (RedisError, OSError) as exc:
            logger.warning("execution %s committed but not enqueued: %s", execution.id, exc)

    async def _abort(self, execution_id: object) -> None:
        try:
            await self._dispatcher.abort(execution_id)
        except (RedisError, OSError) as exc:
            # The worker's fenced write still refuses to move a cancelled execution.
            logger.warning("could not ask workers to abort execution %s: %s", execution_id, exc)
