"""CreateJobs that arrive together share one statement (JobStore.create_each), and each is still
committed, answered and refused on its own: request ids, a reused one, recurring and scheduled
jobs in the same statement; the rows are the ones the single-job statement writes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_api.callers import ANONYMOUS, calling_as
from jobs_api.job_service import JobServicer
from jobs_api.streams import StreamLimits
from jobs_api.validation import JobLimits
from jobs_common.arq_extension import Dispatcher, arq_job_id, arq_queue_name
from jobs_common.errors import AlreadyExistsError
from jobs_common.store import JobEvents, JobStore, TickStore
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import error_info_reason, http_job

pytestmark = pytest.mark.usefixtures("api")

# Columns that differ between two jobs made of the same request.
_OWN = {"id", "job_id", "request_id", "request_fingerprint", "create_time", "update_time", "last_execution_id"}
_OWN |= {"schedule_time", "next_run_time", "sealed_secrets"}


async def test_concurrent_creates_share_statements_and_are_answered_each_on_its_own(stub, settings, arq_redis):
    queue = f"coalesced-{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(settings.database_url)
    servicer = JobServicer(
        JobStore(engine, settings.secret_box),
        TickStore(engine),
        Dispatcher(arq_redis),
        settings,
        JobLimits.from_settings(settings),
        JobEvents(settings.database_url),
        StreamLimits(settings.streams_max, settings.streams_max_per_connection, settings.streams_max_per_tenant),
    )
    reused, repeated = str(uuid.uuid4()), str(uuid.uuid4())
    await stub.CreateJob(
        api.CreateJobRequest(job=http_job("https://hooks.example.com/first", queue=queue), request_id=reused)
    )

    def one_off(i: int) -> api.CreateJobRequest:
        return api.CreateJobRequest(job=http_job(f"https://hooks.example.com/now/{i}", queue=queue))

    later = http_job("https://hooks.example.com/later", queue=queue)
    later.schedule.run_at.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    every = http_job("https://hooks.example.com/every", queue=queue)
    every.schedule.interval.seconds = 3600
    requests = [
        *(one_off(i) for i in range(40)),
        *(api.CreateJobRequest(job=later) for _ in range(4)),
        *(api.CreateJobRequest(job=every) for _ in range(4)),
        # The same request five times: one job.
        *(
            api.CreateJobRequest(job=http_job("https://hooks.example.com/repeated", queue=queue), request_id=repeated)
            for _ in range(5)
        ),
        # A request_id used before with another request: refused, alone.
        api.CreateJobRequest(job=http_job("https://hooks.example.com/other", queue=queue), request_id=reused),
    ]
    try:
        with calling_as(ANONYMOUS):  # as the interceptor does for an api without tokens
            answers = await asyncio.gather(
                *(servicer.CreateJob(r, None) for r in requests),  # type: ignore[arg-type]
                return_exceptions=True,
            )
        [refused] = [a for a in answers if isinstance(a, BaseException)]
        assert isinstance(refused, AlreadyExistsError)
        assert refused.reason == "REQUEST_ID_REUSED"
        jobs = [a.job for a in answers if not isinstance(a, BaseException)]
        assert len(jobs) == 53
        assert len({j.id for j in jobs[-5:]}) == 1  # the repeated request: one job
        assert len({j.id for j in jobs}) == 49
        assert servicer._creates.items == len(requests)
        assert servicer._creates.batches < len(requests) / 2, "concurrent creates were written together"

        states = [j.last_execution.state for j in jobs[:44]]
        assert states == [pb.EXECUTION_STATE_QUEUED] * 40 + [pb.EXECUTION_STATE_SCHEDULED] * 4
        assert all(j.next_run_time.seconds and not j.HasField("last_execution") for j in jobs[44:48])
        async with engine.connect() as conn:
            stored = (
                await conn.execute(
                    text(
                        "SELECT j.id, e.id AS execution FROM jobs j LEFT JOIN executions e ON e.job_id = j.id"
                        " WHERE j.queue = :q"
                    ),
                    {"q": queue},
                )
            ).all()
        assert len(stored) == 50  # 49 made here and the first
        made = {j.id: j for j in jobs}
        for job_id, execution in stored:
            if str(job_id) in made and made[str(job_id)].HasField("last_execution"):
                assert str(execution) == made[str(job_id)].last_execution.id
        # The due ones were enqueued, each once.
        for job in jobs[:40]:
            assert await arq_redis.zscore(arq_queue_name(queue), arq_job_id(job.last_execution.id)) is not None
    finally:
        await engine.dispose()


async def test_the_shared_statement_writes_the_rows_the_single_statement_writes(stub, settings):
    """create_each builds its rows itself (JSON for jsonb_populate_recordset); they must be the
    rows the prebuilt single-job statement writes (still used for a large body), column for
    column, the body aside."""
    queue = f"same-rows-{uuid.uuid4().hex[:8]}"
    job = http_job("https://hooks.example.com/same", queue=queue, labels={"team": "a"})
    job.http_request.headers["X-Trace"] = "1"
    job.http_request.body = b"\x00\xffbody"
    job.retry_policy.retry_status_codes.extend([408, 429])
    job.retry_policy.max_attempts = 3
    shared = (await stub.CreateJob(api.CreateJobRequest(job=job))).job
    large_body = bytes(range(256)) * 400  # past the shared statement's limit
    job.http_request.body = large_body
    alone = (await stub.CreateJob(api.CreateJobRequest(job=job))).job
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:

            async def row(table: str, column: str, value: str) -> dict[str, object]:
                found = (
                    (await conn.execute(text(f"SELECT * FROM {table} WHERE {column} = :v"), {"v": uuid.UUID(value)}))
                    .mappings()
                    .one()
                )
                return {k: v for k, v in found.items() if k not in _OWN}

            shared_job, alone_job = await row("jobs", "id", shared.id), await row("jobs", "id", alone.id)
            assert (shared_job.pop("body"), alone_job.pop("body")) == (b"\x00\xffbody", large_body)
            assert shared_job == alone_job
            shared_execution = await row("executions", "job_id", shared.id)
            alone_execution = await row("executions", "job_id", alone.id)
            assert (shared_execution.pop("body"), alone_execution.pop("body")) == (b"\x00\xffbody", large_body)
            assert shared_execution == alone_execution
            assert shared_execution["retry_status_codes"] == [408, 429]
            assert shared_execution["queue"] == queue
    finally:
        await engine.dispose()


async def test_a_reused_request_id_is_still_already_exists_over_grpc(stub):
    request_id = str(uuid.uuid4())
    await stub.CreateJob(api.CreateJobRequest(job=http_job("https://hooks.example.com/a"), request_id=request_id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateJob(api.CreateJobRequest(job=http_job("https://hooks.example.com/b"), request_id=request_id))
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info_reason(refused.value) == "REQUEST_ID_REUSED"


async def test_a_large_body_is_written_in_a_statement_of_its_own_and_answered_with_the_rest(stub, settings):
    queue = f"large-{uuid.uuid4().hex[:8]}"
    large = http_job("https://hooks.example.com/large", queue=queue)
    large.http_request.body = bytes(range(256)) * 400  # 100 KiB: past the shared statement's limit
    small = [http_job(f"https://hooks.example.com/small/{i}", queue=queue) for i in range(3)]
    answers = await asyncio.gather(*(stub.CreateJob(api.CreateJobRequest(job=j)) for j in [*small, large, *small]))
    assert len({a.job.id for a in answers}) == 7
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            bodies = (
                await conn.execute(
                    text("SELECT length(e.body) FROM executions e JOIN jobs j ON j.id = e.job_id WHERE j.queue = :q"),
                    {"q": queue},
                )
            ).scalars()
            assert sorted(bodies) == [0] * 6 + [102_400]
    finally:
        await engine.dispose()
