"""CreateJob refuses URLs that the egress policy can never let through (addresses written in the
URL, and localhost), with INVALID_ARGUMENT on the url; names are checked when resolved."""

from __future__ import annotations

import grpc
import pytest

from jobscheduler.v1 import job_service_pb2 as api
from tests.support.apis import private_api
from tests.support.jobs import field_violations, http_job

pytestmark = pytest.mark.usefixtures("api")  # the session's database, migrated

NEVER_ALLOWED = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://api.localhost./hook",
    "http://[::1]/hook",
    "http://10.0.0.7/hook",
    "http://100.64.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::a00:1]/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
]


async def test_create_job_refuses_addresses_the_policy_never_allows(settings):
    async with private_api(settings.model_copy(update={"egress_allow_networks": ""})) as (stub, _):
        for url in NEVER_ALLOWED:
            with pytest.raises(grpc.aio.AioRpcError) as refusal:
                await stub.CreateJob(api.CreateJobRequest(job=http_job(url)))
            assert refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT, url
            [(field, description)] = field_violations(refusal.value).items()
            assert field == "job.http_request.url"
            assert description.startswith("egress policy refuses "), description
        # Names pass (the worker checks what they resolve to), and so do public addresses.
        for url in ("http://hooks.example.com/x", "https://8.8.8.8/x", "http://[2606:4700::1111]/x"):
            await stub.CreateJob(api.CreateJobRequest(job=http_job(url)))


async def test_allow_lists_open_what_they_name(settings):
    opened = settings.model_copy(update={"egress_allow_networks": "10.0.0.0/8", "egress_allow_hosts": "localhost"})
    async with private_api(opened) as (stub, _):
        for url in ("http://10.0.0.7/hook", "http://localhost:8080/hook"):
            await stub.CreateJob(api.CreateJobRequest(job=http_job(url)))
        with pytest.raises(grpc.aio.AioRpcError) as refusal:
            await stub.CreateJob(api.CreateJobRequest(job=http_job("http://127.0.0.1/hook")))
        assert field_violations(refusal.value) == {
            "job.http_request.url": "egress policy refuses 127.0.0.1 (loopback); "
            "EGRESS_ALLOW_NETWORKS lists the non-public networks allowed"
        }
