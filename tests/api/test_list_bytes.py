"""Every list is bounded in bytes (issue 18, finding 4): ListJobs answers BASIC jobs (without the
request's headers, body and secrets) unless asked for FULL ones, and each page of ListJobs,
ListExecutions and ListDeadLetters ends early, with a next_page_token, before its items pass the
page budget (at least one item per page)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.paging import PAGE_MAX_BYTES
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2, queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, every, field_violations, http_job

pytestmark = pytest.mark.usefixtures("api")

BODY = b"\x00\xff" * (300 * 1024)  # 600 KiB: three jobs fit in a page of 2 MiB, four do not
JOBS = 7
BIG_ERROR = "x" * (900 * 1024)  # more than any worker writes: a row from elsewhere


@pytest.fixture
def queues(channel: grpc.aio.Channel) -> queue_service_pb2_grpc.QueueServiceAsyncStub:
    return queue_service_pb2_grpc.QueueServiceStub(channel)


def _big_job(key: str) -> pb.Job:
    # A queue no worker serves: the jobs stay QUEUED.
    job = http_job("http://127.0.0.1:9/never", queue=f"list-bytes-{key[:12]}", labels={"list-bytes": key[:32]})
    job.http_request.body = BODY
    job.http_request.headers.update({"Authorization": "Bearer list-bytes-secret", "X-Trace": "on"})
    return job


async def _pages(call: Callable[[str], Awaitable[Any]], items: str) -> list[Any]:
    """Every page of a listing, following next_page_token."""
    pages, token = [], ""
    while True:
        page = await call(token)
        pages.append(page)
        assert len(pages) < 50, "the listing does not end"
        token = page.next_page_token
        if not token:
            return pages
        assert getattr(page, items), "a page that is not the last holds at least one item"


async def _write(settings: Settings, statement: str, **params: object) -> None:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement), params)
    finally:
        await engine.dispose()


async def test_full_pages_of_big_jobs_end_early_and_list_every_job_once(stub, key):
    created = [await create(stub, _big_job(key)) for _ in range(JOBS)]

    def page(token: str) -> Awaitable[api.ListJobsResponse]:
        request = api.ListJobsRequest(
            page_size=1000, page_token=token, labels={"list-bytes": key[:32]}, view=api.JOB_VIEW_FULL
        )
        return stub.ListJobs(request)

    pages = await _pages(page, "jobs")
    assert [len(p.jobs) for p in pages] == [3, 3, 1]
    assert all(p.ByteSize() <= PAGE_MAX_BYTES for p in pages)
    listed = [job for p in pages for job in p.jobs]
    assert [job.id for job in listed] == [job.id for job in reversed(created)]
    for job in listed:
        assert job.http_request.body == BODY
        assert job.http_request.headers == {"Authorization": "[REDACTED]", "X-Trace": "on"}
        assert list(job.http_request.secret_headers) == ["Authorization"]


@pytest.mark.parametrize("view", [api.JOB_VIEW_UNSPECIFIED, api.JOB_VIEW_BASIC])
async def test_basic_jobs_are_the_default_and_leave_the_request_out(stub, key, view):
    created = [await create(stub, _big_job(key)) for _ in range(JOBS)]
    answer = await stub.ListJobs(api.ListJobsRequest(page_size=1000, labels={"list-bytes": key[:32]}, view=view))
    assert answer.next_page_token == ""
    assert [job.id for job in answer.jobs] == [job.id for job in reversed(created)]
    assert answer.ByteSize() < 10 * 1024
    for job, made in zip(answer.jobs, reversed(created), strict=True):
        request = job.http_request
        assert (request.url, request.method) == ("http://127.0.0.1:9/never", pb.HTTP_METHOD_POST)
        assert (request.body, dict(request.headers), list(request.secret_headers)) == (b"", {}, [])
        assert list(request.signing.secrets) == []
        assert job.labels == made.labels
        assert job.last_execution.id == made.last_execution.id
        assert job.last_execution.state == pb.EXECUTION_STATE_QUEUED
    # GetJob still answers the whole job.
    full = (await stub.GetJob(api.GetJobRequest(id=created[0].id))).job
    assert full.http_request.body == BODY


async def test_an_unknown_view_is_invalid_argument(stub):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ListJobs(api.ListJobsRequest(view=7))  # type: ignore[arg-type]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error.value) == {"view": "unknown job view 7"}


async def test_executions_with_oversized_stored_errors_are_paged_by_bytes(settings: Settings, stub, key):
    job = http_job(
        "http://127.0.0.1:9/never",
        queue=f"list-bytes-{key[:12]}",
        schedule=every(3600, overlap_policy=pb.OVERLAP_POLICY_ALLOW),
    )
    made = await create(stub, job)
    for _ in range(5):
        await stub.RunJob(api.RunJobRequest(id=made.id))
    await _write(settings, "UPDATE executions SET last_error = :error WHERE job_id = :id", error=BIG_ERROR, id=made.id)

    def page(token: str) -> Awaitable[api.ListExecutionsResponse]:
        return stub.ListExecutions(api.ListExecutionsRequest(job_id=made.id, page_size=1000, page_token=token))

    pages = await _pages(page, "executions")
    assert [len(p.executions) for p in pages] == [2, 2, 1]
    assert all(p.ByteSize() <= PAGE_MAX_BYTES for p in pages)
    assert len({e.id for p in pages for e in p.executions}) == 5
    await stub.DeleteJob(api.DeleteJobRequest(id=made.id))


async def test_dead_letters_with_oversized_stored_errors_are_paged_by_bytes(settings: Settings, stub, queues, key):
    made = [await create(stub, _big_job(key)) for _ in range(5)]
    queue = made[0].queue
    await _write(
        settings,
        "UPDATE executions SET state = 'DEAD', end_time = now(), last_error = :error WHERE queue = :queue",
        error=BIG_ERROR,
        queue=queue,
    )
    dead_letters = queue_service_pb2.DeadLetterFilter(queue=queue)

    def page(token: str) -> Awaitable[queue_service_pb2.ListDeadLettersResponse]:
        request = queue_service_pb2.ListDeadLettersRequest(filter=dead_letters, page_size=1000, page_token=token)
        return queues.ListDeadLetters(request)

    pages = await _pages(page, "executions")
    assert [len(p.executions) for p in pages] == [2, 2, 1]
    assert all(p.ByteSize() <= PAGE_MAX_BYTES for p in pages)
    assert {e.job_id for p in pages for e in p.executions} == {job.id for job in made}
    await queues.PurgeDeadLetters(queue_service_pb2.PurgeDeadLettersRequest(filter=dead_letters))
