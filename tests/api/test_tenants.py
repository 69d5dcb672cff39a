"""Tenants and roles (issue 18, finding 2), tried as a hostile tenant would: with a valid token of
another tenant, every job, execution, dead letter and watch of the first one is NOT_FOUND (never
PERMISSION_DENIED, which would tell it exists), and changes nothing; a role below the one a
method needs is PERMISSION_DENIED naming that role."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from pydantic import SecretStr

from jobs_api.roles import ROLES, SCOPED_SERVICES
from jobs_api.server import running_api
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc, queue_service_pb2_grpc
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.bearer import bearer_channel
from tests.support.jobs import create, error_info_reason, every, http_job, wait_terminal

pytestmark = pytest.mark.usefixtures("api", "worker")

TOKENS = {
    "acme-writer": "acme-writer-token-0123456789",
    "acme-reader": "acme-reader-token-0123456789",
    "acme-admin": "acme-admin-token-01234567890",
    "globex-admin": "globex-admin-token-012345678",
    "legacy": "legacy-token-0123456789abcdef",
}
API_TOKENS = (
    f"acme-writer@acme/writer:{TOKENS['acme-writer']},"
    f"acme-reader@acme/reader:{TOKENS['acme-reader']},"
    f"acme-admin@acme/admin:{TOKENS['acme-admin']},"
    f"globex-admin@globex/admin:{TOKENS['globex-admin']},"
    # As API_TOKENS was written before tenants: the admin of the default tenant.
    f"legacy:{TOKENS['legacy']}"
)


@dataclass
class Client:
    jobs: job_service_pb2_grpc.JobServiceAsyncStub
    queues: queue_service_pb2_grpc.QueueServiceAsyncStub


@pytest.fixture(scope="module")
async def tenants(settings: Settings) -> AsyncIterator[dict[str, Client]]:
    """An api with the tokens above, on the session's database (the session's worker runs its
    jobs); a client per token."""
    secured = settings.model_copy(update={"api_tokens": SecretStr(API_TOKENS)})
    async with contextlib.AsyncExitStack() as stack:
        running = await stack.enter_async_context(running_api(secured, run_migrations=False))
        clients = {}
        for name, token in TOKENS.items():
            channel = await stack.enter_async_context(bearer_channel(running.port, token))
            clients[name] = Client(
                job_service_pb2_grpc.JobServiceStub(channel), queue_service_pb2_grpc.QueueServiceStub(channel)
            )
        yield clients


@pytest.fixture(scope="module")
def acme(tenants: dict[str, Client]) -> Client:
    return tenants["acme-writer"]


@pytest.fixture(scope="module")
def hostile(tenants: dict[str, Client]) -> Client:
    """The other tenant, with the strongest role it can have."""
    return tenants["globex-admin"]


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _dead_letter(client: Client, target_url: str) -> pb.Job:
    job = await create(client.jobs, http_job(target_url, retry_policy=pb.RetryPolicy(max_attempts=1)))
    dead = await wait_terminal(client.jobs, job.last_execution.id)
    assert dead.state == pb.EXECUTION_STATE_DEAD
    return job


async def test_another_tenants_jobs_and_executions_are_not_found_and_stay_unchanged(
    acme: Client, hostile: Client, target, key
):
    one_off = await create(acme.jobs, http_job(target.url(f"/ok/{key}")))
    finished = await wait_terminal(acme.jobs, one_off.last_execution.id)
    recurring = await create(acme.jobs, http_job(target.url(f"/ok/{key}"), schedule=every(3600)))
    moved = pb.Job(id=recurring.id, http_request=pb.HttpRequest(url=target.url("/ok/stolen")))
    attempts: dict[str, Callable[[], Awaitable[object]]] = {
        "GetJob": lambda: hostile.jobs.GetJob(api.GetJobRequest(id=recurring.id)),
        "UpdateJob": lambda: hostile.jobs.UpdateJob(
            api.UpdateJobRequest(job=moved, update_mask=FieldMask(paths=["http_request.url"]))
        ),
        "PauseJob": lambda: hostile.jobs.PauseJob(api.PauseJobRequest(id=recurring.id)),
        "ResumeJob": lambda: hostile.jobs.ResumeJob(api.ResumeJobRequest(id=recurring.id)),
        "RunJob": lambda: hostile.jobs.RunJob(api.RunJobRequest(id=recurring.id)),
        "DeleteJob": lambda: hostile.jobs.DeleteJob(api.DeleteJobRequest(id=recurring.id)),
        "DeleteJob (one-off)": lambda: hostile.jobs.DeleteJob(api.DeleteJobRequest(id=one_off.id)),
        "ListExecutions": lambda: hostile.jobs.ListExecutions(api.ListExecutionsRequest(job_id=one_off.id)),
        "GetExecution": lambda: hostile.jobs.GetExecution(api.GetExecutionRequest(id=finished.id)),
        "CancelExecution": lambda: hostile.jobs.CancelExecution(api.CancelExecutionRequest(id=finished.id)),
        "ReplayExecution": lambda: hostile.jobs.ReplayExecution(api.ReplayExecutionRequest(id=finished.id)),
    }
    for name, attempt in attempts.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await attempt()
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND, name
        assert "tenant" not in (refused.value.details() or ""), name
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in hostile.jobs.WatchJob(api.WatchJobRequest(id=recurring.id)):
            pass
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    for view in (api.JOB_VIEW_BASIC, api.JOB_VIEW_FULL):
        listed = await hostile.jobs.ListJobs(api.ListJobsRequest(page_size=1000, view=view))
        assert {one_off.id, recurring.id}.isdisjoint(job.id for job in listed.jobs)
    # Nothing the hostile tenant tried changed anything.
    still = (await acme.jobs.GetJob(api.GetJobRequest(id=recurring.id))).job
    assert still.state == pb.JOB_STATE_ACTIVE
    assert still.http_request.url == target.url(f"/ok/{key}")
    assert still.last_execution.id == ""  # RunJob made no execution
    assert (await acme.jobs.GetJob(api.GetJobRequest(id=one_off.id))).job.state == pb.JOB_STATE_COMPLETED
    assert len(target.received("/ok/stolen")) == 0
    # The owner may do each of them.
    assert await _code(acme.jobs.PauseJob(api.PauseJobRequest(id=recurring.id))) == grpc.StatusCode.OK
    assert await _code(acme.jobs.DeleteJob(api.DeleteJobRequest(id=recurring.id))) == grpc.StatusCode.OK


async def test_a_request_id_belongs_to_its_tenant(acme: Client, hostile: Client):
    """Another tenant reusing a request_id makes its own job: it neither gets the first tenant's
    job back nor learns that the id was used."""
    request_id = str(uuid.uuid4())
    job = http_job("https://hooks.example.com/request-id", schedule=every(3600))
    mine = await create(acme.jobs, job, request_id)
    theirs = await create(hostile.jobs, job, request_id)
    assert theirs.id != mine.id
    other_request = http_job("https://hooks.example.com/other", schedule=every(3600))
    assert (await create(hostile.jobs, other_request, str(uuid.uuid4()))).id not in (mine.id, theirs.id)
    assert (await create(acme.jobs, job, request_id)).id == mine.id
    assert (await create(hostile.jobs, job, request_id)).id == theirs.id
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create(hostile.jobs, other_request, request_id)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert mine.id not in (refused.value.details() or "")


async def test_dead_letters_are_seen_replayed_and_purged_only_by_their_tenant(
    tenants: dict[str, Client], hostile: Client, target, key
):
    owner = tenants["acme-admin"]
    job = await _dead_letter(owner, target.url(f"/status/500/{key}"))
    dead_id = job.last_execution.id
    by_job = qapi.DeadLetterFilter(job_id=job.id)
    everything = qapi.DeadLetterFilter()

    listed = await hostile.queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=everything, page_size=1000))
    assert dead_id not in {e.id for e in listed.executions}
    assert not (await hostile.queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_job))).executions
    replayed = await hostile.queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest(ids=[dead_id]))
    assert list(replayed.skipped_ids) == [dead_id]
    assert not replayed.executions
    by_filter = await hostile.queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest(filter=by_job))
    assert not by_filter.executions
    assert (await hostile.queues.PurgeDeadLetters(qapi.PurgeDeadLettersRequest(filter=by_job))).purged == 0
    assert (await hostile.queues.PurgeDeadLetters(qapi.PurgeDeadLettersRequest(filter=everything))).purged == 0
    # Still there, and only one call reached the target.
    mine = await owner.queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=by_job))
    assert [e.id for e in mine.executions] == [dead_id]
    assert len(target.received(f"/status/500/{key}")) == 1
    assert (await owner.queues.PurgeDeadLetters(qapi.PurgeDeadLettersRequest(filter=by_job))).purged == 1


async def test_each_role_may_do_what_it_needs_and_no_more(tenants: dict[str, Client], target, key):
    reader, writer, admin = tenants["acme-reader"], tenants["acme-writer"], tenants["acme-admin"]
    job = await create(writer.jobs, http_job(target.url(f"/ok/{key}"), schedule=every(3600)))
    # A reader reads and watches.
    assert (await reader.jobs.GetJob(api.GetJobRequest(id=job.id))).job.id == job.id
    assert job.id in {j.id for j in (await reader.jobs.ListJobs(api.ListJobsRequest(page_size=1000))).jobs}
    async for first in reader.jobs.WatchJob(api.WatchJobRequest(id=job.id)):
        assert first.job.id == job.id
        break
    await reader.queues.ListQueues(qapi.ListQueuesRequest())
    await reader.queues.ListDeadLetters(qapi.ListDeadLettersRequest())
    refusals: list[tuple[str, str, Awaitable[object]]] = [
        ("reader", "writer", reader.jobs.CreateJob(api.CreateJobRequest(job=http_job(target.url(f"/ok/{key}"))))),
        ("reader", "writer", reader.jobs.RunJob(api.RunJobRequest(id=job.id))),
        ("reader", "writer", reader.jobs.DeleteJob(api.DeleteJobRequest(id=job.id))),
        ("writer", "admin", writer.queues.PauseQueue(qapi.PauseQueueRequest(name="default"))),
        ("writer", "admin", writer.queues.UpdateQueue(qapi.UpdateQueueRequest())),
        ("writer", "admin", writer.queues.PurgeDeadLetters(qapi.PurgeDeadLettersRequest())),
        ("writer", "admin", writer.queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest())),
    ]
    for role, needed, call in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info_reason(refused.value) == "ROLE_REQUIRED"
        assert f"needs the {needed} role" in (refused.value.details() or "")
        assert f"has the {role} role" in (refused.value.details() or "")
    assert (await admin.jobs.GetJob(api.GetJobRequest(id=job.id))).job.state == pb.JOB_STATE_ACTIVE
    # A writer runs and deletes; an admin changes queues.
    assert await _code(writer.jobs.RunJob(api.RunJobRequest(id=job.id))) == grpc.StatusCode.OK
    assert await _code(writer.jobs.DeleteJob(api.DeleteJobRequest(id=job.id))) == grpc.StatusCode.OK
    queue = f"roles-{key[:8]}"
    assert await _code(admin.queues.PauseQueue(qapi.PauseQueueRequest(name=queue))) == grpc.StatusCode.OK
    assert await _code(admin.queues.ResumeQueue(qapi.ResumeQueueRequest(name=queue))) == grpc.StatusCode.OK


async def test_tokens_written_before_tenants_keep_the_jobs_made_before(
    tenants: dict[str, Client], hostile: Client, stub, target, key
):
    """The migration path: jobs made without tokens are the default tenant's, and a token
    written as before (name:token) is that tenant's admin."""
    made_before = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=every(3600)))
    legacy = tenants["legacy"]
    assert (await legacy.jobs.GetJob(api.GetJobRequest(id=made_before.id))).job.id == made_before.id
    # Its admin role: only this job's dead letters (none), not the session's other tests' ones.
    mine_only = qapi.PurgeDeadLettersRequest(filter=qapi.DeadLetterFilter(job_id=made_before.id))
    assert await _code(legacy.queues.PurgeDeadLetters(mine_only)) == grpc.StatusCode.OK
    assert await _code(hostile.jobs.GetJob(api.GetJobRequest(id=made_before.id))) == grpc.StatusCode.NOT_FOUND


def test_every_method_of_the_scoped_services_names_its_role():
    """A method added later without a role would need admin (fail closed); this keeps the list
    whole, so none is refused by accident."""
    from jobscheduler.v1 import job_service_pb2, queue_service_pb2

    methods = {
        (service.full_name, method.name)
        for module in (job_service_pb2, queue_service_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert {service for service, _ in methods} == set(SCOPED_SERVICES)
    assert methods == set(ROLES)


async def test_another_tenants_jobs_with_the_same_flow_key_neither_share_nor_set_its_limits(
    acme: Client, hostile: Client, target, key, arq_redis
):
    queue = f"tenants-flow-{key}"  # no worker serves it: the jobs stay ready
    mine = pb.FlowControl(key="customer-7", max_concurrent=5)
    theirs = pb.FlowControl(key="customer-7", max_concurrent=1)  # created later: it would win
    job = await create(acme.jobs, http_job(target.url(f"/ok/{key}"), queue=queue, flow_control=mine))
    await create(hostile.jobs, http_job(target.url(f"/ok/{key}"), queue=queue, flow_control=theirs))
    assert job.flow_control == mine  # shown as given
    limits = await arq_redis.hgetall(f"jobs:flow:{queue}:limits")
    assert {k: v.split()[0] for k, v in limits.items()} == {b"acme/customer-7": b"5", b"globex/customer-7": b"1"}
