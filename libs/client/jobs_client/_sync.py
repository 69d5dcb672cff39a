"""The sync client: the async client's calls, each run on an event loop of the client's own in a
background thread, for code that is not async (scripts, Django views, Celery tasks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from jobs_client._async import AsyncJobsClient
from jobs_client._connection import Connection
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["JobsClient"]

_R = TypeVar("_R")
_I = TypeVar("_I")


async def _new_client(connection: Connection | None, timeout: float | None) -> AsyncJobsClient:
    return AsyncJobsClient(connection, timeout=timeout)  # its channel belongs to the running loop


async def _next(items: AsyncIterator[_I]) -> _I:
    return await items.__anext__()


class JobsClient:
    """``with JobsClient() as client: job = client.create_job(http_job(url))``; the methods,
    arguments and errors are :class:`AsyncJobsClient`'s, and its iterators are plain ones."""

    def __init__(self, connection: Connection | None = None, *, timeout: float | None = 30.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobs-client", daemon=True)
        self._thread.start()
        self._client = self._run(_new_client(connection, timeout))
        self.connection = self._client.connection

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, work: Coroutine[Any, Any, _R]) -> _R:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def _iterate(self, items: AsyncIterator[_I]) -> Iterator[_I]:
        try:
            while True:
                try:
                    yield self._run(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(items, "aclose", None)
            if close is not None and not self._loop.is_closed():
                self._run(close())

    def create_job(
        self,
        job: pb.Job,
        *,
        request_id: str | None = None,
        deduplication_key: str = "",
        deduplication_window: timedelta | None = None,
        debounce: bool = False,
    ) -> pb.Job:
        return self._run(
            self._client.create_job(
                job,
                request_id=request_id,
                deduplication_key=deduplication_key,
                deduplication_window=deduplication_window,
                debounce=debounce,
            )
        )

    def create_jobs(self, jobs: Sequence[pb.Job]) -> list[pb.Job]:
        return self._run(self._client.create_jobs(jobs))

    def get_job(self, job_id: str) -> pb.Job:
        return self._run(self._client.get_job(job_id))

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
    ) -> Iterator[pb.Job]:
        return self._iterate(
            self._client.list_jobs(
                state=state,
                queue=queue,
                labels=labels,
                kind=kind,
                last_execution_state=last_execution_state,
                full=full,
                page_size=page_size,
            )
        )

    def update_job(self, job: pb.Job, paths: Sequence[str] = ()) -> pb.Job:
        return self._run(self._client.update_job(job, paths))

    def pause_job(self, job_id: str) -> pb.Job:
        return self._run(self._client.pause_job(job_id))

    def resume_job(self, job_id: str) -> pb.Job:
        return self._run(self._client.resume_job(job_id))

    def run_job(self, job_id: str) -> api.RunJobResponse:
        return self._run(self._client.run_job(job_id))

    def delete_job(self, job_id: str) -> pb.Job:
        return self._run(self._client.delete_job(job_id))

    def watch(self, job_id: str) -> Iterator[api.WatchJobResponse]:
        return self._iterate(self._client.watch(job_id))

    def get_execution(self, execution_id: str) -> pb.Execution:
        return self._run(self._client.get_execution(execution_id))

    def list_executions(self, job_id: str, *, page_size: int = 0) -> Iterator[pb.Execution]:
        return self._iterate(self._client.list_executions(job_id, page_size=page_size))

    def cancel_execution(self, execution_id: str) -> pb.Execution:
        return self._run(self._client.cancel_execution(execution_id))

    def replay_execution(self, execution_id: str) -> pb.Execution:
        return self._run(self._client.replay_execution(execution_id))

    def list_queues(self, *, page_size: int = 0) -> Iterator[queue_service_pb2.Queue]:
        return self._iterate(self._client.list_queues(page_size=page_size))

    def get_queue_stats(self, name: str) -> queue_service_pb2.GetQueueStatsResponse:
        return self._run(self._client.get_queue_stats(name))

    def get_queue(self, name: str) -> queue_service_pb2.Queue:
        return self._run(self._client.get_queue(name))

    def pause_queue(self, name: str) -> queue_service_pb2.Queue:
        return self._run(self._client.pause_queue(name))

    def resume_queue(self, name: str) -> queue_service_pb2.Queue:
        return self._run(self._client.resume_queue(name))

    def update_queue(
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
        return self._run(
            self._client.update_queue(
                name,
                history_retention=history_retention,
                dead_letter_retention=dead_letter_retention,
                max_dispatches_per_second=max_dispatches_per_second,
                max_burst_size=max_burst_size,
                max_concurrent_dispatches=max_concurrent_dispatches,
                reset=reset,
            )
        )

    def list_workers(self, *, queue: str = "") -> list[queue_service_pb2.Worker]:
        return self._run(self._client.list_workers(queue=queue))

    def get_scaling_recommendation(self, queue: str) -> queue_service_pb2.GetScalingRecommendationResponse:
        return self._run(self._client.get_scaling_recommendation(queue))

    def list_dead_letters(
        self,
        *,
        queue: str = "",
        job_id: str = "",
        error_kind: pb.ErrorKind.ValueType = pb.ERROR_KIND_UNSPECIFIED,
        ended_after: datetime | None = None,
        ended_before: datetime | None = None,
        page_size: int = 0,
    ) -> Iterator[pb.Execution]:
        return self._iterate(
            self._client.list_dead_letters(
                queue=queue,
                job_id=job_id,
                error_kind=error_kind,
                ended_after=ended_after,
                ended_before=ended_before,
                page_size=page_size,
            )
        )

    def replay_dead_letters(
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
        return self._run(
            self._client.replay_dead_letters(
                ids,
                queue=queue,
                job_id=job_id,
                error_kind=error_kind,
                ended_after=ended_after,
                ended_before=ended_before,
                limit=limit,
            )
        )

    def purge_dead_letters(
        self,
        *,
        queue: str = "",
        job_id: str = "",
        error_kind: pb.ErrorKind.ValueType = pb.ERROR_KIND_UNSPECIFIED,
        ended_after: datetime | None = None,
        ended_before: datetime | None = None,
        limit: int = 0,
    ) -> int:
        return self._run(
            self._client.purge_dead_letters(
                queue=queue,
                job_id=job_id,
                error_kind=error_kind,
                ended_after=ended_after,
                ended_before=ended_before,
                limit=limit,
            )
        )
