"""JobService: checks the request, calls the store, dispatches to arq, answers in protobuf.

Servicers raise domain errors; :mod:`jobs_api.errors` turns them into statuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import grpc

from jobs_api import convert
from jobs_api.callers import current_tenant
from jobs_api.faults import crash_after_commit
from jobs_api.masks import update_paths
from jobs_api.metrics import JOBS_CREATED
from jobs_api.signing_secrets import generated_secrets, with_requested_secret
from jobs_api.streams import StreamLimits
from jobs_api.validation import (
    JobLimits,
    validate_deduplication,
    validate_id,
    validate_job,
    validate_page_size,
    validate_request_id,
)
from jobs_api.watch import watch_job
from jobs_common.arq_extension import Dispatch, Dispatcher, dispatch_of
from jobs_common.domain import (
    Deduplication,
    Execution,
    ExecutionState,
    Job,
    JobPatch,
    JobSpec,
    RequestKey,
    apply_patch,
    keep_stored_secrets,
    upcoming_run_times,
)
from jobs_common.errors import REDIS_ERRORS, AlreadyExistsError, FieldViolation, InvalidArgumentError
from jobs_common.group_commit import GroupCommit
from jobs_common.settings import Settings
from jobs_common.store import CreatedJob, JobEvents, JobStore, TickStore
from jobs_common.tracing import current_traceparent
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["JobServicer"]

logger = logging.getLogger(__name__)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
_T = TypeVar("_T")
# BatchCreateJobs takes at most this many jobs (AIP-233 batches are bounded).
MAX_BATCH_CREATE = 1000
# Concurrent CreateJobs written together: at most this many per statement, one statement (and
# one dispatch) at a time, as the worker's group commits do. A statement and its dispatch cost
# the api's one thread about 0.9 ms whatever they hold (CreateJobs one at a time: 1.8 ms of CPU
# each; 0.9 ms in large batches); with four at once they held a few rows each
# (64 CreateJobs in flight, the api alone: 650 calls/s at 1.6 ms of CPU each; one at a time:
# 900-1,060 calls/s at 0.9-1.0 ms, p50 97 → 60 ms; a lone CreateJob still goes out at once).
CREATE_BATCH_MAX = 100
CREATE_BATCHES_IN_FLIGHT = 1
_CreateRequest: TypeAlias = tuple[str, JobSpec, RequestKey | None, str | None]  # with tenant, traceparent
_WAITING = (ExecutionState.QUEUED, ExecutionState.SCHEDULED)


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        store: JobStore,
        ticks: TickStore,
        dispatcher: Dispatcher,
        settings: Settings,
        limits: JobLimits,
        events: JobEvents,
        streams: StreamLimits,
        wake_scheduler: Callable[[], None] = lambda: None,
    ) -> None:
        self._events = events
        self._streams = streams
        self._store = store
        self._ticks = ticks
        self._dispatcher = dispatcher
        self._settings = settings
        self._limits = limits
        self._wake_scheduler = wake_scheduler
        # Commits that outlive the call that asked for them (its client gave up meanwhile).
        self._unattended: set[asyncio.Task[Any]] = set()
        # Dispatches that arrive while others are being sent share the next pipeline.
        self._dispatches: GroupCommit[Dispatch, None] = GroupCommit(
            self._dispatch_together, max_batch=CREATE_BATCH_MAX, max_in_flight=CREATE_BATCHES_IN_FLIGHT
        )
        # CreateJobs that arrive while others are being written share the next statement.
        self._creates: GroupCommit[_CreateRequest, CreatedJob | AlreadyExistsError] = GroupCommit(
            store.create_each, max_batch=CREATE_BATCH_MAX, max_in_flight=CREATE_BATCHES_IN_FLIGHT
        )

    async def CreateJob(self, request: api.CreateJobRequest, context: Context) -> api.CreateJobResponse:
        checked, deduplication = self._checked_with_deduplication(request)
        [job] = await self._create([checked], deduplication)
        shown = generated_secrets(job.spec.http_request, request.job.http_request.signing.secrets)
        return api.CreateJobResponse(job=convert.job_to_proto(job, shown_secrets=shown))

    async def BatchCreateJobs(
        self, request: api.BatchCreateJobsRequest, context: Context
    ) -> api.BatchCreateJobsResponse:
        count = len(request.requests)
        if not 1 <= count <= MAX_BATCH_CREATE:
            raise InvalidArgumentError(
                [FieldViolation("requests", f"holds {count} requests; from 1 to {MAX_BATCH_CREATE} are allowed")]
            )
        checked, violations = [], []
        for index, item in enumerate(request.requests):
            if item.HasField("deduplication"):
                violations.append(
                    FieldViolation(f"requests[{index}].deduplication", "is for CreateJob: BatchCreateJobs refuses it")
                )
            try:
                checked.append(self._checked(item, f"requests[{index}]."))
            except InvalidArgumentError as error:
                violations += error.violations
        if violations:  # atomic: one bad job refuses the batch, with every bad field named
            raise InvalidArgumentError(violations)
        jobs = await self._create(checked)
        return api.BatchCreateJobsResponse(
            jobs=[
                convert.job_to_proto(
                    job, shown_secrets=generated_secrets(job.spec.http_request, item.job.http_request.signing.secrets)
                )
                for job, item in zip(jobs, request.requests, strict=True)
            ]
        )

    def _checked_with_deduplication(
        self, request: api.CreateJobRequest
    ) -> tuple[tuple[JobSpec, RequestKey | None], Deduplication | None]:
        """As _checked, and the request's de-duplication; every violation is raised at once."""
        violations: list[FieldViolation] = []
        checked = deduplication = None
        try:
            checked = self._checked(request)
        except InvalidArgumentError as error:
            violations += error.violations
        if request.HasField("deduplication"):
            try:
                deduplication = validate_deduplication(request.deduplication)
            except InvalidArgumentError as error:
                violations += error.violations
            job = request.job
            if deduplication is not None and deduplication.debounce and job.HasField("schedule"):
                violations.append(
                    FieldViolation(
                        "deduplication.mode",
                        "DEBOUNCE runs a one-off job at the window's end: leave job.schedule unset",
                    )
                )
        if violations:
            raise InvalidArgumentError(violations)
        assert checked is not None
        return checked, deduplication

    def _checked(self, request: api.CreateJobRequest, prefix: str = "") -> tuple[JobSpec, RequestKey | None]:
        """The request's job, validated, and its request_id with the digest of the job it came
        with; every violation, named ``prefix`` + field, is raised at once."""
        violations: list[FieldViolation] = []
        key = spec = None
        try:
            if (request_id := validate_request_id(request.request_id, f"{prefix}request_id")) is not None:
                key = RequestKey(request_id, _fingerprint(request.job))
        except InvalidArgumentError as error:
            violations += error.violations
        try:
            if not request.HasField("job"):
                raise InvalidArgumentError([FieldViolation(f"{prefix}job", "is required")])
            draft = with_requested_secret(convert.job_draft(request.job, f"{prefix}job"))
            spec = validate_job(draft, self._limits, f"{prefix}job")
        except InvalidArgumentError as error:
            violations += error.violations
        if violations:
            raise InvalidArgumentError(violations)
        assert spec is not None
        return spec, key

    async def _create(
        self, requests: list[tuple[JobSpec, RequestKey | None]], deduplication: Deduplication | None = None
    ) -> list[Job]:
        """Commits the jobs (a CreateJob's in one statement with the CreateJobs that arrive with
        it, each committed on its own, or in a transaction of its own with its ``deduplication``
        key; a batch's in one transaction), then enqueues their due executions. A client that
        gives up (deadline, cancel) while the INSERT is in flight must not stop the enqueue of
        what PostgreSQL commits anyway: both run to their end regardless."""
        traceparent, tenant = current_traceparent(), current_tenant()

        async def commit_and_dispatch() -> list[Job]:
            if deduplication is not None:
                [(spec, key)] = requests
                create = self._store.create_debounced if deduplication.debounce else self._store.create_deduplicated
                one = await create(tenant, spec, key, traceparent, deduplication)
                if isinstance(one, AlreadyExistsError):
                    raise one
                created = [one]
            elif len(requests) == 1:
                one = await self._creates.submit((tenant, *requests[0], traceparent))
                if isinstance(one, AlreadyExistsError):
                    raise one
                created = [one]
            else:
                created = await self._store.create_jobs(tenant, requests, traceparent)
            for new in created:
                if new.created:
                    JOBS_CREATED.labels("recurring" if new.job.spec.schedule is not None else "one_off").inc()
            crash_after_commit(self._settings.fault_crash_after_commit)
            if any(new.job.spec.schedule is not None for new in created):
                self._wake_scheduler()
            # Also for a repeated request_id: if the first dispatch was lost, this one makes up
            # for it (the arq job id is the execution's, so a second enqueue is a no-op).
            await self._dispatch_waiting(*(new.job for new in created if new.moved_from is None))
            for new in created:
                if new.moved_from is not None:
                    await self._move(new.job, *new.moved_from)
            return [new.job for new in created]

        return await self._unattended_until_done(commit_and_dispatch())

    async def GetJob(self, request: api.GetJobRequest, context: Context) -> api.GetJobResponse:
        job = await self._store.get_job(current_tenant(), validate_id(request.id))
        return api.GetJobResponse(job=convert.job_to_proto(job, upcoming_run_times(job)))

    async def ListJobs(self, request: api.ListJobsRequest, context: Context) -> api.ListJobsResponse:
        page = await self._store.list_jobs(
            current_tenant(),
            page_size=validate_page_size(request.page_size),
            page_token=request.page_token,
            state=convert.job_state_from_proto(request.state),
            queue=request.queue or None,
            labels=dict(request.labels),
            kind=convert.job_kind_from_proto(request.kind),
            last_execution_state=convert.execution_state_from_proto(
                request.last_execution_state, "last_execution_state"
            ),
            view=convert.job_view_from_proto(request.view),
        )
        return api.ListJobsResponse(
            jobs=[convert.job_to_proto(j) for j in page.items], next_page_token=page.next_page_token
        )

    async def UpdateJob(self, request: api.UpdateJobRequest, context: Context) -> api.UpdateJobResponse:
        if not request.HasField("job"):
            raise InvalidArgumentError([FieldViolation("job", "is required")])
        job_id = validate_id(request.job.id, "job.id")

        update = convert.fold_body_text(request.job)
        patch = JobPatch(paths=tuple(update_paths(update, request.update_mask)), sent=convert.job_draft(update))
        # The signing secrets the merged job holds before any is generated: the answer shows the rest.
        kept_signing: list[str] = []

        def revise(current: JobSpec) -> JobSpec:
            merged = apply_patch(current, patch)
            kept_signing[:] = merged.signing_secrets
            spec = validate_job(with_requested_secret(merged), self._limits)
            return keep_stored_secrets(spec, current, patch.sent)

        job = await self._store.update_job(current_tenant(), job_id, revise)
        self._wake_scheduler()
        shown = generated_secrets(job.spec.http_request, kept_signing)
        return api.UpdateJobResponse(job=convert.job_to_proto(job, upcoming_run_times(job), shown_secrets=shown))

    async def PauseJob(self, request: api.PauseJobRequest, context: Context) -> api.PauseJobResponse:
        job = await self._store.pause_job(current_tenant(), validate_id(request.id))
        return api.PauseJobResponse(job=convert.job_to_proto(job))

    async def ResumeJob(self, request: api.ResumeJobRequest, context: Context) -> api.ResumeJobResponse:
        job = await self._store.resume_job(current_tenant(), validate_id(request.id))
        self._wake_scheduler()
        return api.ResumeJobResponse(job=convert.job_to_proto(job, upcoming_run_times(job)))

    async def RunJob(self, request: api.RunJobRequest, context: Context) -> api.RunJobResponse:
        ran = await self._ticks.run_now(current_tenant(), validate_id(request.id), current_traceparent())
        for execution_id in ran.cancelled:
            await self._abort(execution_id)
        response = api.RunJobResponse(buffered=ran.buffered)
        if ran.execution is not None:
            if ran.execution.state is ExecutionState.QUEUED:
                await self._dispatch((ran.execution, ran.queue))
            response.execution.CopyFrom(convert.execution_to_proto(ran.execution))
        return response

    async def DeleteJob(self, request: api.DeleteJobRequest, context: Context) -> api.DeleteJobResponse:
        job, cancelled = await self._store.delete_job(current_tenant(), validate_id(request.id))
        for execution_id in cancelled:
            await self._abort(execution_id)
        return api.DeleteJobResponse(job=convert.job_to_proto(job))

    async def GetExecution(self, request: api.GetExecutionRequest, context: Context) -> api.GetExecutionResponse:
        execution = await self._store.get_execution(current_tenant(), validate_id(request.id))
        return api.GetExecutionResponse(execution=convert.execution_to_proto(execution))

    async def ListExecutions(self, request: api.ListExecutionsRequest, context: Context) -> api.ListExecutionsResponse:
        page = await self._store.list_executions(
            current_tenant(),
            validate_id(request.job_id, "job_id"),
            validate_page_size(request.page_size),
            request.page_token,
        )
        return api.ListExecutionsResponse(
            executions=[convert.execution_to_proto(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def CancelExecution(
        self, request: api.CancelExecutionRequest, context: Context
    ) -> api.CancelExecutionResponse:
        execution = await self._store.cancel_execution(current_tenant(), validate_id(request.id))
        await self._abort(execution.id)
        return api.CancelExecutionResponse(execution=convert.execution_to_proto(execution))

    async def ReplayExecution(
        self, request: api.ReplayExecutionRequest, context: Context
    ) -> api.ReplayExecutionResponse:
        replayed = await self._store.replay_execution(
            current_tenant(), validate_id(request.id), trace_parent=current_traceparent()
        )
        if replayed.created:
            await self._dispatch((replayed.execution, replayed.queue))
        return api.ReplayExecutionResponse(execution=convert.execution_to_proto(replayed.execution))

    async def WatchJob(self, request: api.WatchJobRequest, context: Context) -> AsyncIterator[api.WatchJobResponse]:
        resync = self._settings.watch_resync_interval.total_seconds()
        job_id = validate_id(request.id)
        with self._streams.hold(context.peer(), current_tenant(), "WatchJob"):
            async for response in watch_job(self._store, self._events, current_tenant(), job_id, resync):
                yield response

    async def _unattended_until_done(self, work: Coroutine[Any, Any, _T]) -> _T:
        task = asyncio.ensure_future(work)
        self._unattended.add(task)
        task.add_done_callback(self._settled)
        return await asyncio.shield(task)

    def _settled(self, task: asyncio.Task[Any]) -> None:
        self._unattended.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Raised to the caller too, unless it left: then this is the only record.
            logger.debug("CreateJob's commit failed: %s", error)

    async def _move(self, job: Job, queue: str, flow_key: str | None) -> None:
        """Moves a debounced job's pending execution in Redis from where it waited. A failure
        loses nothing: a worker that takes it early finds it not due in PostgreSQL and defers it,
        and the reconciler puts back one Redis lost."""
        execution = job.last_execution
        assert execution is not None
        try:
            await self._dispatcher.move(dispatch_of(execution, job.spec.queue, _run_at(execution)), queue, flow_key)
        except REDIS_ERRORS as exc:
            logger.warning("execution %s moved in PostgreSQL but not in Redis: %s", execution.id, exc)

    async def _dispatch_waiting(self, *jobs: Job) -> None:
        await self._dispatch(
            *(
                (execution, job.spec.queue)
                for job in jobs
                if (execution := job.last_execution) is not None and execution.state in _WAITING
            )
        )

    async def _dispatch(self, *executions: tuple[Execution, str]) -> None:
        """Enqueues (execution, queue) pairs after their commit, in one round trip. A failure here
        loses nothing: they are on record, and a retried request or the reconciler enqueues them."""
        if not executions:
            return
        try:
            if len(executions) == 1:  # with the other calls' dispatches of the moment
                [(execution, queue)] = executions
                await self._dispatches.submit(dispatch_of(execution, queue, _run_at(execution)))
            else:
                await self._dispatcher.dispatch([dispatch_of(e, queue, _run_at(e)) for e, queue in executions])
        except REDIS_ERRORS as exc:
            shown = ", ".join(execution.id for execution, _ in executions[:3])
            more = f" and {len(executions) - 3} more" if len(executions) > 3 else ""
            logger.warning("execution %s%s committed but not enqueued: %s", shown, more, exc)

    async def _dispatch_together(self, dispatches: list[Dispatch]) -> list[None]:
        await self._dispatcher.dispatch(dispatches)
        return [None] * len(dispatches)

    async def _abort(self, execution_id: object) -> None:
        try:
            await self._dispatcher.abort(execution_id)
        except REDIS_ERRORS as exc:
            # The worker's fenced write still refuses to move a cancelled execution.
            logger.warning("could not ask workers to abort execution %s: %s", execution_id, exc)


def _fingerprint(job: pb.Job) -> bytes:
    """A digest of a create request's job, to tell a retry from another request reusing its
    request_id. Deterministic serialization orders map entries, so equal jobs digest equal."""
    return hashlib.sha256(job.SerializeToString(deterministic=True)).digest()


def _run_at(execution: Execution) -> datetime | None:
    """When arq should run it: its schedule time if that is ahead (SCHEDULED), else now."""
    return execution.schedule_time if execution.state is ExecutionState.SCHEDULED else None
