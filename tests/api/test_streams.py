"""Long-lived streams are bounded (issue 18, finding 10): WatchJob and KEDA's StreamIsActive
count against STREAMS_MAX per api process and STREAMS_MAX_PER_CONNECTION per client connection
(one more is RESOURCE_EXHAUSTED), and every StreamIsActive stream on a queue shares one backlog
query per interval."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from externalscaler import externalscaler_pb2 as keda
from externalscaler import externalscaler_pb2_grpc
from jobs_api.keda_scaler import BacklogPolls, Trigger
from jobs_api.server import running_api
from jobs_common.settings import Settings
from jobs_common.store import QueueStore
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from tests.support.bearer import bearer_channel
from tests.support.jobs import create, error_info_reason, http_job

# Channels to one address share one connection unless each has its own subchannel pool.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


class CountingQueueStore(QueueStore):
    """The real store (real PostgreSQL), counting its backlog queries per queue."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.queries: dict[str, int] = {}

    async def backlog(self, queue: str, due_within: timedelta) -> int:
        self.queries[queue] = self.queries.get(queue, 0) + 1
        return await super().backlog(queue, due_within)


@contextlib.asynccontextmanager
async def _opened(stream: grpc.aio.UnaryStreamCall[Any, Any]) -> AsyncIterator[grpc.aio.UnaryStreamCall[Any, Any]]:
    try:
        yield stream
    finally:
        stream.cancel()


async def _first_read_code(stream: grpc.aio.UnaryStreamCall[Any, Any]) -> grpc.StatusCode:
    """OK when the stream's first message arrives, else the status it failed with."""
    try:
        await asyncio.wait_for(stream.read(), 10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _refused(stream: grpc.aio.UnaryStreamCall[Any, Any]) -> str:
    """The stream's first read fails RESOURCE_EXHAUSTED; its ErrorInfo reason."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await asyncio.wait_for(stream.read(), 10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.value.details()
    return error_info_reason(error.value)


async def test_streams_past_the_caps_are_resource_exhausted_and_a_closed_one_frees_its_place(settings: Settings, stub):
    job = await create(stub, http_job("http://127.0.0.1:9/never", queue="streams-idle"))
    capped = settings.model_copy(update={"streams_max": 5, "streams_max_per_connection": 3})
    async with (
        running_api(capped, run_migrations=False) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}", options=OWN_CONNECTION) as first,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}", options=OWN_CONNECTION) as second,
        contextlib.AsyncExitStack() as open_streams,
    ):
        jobs = [job_service_pb2_grpc.JobServiceStub(channel) for channel in (first, second)]
        scaler = externalscaler_pb2_grpc.ExternalScalerStub(first)
        watch = api.WatchJobRequest(id=job.id)
        held = []
        for stream in (jobs[0].WatchJob(watch), jobs[0].WatchJob(watch), scaler.StreamIsActive(keda.ScaledObjectRef())):
            held.append(await open_streams.enter_async_context(_opened(stream)))
            await asyncio.wait_for(stream.read(), 10)
        # A fourth on the first connection: its cap (StreamIsActive counted with WatchJob).
        assert await _refused(jobs[0].WatchJob(watch)) == "TOO_MANY_STREAMS"
        assert await _refused(scaler.StreamIsActive(keda.ScaledObjectRef())) == "TOO_MANY_STREAMS"
        # Two more on the second connection reach the process's cap; a third is refused.
        for _ in range(2):
            stream = await open_streams.enter_async_context(_opened(jobs[1].WatchJob(watch)))
            await asyncio.wait_for(stream.read(), 10)
        assert await _refused(jobs[1].WatchJob(watch)) == "TOO_MANY_STREAMS"
        # Unary calls are not streams.
        assert (await jobs[1].GetJob(api.GetJobRequest(id=job.id))).job.id == job.id
        # A stream the client closes gives its place back.
        held[0].cancel()
        deadline = time.monotonic() + 10
        while True:
            again = jobs[0].WatchJob(watch)
            code = await _first_read_code(again)
            again.cancel()
            if code == grpc.StatusCode.OK:
                break
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() < deadline, "the closed stream kept its place"
            await asyncio.sleep(0.1)
    await stub.DeleteJob(api.DeleteJobRequest(id=job.id))


async def test_one_tenant_cannot_take_every_stream(settings: Settings):
    tokens = {"acme": "acme-streams-token-0123456789", "globex": "globex-streams-token-012345678"}
    capped = settings.model_copy(
        update={
            "streams_max": 10,
            "streams_max_per_tenant": 2,
            "api_tokens": SecretStr(",".join(f"{name}@{name}/writer:{token}" for name, token in tokens.items())),
        }
    )
    async with running_api(capped, run_migrations=False) as running, contextlib.AsyncExitStack() as stack:
        stubs = {
            name: job_service_pb2_grpc.JobServiceStub(
                await stack.enter_async_context(bearer_channel(running.port, token))
            )
            for name, token in tokens.items()
        }
        watches = {}
        for name, stub in stubs.items():
            job = await create(stub, http_job("http://127.0.0.1:9/never", queue="streams-idle"))
            watches[name] = api.WatchJobRequest(id=job.id)
        for _ in range(2):
            stream = await stack.enter_async_context(_opened(stubs["acme"].WatchJob(watches["acme"])))
            await asyncio.wait_for(stream.read(), 10)
        assert await _refused(stubs["acme"].WatchJob(watches["acme"])) == "TOO_MANY_STREAMS"
        # The other tenant still has its share.
        for _ in range(2):
            stream = await stack.enter_async_context(_opened(stubs["globex"].WatchJob(watches["globex"])))
            await asyncio.wait_for(stream.read(), 10)
        assert await _refused(stubs["globex"].WatchJob(watches["globex"])) == "TOO_MANY_STREAMS"
        for name, stub in stubs.items():
            await stub.DeleteJob(api.DeleteJobRequest(id=watches[name].id))


async def test_streams_on_one_queue_share_one_backlog_query_per_interval(settings: Settings):
    engine = create_async_engine(settings.database_url)
    store = CountingQueueStore(engine)
    polls = BacklogPolls(store, interval=0.1)
    queue, other = f"shared-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    trigger, other_trigger = Trigger({"queue": queue}), Trigger({"queue": other})
    try:
        async with contextlib.AsyncExitStack() as stack:
            started = time.monotonic()
            streams = [await stack.enter_async_context(polls.readings(trigger)) for _ in range(50)]
            streams.append(await stack.enter_async_context(polls.readings(other_trigger)))
            for _ in range(5):  # every stream gets each reading
                assert [await asyncio.wait_for(s.get(), 5) for s in streams] == [0] * 51
            elapsed = time.monotonic() - started
            assert polls.running == 2
        # Fifty streams, one query per interval: not fifty.
        assert 5 <= store.queries[queue] <= elapsed / 0.1 + 2
        assert 5 <= store.queries[other] <= elapsed / 0.1 + 2
        # The last stream gone, the poll stops.
        assert polls.running == 0
        counted = dict(store.queries)
        await asyncio.sleep(0.3)
        assert store.queries == counted
    finally:
        await engine.dispose()


async def test_a_failed_backlog_query_ends_every_stream_on_it_and_the_next_one_polls_again(settings: Settings):
    # Nothing listens on port 9: every backlog query fails to connect.
    engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nothing")
    polls = BacklogPolls(QueueStore(engine), interval=0.1)
    trigger = Trigger({"queue": "down"})
    try:
        async with polls.readings(trigger) as one, polls.readings(trigger) as two:
            readings = [await asyncio.wait_for(s.get(), 10) for s in (one, two)]
            assert all(isinstance(r, Exception) for r in readings), readings
            assert polls.running == 0
        async with polls.readings(trigger) as three:
            assert isinstance(await asyncio.wait_for(three.get(), 10), Exception)
    finally:
        await engine.dispose()
