"""CreateJob's de-duplication (DROP): creates of a tenant with one key within the window make one
job, every one of them answered with it; after the window the key makes a new job; expired keys
are purged. Bad keys, windows and modes are INVALID_ARGUMENT, and BatchCreateJobs refuses it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.store import HistoryPurge
from jobscheduler.v1 import job_service_pb2 as api
from tests.support.jobs import eventually, field_violations, http_job, jobs_on_queue, seconds

pytestmark = pytest.mark.usefixtures("api")


async def test_a_hundred_creates_with_one_key_make_one_job(stub, settings, key):
    queue = f"dedup-{key}"
    requests = [
        api.CreateJobRequest(
            job=http_job(f"https://hooks.example.com/{key}/{i}", queue=queue),
            deduplication=api.Deduplication(key=f"invoice-{key}", window=seconds(60)),
        )
        for i in range(100)
    ]
    answers = await asyncio.gather(*(stub.CreateJob(request) for request in requests))
    assert len({answer.job.id for answer in answers}) == 1
    assert await jobs_on_queue(settings.database_url, queue) == 1
    # Each later create got the first job as it is: the first one's URL, whichever came first.
    [first] = {answer.job.http_request.url for answer in answers}
    assert first.startswith(f"https://hooks.example.com/{key}/")
    # Another key is another job.
    other = api.CreateJobRequest(
        job=http_job("https://hooks.example.com/other", queue=queue),
        deduplication=api.Deduplication(key=f"invoice-{key}-2", window=seconds(60)),
    )
    assert (await stub.CreateJob(other)).job.id != answers[0].job.id


async def test_after_the_window_the_key_makes_a_new_job(stub, settings, key):
    queue = f"dedup-{key}"

    def request() -> api.CreateJobRequest:
        return api.CreateJobRequest(
            job=http_job("https://hooks.example.com/window", queue=queue),
            deduplication=api.Deduplication(key=f"k-{key}", window=seconds(1), mode=api.DEDUPLICATION_MODE_DROP),
        )

    first = (await stub.CreateJob(request())).job
    assert (await stub.CreateJob(request())).job.id == first.id
    await asyncio.sleep(1.2)
    later = (await stub.CreateJob(request())).job
    assert later.id != first.id
    assert (await stub.CreateJob(request())).job.id == later.id
    assert await jobs_on_queue(settings.database_url, queue) == 2


async def test_a_repeated_request_id_answers_as_ever(stub, key):
    request = api.CreateJobRequest(
        job=http_job("https://hooks.example.com/rid", queue=f"dedup-{key}"),
        request_id=str(uuid.uuid4()),
        deduplication=api.Deduplication(key=f"rid-{key}", window=seconds(60)),
    )
    first = (await stub.CreateJob(request)).job
    assert (await stub.CreateJob(request)).job.id == first.id


async def test_expired_keys_are_purged(stub, settings, key):
    request = api.CreateJobRequest(
        job=http_job("https://hooks.example.com/purge", queue=f"dedup-{key}"),
        deduplication=api.Deduplication(key=f"purge-{key}", window=seconds(1)),
    )
    await stub.CreateJob(request)
    engine = create_async_engine(settings.database_url)
    history = HistoryPurge(engine)
    query = text("SELECT count(*) FROM deduplications WHERE key = :key")
    try:

        async def purged() -> bool:
            # An hour ahead, every key of this session has expired (the session's api may hold
            # the purge lock at this moment: then this pass is None, and the next one tries).
            await history.expired_deduplications(datetime.now(UTC) + timedelta(hours=1), 10_000)
            async with engine.connect() as conn:
                return await conn.scalar(query, {"key": f"purge-{key}"}) == 0

        await eventually(purged, timeout=10)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("deduplication", "field", "message"),
    [
        (api.Deduplication(window=seconds(60)), "deduplication.key", "1 to 256 characters"),
        (api.Deduplication(key="x" * 257, window=seconds(60)), "deduplication.key", "1 to 256 characters"),
        (api.Deduplication(key="k"), "deduplication.window", "is required"),
        (api.Deduplication(key="k", window=seconds(0.5)), "deduplication.window", "from 1 s to 7 days"),
        (api.Deduplication(key="k", window=seconds(8 * 86400)), "deduplication.window", "from 1 s to 7 days"),
        (
            api.Deduplication(key="k", window=seconds(60), mode=cast(api.DeduplicationMode.ValueType, 7)),
            "deduplication.mode",
            "DEDUPLICATION_MODE_DROP",
        ),
    ],
)
async def test_bad_deduplication_is_invalid(stub, deduplication, field, message):
    request = api.CreateJobRequest(job=http_job("https://hooks.example.com/bad"), deduplication=deduplication)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.CreateJob(request)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in field_violations(bad.value)[field]


async def test_batch_create_refuses_deduplication(stub):
    item = api.CreateJobRequest(
        job=http_job("https://hooks.example.com/batch"), deduplication=api.Deduplication(key="k", window=seconds(60))
    )
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.BatchCreateJobs(api.BatchCreateJobsRequest(requests=[item]))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "BatchCreateJobs refuses it" in field_violations(bad.value)["requests[0].deduplication"]
