"""Request size limits: a message over GRPC_MAX_MESSAGE_BYTES answers RESOURCE_EXHAUSTED before
any handler runs; fields over their own limits answer INVALID_ARGUMENT (test_invalid_arguments)."""

from __future__ import annotations

import grpc
import pytest

from jobscheduler.v1 import job_service_pb2 as api
from tests.support.apis import private_api
from tests.support.jobs import http_job

pytestmark = pytest.mark.usefixtures("api")  # the session's database, migrated


async def test_a_message_over_the_limit_is_resource_exhausted(settings):
    async with private_api(settings.model_copy(update={"grpc_max_message_bytes": 64 * 1024})) as (stub, _):
        small = http_job("https://hooks.example.com/x")
        small.http_request.body = b"x" * (32 * 1024)
        await stub.CreateJob(api.CreateJobRequest(job=small))

        large = http_job("https://hooks.example.com/x")
        large.http_request.body = b"x" * (96 * 1024)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateJob(api.CreateJobRequest(job=large))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (refused.value.details() or "")
        assert "65536" in (refused.value.details() or "")
