"""WatchJob: the job as it is now, then each change as it commits, from any replica or worker.

Changes arrive as PostgreSQL notifications (:class:`jobs_common.store.JobEvents`). Because a
notification can be lost (the listening connection drops), the watch also re-reads the job every
WATCH_RESYNC_INTERVAL and whenever the connection is made again, and reports any change it finds
that way: a one-off job's final state always reaches the watcher.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from jobs_api import convert
from jobs_common.domain import TERMINAL_EXECUTION_STATES, Execution, ExecutionState, Job, JobState
from jobs_common.store import RESYNC, ExecutionChanged, JobEvent, JobEvents, JobStore
from jobscheduler.v1 import job_service_pb2 as api

__all__ = ["watch_job"]


def _finished(job: Job) -> bool:
    """Nothing more can happen to a one-off job whose execution ended, or to a deleted job."""
    if job.state is JobState.DELETED:
        return True
    one_off_done = job.spec.schedule is None and job.state is JobState.COMPLETED
    return one_off_done and (job.last_execution is None or job.last_execution.state in TERMINAL_EXECUTION_STATES)


class _Seen:
    """The last (state, attempt count) reported per execution, so nothing is reported twice."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[ExecutionState, int]] = {}

    def is_new(self, execution: Execution) -> bool:
        key = (execution.state, execution.attempt_count)
        if self._last.get(execution.id) == key:
            return False
        self._last[execution.id] = key
        return True


async def watch_job(
    store: JobStore, events: JobEvents, tenant: str, job_id: uuid.UUID, resync_interval: float
) -> AsyncIterator[api.WatchJobResponse]:
    # Subscribe (the job is then marked watched) before the first read, so a change committed
    # in between is not missed.
    async with events.subscribe(job_id) as queue:
        job = await store.get_job(tenant, job_id)
        seen = _Seen()
        first = api.WatchJobResponse(job=convert.job_to_proto(job))
        if job.last_execution is not None:
            seen.is_new(job.last_execution)
            first.execution.CopyFrom(convert.execution_to_proto(job.last_execution))
        yield first
        job_state = job.state
        while not _finished(job):
            event = await _next(queue, resync_interval)
            if isinstance(event, ExecutionChanged):
                if seen.is_new(event.execution):
                    yield api.WatchJobResponse(execution=convert.execution_to_proto(event.execution))
                if event.execution.state not in TERMINAL_EXECUTION_STATES:
                    continue
            # A job state change (JobChanged), a terminal execution, or a resync: read the job.
            job = await store.get_job(tenant, job_id)
            if job.last_execution is not None and seen.is_new(job.last_execution):
                yield api.WatchJobResponse(execution=convert.execution_to_proto(job.last_execution))
            if job.state is not job_state:
                job_state = job.state
                yield api.WatchJobResponse(job=convert.job_to_proto(job))


async def _next(queue: asyncio.Queue[JobEvent], resync_interval: float) -> JobEvent:
    try:
        return await asyncio.wait_for(queue.get(), resync_interval)
    except TimeoutError:
        return RESYNC
