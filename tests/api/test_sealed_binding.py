"""Sealed secrets are bound to their job (issue 18, finding 11): a sealed value copied from one
job's row into another's (a hand edit, a restored backup, someone with write access to the
database but not the keys) does not open there, so the other job never sends the first job's
Authorization. It reads without secrets, UpdateJob refuses to lose them, and the worker records
the failure instead of calling."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, error_info_reason, http_job, wait_terminal
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api", "worker")


async def test_a_sealed_value_moved_to_another_job_does_not_open(
    settings: Settings, stub, target: TargetServer, key: str
):
    victim_auth = f"Bearer victim-{uuid.uuid4().hex}"
    victim = http_job(target.url(f"/ok/{key}-victim"))
    victim.http_request.headers["Authorization"] = victim_auth
    victim.schedule.interval.seconds = 3600  # ticks only when RunJob asks
    victim_job = await create(stub, victim)
    thief = http_job(target.url(f"/ok/{key}-thief"), retry_policy=pb.RetryPolicy(max_attempts=1))
    thief.schedule.interval.seconds = 3600
    thief_job = await create(stub, thief)

    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            moved = await conn.execute(
                text(
                    "UPDATE jobs SET sealed_secrets = (SELECT sealed_secrets FROM jobs WHERE id = :victim)"
                    " WHERE id = :thief"
                ),
                {"victim": uuid.UUID(victim_job.id), "thief": uuid.UUID(thief_job.id)},
            )
            assert moved.rowcount == 1
    finally:
        await engine.dispose()

    # Read: the thief's job shows no secret header of the victim's.
    read = (await stub.GetJob(api.GetJobRequest(id=thief_job.id))).job
    assert "Authorization" not in read.http_request.headers
    assert list(read.http_request.secret_headers) == []
    # Update: refused rather than sealing what it cannot open into the thief's row.
    change = pb.Job(id=thief_job.id, labels={"touched": "yes"})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdateJob(api.UpdateJobRequest(job=change, update_mask=FieldMask(paths=["labels"])))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_reason(refused.value) == "SECRETS_UNREADABLE"
    # Run: the execution copies the moved value; the worker cannot open it and does not call.
    ran = await stub.RunJob(api.RunJobRequest(id=thief_job.id))
    done = await wait_terminal(stub, ran.execution.id)
    assert done.state == pb.EXECUTION_STATE_DEAD
    assert "cannot open the job's secrets" in done.last_error
    assert "sealed for another job" in done.last_error
    assert target.received(f"/ok/{key}-thief") == []
    # The victim's job still opens its own and sends it.
    victim_run = await stub.RunJob(api.RunJobRequest(id=victim_job.id))
    assert (await wait_terminal(stub, victim_run.execution.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    [call] = target.received(f"/ok/{key}-victim")
    assert call.headers["Authorization"] == victim_auth
    for job in (victim_job, thief_job):
        await stub.DeleteJob(api.DeleteJobRequest(id=job.id))
