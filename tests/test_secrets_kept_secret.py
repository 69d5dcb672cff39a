"""Known secrets planted in a job's headers and signing secret go through a full lifecycle (a
success, a dead letter, an update, a manual run) and must reach the target intact, signed, and
nowhere else: not in any answer, log line, or database row in clear."""

from __future__ import annotations

import base64
import logging
import os
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from standardwebhooks import Webhook

from jobs_common.domain import REDACTED
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2, queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, eventually, field_violations, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api")


def _job(url: str, auth: str, partner: str) -> pb.Job:
    job = http_job(url, retry_policy=pb.RetryPolicy(max_attempts=2))
    job.http_request.headers.update({"Authorization": auth, "X-Partner-Token": partner, "X-Plain": "visible"})
    job.http_request.secret_headers.append("X-Partner-Token")
    job.http_request.signing.generate_secret = True
    job.http_request.body = b'{"hello": "signed"}'
    return job


async def test_planted_secrets_reach_the_target_and_nothing_else(
    settings, stub, channel: grpc.aio.Channel, target: TargetServer, worker: ChildProcess, caplog, key: str
):
    caplog.set_level(logging.DEBUG)
    auth, partner = f"Bearer sk-live-{uuid.uuid4().hex}", f"partner-{uuid.uuid4().hex}"
    ok_path, failing_path = f"/ok/{key}", f"/status/500/{key}"
    answers: list[object] = []

    recurring = _job(target.url(ok_path), auth, partner)
    recurring.schedule.interval.seconds = 3600  # runs when RunJob asks, from its current definition
    ok_job = await create(stub, recurring)
    [signing_secret] = ok_job.http_request.signing.secrets  # generated: shown once, in this answer
    assert signing_secret.startswith("whsec_")
    assert ok_job.http_request.headers["Authorization"] == REDACTED
    assert ok_job.http_request.headers["X-Partner-Token"] == REDACTED
    assert ok_job.http_request.headers["X-Plain"] == "visible"
    assert list(ok_job.http_request.secret_headers) == ["Authorization", "X-Partner-Token"]
    failing = await create(stub, _job(target.url(failing_path), auth, partner))
    create_answers = [ok_job, failing]
    secrets = [auth, partner, signing_secret.removeprefix("whsec_"), failing.http_request.signing.secrets[0][6:]]

    first_run = (await stub.RunJob(api.RunJobRequest(id=ok_job.id))).execution
    done = await wait_terminal(stub, first_run.id)
    dead = await wait_terminal(stub, failing.last_execution.id)
    assert (done.state, dead.state) == (pb.EXECUTION_STATE_SUCCEEDED, pb.EXECUTION_STATE_DEAD)

    # The target got the real values, and a signature the reference library accepts.
    [delivered] = target.received(ok_path)
    assert (delivered.headers["Authorization"], delivered.headers["X-Partner-Token"]) == (auth, partner)
    Webhook(signing_secret).verify(delivered.body, delivered.headers, json_parse=False)
    assert delivered.headers["webhook-id"] == first_run.id

    # An update that sends the read-back job again keeps every stored secret.
    read_back = (await stub.GetJob(api.GetJobRequest(id=ok_job.id))).job
    answers.append(read_back)
    read_back.labels["touched"] = "yes"
    updated = await stub.UpdateJob(
        api.UpdateJobRequest(job=read_back, update_mask=FieldMask(paths=["http_request", "labels"]))
    )
    answers.append(updated)
    assert list(updated.job.http_request.signing.secrets) == [REDACTED]
    rerun = (await stub.RunJob(api.RunJobRequest(id=ok_job.id))).execution
    await wait_terminal(stub, rerun.id)
    second = target.received(ok_path)[1]
    assert (second.headers["Authorization"], second.headers["X-Partner-Token"]) == (auth, partner)
    Webhook(signing_secret).verify(second.body, second.headers, json_parse=False)
    # "[REDACTED]" where nothing is stored cannot pass as a value.
    copied = pb.Job()
    copied.CopyFrom(read_back)
    copied.ClearField("id")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateJob(api.CreateJobRequest(job=copied))
    assert "stands for a stored secret" in field_violations(refused.value)["job.http_request.headers"]

    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    answers += [
        await stub.ListJobs(api.ListJobsRequest(page_size=50)),
        await stub.ListJobs(api.ListJobsRequest(page_size=50, view=api.JOB_VIEW_FULL)),
        await stub.GetExecution(api.GetExecutionRequest(id=done.id)),
        await stub.GetExecution(api.GetExecutionRequest(id=dead.id)),
        await stub.ListExecutions(api.ListExecutionsRequest(job_id=failing.id)),
        await queues.ListDeadLetters(
            queue_service_pb2.ListDeadLettersRequest(filter=queue_service_pb2.DeadLetterFilter(job_id=failing.id))
        ),
    ]
    async for change in stub.WatchJob(api.WatchJobRequest(id=failing.id)):
        answers.append(change)
        break

    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = [
            str(row[0])
            for table in ("jobs", "executions")
            for row in await conn.execute(
                text(f"SELECT t::text FROM {table} t WHERE {'id' if table == 'jobs' else 'job_id'} = ANY(:ids)"),
                {"ids": [uuid.UUID(ok_job.id), uuid.UUID(failing.id)]},
            )
        ]
        rows += [
            str(row[0])
            for row in await conn.execute(
                text(
                    "SELECT a::text FROM attempts a JOIN executions e ON e.id = a.execution_id "
                    "WHERE e.job_id = ANY(:ids)"
                ),
                {"ids": [uuid.UUID(ok_job.id), uuid.UUID(failing.id)]},
            )
        ]
    await engine.dispose()
    assert len(rows) >= 5
    await eventually(lambda: rerun.id in worker.log_path.read_text())

    places = {
        "answers": "\n".join(str(answer) for answer in answers),
        "database rows": "\n".join(rows),
        "worker log": worker.log_path.read_text(),
        "api log": caplog.text,
    }
    for secret in secrets:
        for place, content in places.items():
            assert secret not in content, f"a planted secret appears in the {place}"
    # The CreateJob answers show each generated signing secret once, and nothing else secret.
    for secret in (auth, partner):
        assert secret not in "\n".join(str(answer) for answer in create_answers)


async def test_a_worker_without_the_key_makes_no_call_and_says_why(settings, stub, target, key: str, tmp_path: Path):
    queue = f"no-key-{key[:8]}"
    other_key = SecretStr(f"other:{base64.b64encode(os.urandom(32)).decode()}")
    env = settings_env(settings.model_copy(update={"worker_queue": queue, "secrets_keys": other_key}))
    worker = ChildProcess("jobs_worker", {**env, "WORKER_HEALTH_FILE": str(tmp_path / "w")}, tmp_path / "w.log")
    try:
        await worker.wait_for_log("ready on queue")
        job = http_job(target.url(f"/ok/{key}"), queue=queue, retry_policy=pb.RetryPolicy(max_attempts=2))
        job.http_request.headers["Authorization"] = "Bearer sealed-under-the-test-key"
        done = await wait_terminal(stub, (await create(stub, job)).last_execution.id)
    finally:
        await worker.stop()
    assert done.state == pb.EXECUTION_STATE_DEAD
    assert [a.error_kind for a in done.attempts] == [pb.ERROR_KIND_POLICY] * 2
    assert done.attempts[0].error_message == (
        "this worker cannot open the job's secrets: sealed with key 'test', which SECRETS_KEYS does not list"
    )
    assert target.received(f"/ok/{key}") == []
