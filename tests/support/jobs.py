"""Helpers that talk to the api like a client would."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb

TERMINAL = {
    pb.EXECUTION_STATE_SUCCEEDED,
    pb.EXECUTION_STATE_DEAD,
    pb.EXECUTION_STATE_CANCELLED,
    pb.EXECUTION_STATE_SKIPPED,
}


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def http_job(url: str, **fields: object) -> pb.Job:
    """A job calling ``url`` with fast retries unless the test says otherwise."""
    job = pb.Job(http_request=pb.HttpRequest(url=url))
    job.retry_policy.min_backoff.CopyFrom(seconds(0.2))
    job.retry_policy.max_backoff.CopyFrom(seconds(5))
    for name, value in fields.items():
        if isinstance(value, pb.RetryPolicy):
            job.retry_policy.MergeFrom(value)
        elif isinstance(value, dict):
            getattr(job, name).update(value)
        elif hasattr(getattr(job, name), "CopyFrom"):
            getattr(job, name).CopyFrom(value)
        else:
            setattr(job, name, value)
    return job


async def create(stub: job_service_pb2_grpc.JobServiceAsyncStub, job: pb.Job, request_id: str = "") -> pb.Job:
    response = await stub.CreateJob(api.CreateJobRequest(job=job, request_id=request_id))
    return response.job


async def wait_for_state(
    stub: job_service_pb2_grpc.JobServiceAsyncStub,
    execution_id: str,
    states: set[pb.ExecutionState.ValueType],
    timeout: float = 30,
) -> pb.Execution:
    deadline = time.monotonic() + timeout
    while True:
        execution = (await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution
        if execution.state in states:
            return execution
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"execution {execution_id} still {pb.ExecutionState.Name(execution.state)} after {timeout}s"
            )
        await asyncio.sleep(0.05)


async def wait_terminal(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, execution_id: str, timeout: float = 30
) -> pb.Execution:
    return await wait_for_state(stub, execution_id, TERMINAL, timeout)


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The google.rpc.BadRequest of an INVALID_ARGUMENT answer, as {field: description}."""
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    violations: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            for v in bad_request.field_violations:
                violations[v.field] = v.description
    return violations


def error_info_reason(error: grpc.aio.AioRpcError) -> str:
    status: status_pb2.Status | None = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError("no ErrorInfo")


async def eventually(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10) -> None:
    """Waits until ``condition`` (sync or async) holds, polling every 50 ms."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if await result if inspect.isawaitable(result) else result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


def every(interval_s: float, start_in_s: float | None = None, **schedule: object) -> pb.Schedule:
    """An interval schedule, first run ``start_in_s`` from now when given."""
    message = pb.Schedule(**schedule)  # type: ignore[arg-type]
    message.interval.CopyFrom(seconds(interval_s))
    if start_in_s is not None:
        message.start_time.FromNanoseconds(int((time.time() + start_in_s) * 1e9))
    return message


async def executions_of(stub: job_service_pb2_grpc.JobServiceAsyncStub, job_id: str) -> list[pb.Execution]:
    """Every execution of a job, oldest first."""
    found: list[pb.Execution] = []
    token = ""
    while True:
        page = await stub.ListExecutions(api.ListExecutionsRequest(job_id=job_id, page_size=1000, page_token=token))
        found.extend(page.executions)
        token = page.next_page_token
        if not token:
            return list(reversed(found))


async def jobs_on_queue(database_url: str, queue: str) -> int:
    """How many jobs the database holds on ``queue`` (to prove a refused request stored nothing)."""
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM jobs WHERE queue = :q"), {"q": queue})
    await engine.dispose()
    return int(count or 0)
