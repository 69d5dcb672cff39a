"""Bearer tokens on the api: UNAUTHENTICATED without a valid one; health always open; reflection
and KEDA's scaler open unless AUTH_OPEN_SERVICES says otherwise; grpcurl as the client."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from jobs_api.server import RunningApi, running_api
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc
from tests.support.grpcurl import grpcurl
from tests.support.jobs import error_info_reason

pytestmark = pytest.mark.usefixtures("api")  # the session's database, migrated

TOKEN = "ci-token-0123456789abcdef"
HASHED_TOKEN = "ops-token-fedcba9876543210"
HASHED = hashlib.sha256(HASHED_TOKEN.encode()).hexdigest()


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[RunningApi]:
    tokens = f"ci:{TOKEN}, ops:sha256:{HASHED}"
    async with running_api(
        settings.model_copy(update={"api_tokens": SecretStr(tokens)}), run_migrations=False
    ) as running:
        yield running


async def test_calls_without_a_valid_bearer_token_are_unauthenticated(secured: RunningApi):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        refused = [
            (None, "MISSING_CREDENTIALS"),
            ((("authorization", "Bearer not-a-token-we-know"),), "INVALID_CREDENTIALS"),
            ((("authorization", f"Basic {TOKEN}"),), "INVALID_CREDENTIALS"),
            ((("authorization", f"Bearer {HASHED}"),), "INVALID_CREDENTIALS"),  # the digest is not the token
        ]
        for metadata, reason in refused:
            for call in (
                jobs.ListJobs(api.ListJobsRequest(), metadata=metadata),
                queues.ListQueues(queue_service_pb2.ListQueuesRequest(), metadata=metadata),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refusal:
                    await call
                assert refusal.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert error_info_reason(refusal.value) == reason
                assert TOKEN not in (refusal.value.details() or "")
        # A token configured in clear and one configured by its digest are both accepted.
        for token in (
            TOKEN,
            HASHED_TOKEN,
        ):
            await jobs.ListJobs(api.ListJobsRequest(), metadata=(("authorization", f"Bearer {token}"),))
            await queues.ListQueues(
                queue_service_pb2.ListQueuesRequest(), metadata=(("authorization", f"bearer  {token}"),)
            )
        # Health probes carry no credentials.
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_grpcurl_sends_the_token_and_reflection_is_open_by_setting(settings: Settings):
    for open_services, reflection_open in (
        ("grpc.reflection.v1.ServerReflection,grpc.reflection.v1alpha.ServerReflection", True),
        ("", False),
    ):
        secured = settings.model_copy(
            update={"api_tokens": SecretStr(f"ci:{TOKEN}"), "auth_open_services": open_services}
        )
        async with running_api(secured, run_migrations=False) as running:
            address = f"127.0.0.1:{running.port}"
            code, out = await grpcurl("-plaintext", address, "list")
            assert (code == 0) == reflection_open, out
            if not reflection_open:
                assert "Unauthenticated" in out
            code, out = await grpcurl(
                "-plaintext",
                "-H",
                f"authorization: Bearer {TOKEN}",
                "-d",
                "{}",
                address,
                "jobscheduler.v1.QueueService/ListQueues",
            )
            assert code == 0, out
            code, out = await grpcurl("-plaintext", "-d", "{}", address, "jobscheduler.v1.QueueService/ListQueues")
            assert code != 0
            assert "Unauthenticated" in out
            # The health RPC itself needs no token; grpcurl's reflection lookup does when closed.
            reflect = () if reflection_open else ("-reflect-header", f"authorization: Bearer {TOKEN}")
            code, out = await grpcurl("-plaintext", *reflect, address, "grpc.health.v1.Health/Check")
            assert code == 0, out
            assert "SERVING" in out


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ci", r"expected 'name\[@tenant\]\[/role\]:token'"),
        ("ci:short", "at least 16 characters"),
        ("ci:sha256:abc", "64 hexadecimal digits"),
        (f"ci:{TOKEN},ci:{HASHED_TOKEN}", "used twice"),
        (f"ci:{TOKEN},cd@other:{TOKEN}", "the same token is given to another entry"),
        (f"bad name:{TOKEN}", "expected 'name"),
        (f"ci@Acme:{TOKEN}", "a tenant is 1-63 lowercase letters"),
        (f"ci@:{TOKEN}", "a tenant is 1-63 lowercase letters"),
        (f"ci@acme\n/writer:{TOKEN}", "a tenant is 1-63 lowercase letters"),
        (f"ci@acme/owner:{TOKEN}", "the role must be one of reader, writer, admin"),
        (f"ci/writer\n:{TOKEN}", "the role must be one of reader, writer, admin"),
    ],
)
def test_malformed_api_tokens_fail_at_start_without_echoing_the_secret(value: str, message: str):
    with pytest.raises(ValueError, match=message) as failure:
        Settings(api_tokens=value)
    assert TOKEN not in str(failure.value)
    assert HASHED_TOKEN not in str(failure.value)
