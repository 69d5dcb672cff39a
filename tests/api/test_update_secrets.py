"""UpdateJob keeps secrets write-only (issue 18, finding 1): a stored secret stays secret until
its value is sent again, and a kept secret never goes to another origin."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.domain import REDACTED
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, every, field_violations, http_job, seconds, wait_terminal


def _secret_job(url: str, token: str, auth: str) -> pb.Job:
    job = http_job(url, schedule=every(3600))
    job.http_request.headers.update({"Authorization": auth, "X-Partner-Token": token})
    job.http_request.secret_headers.append("X-Partner-Token")
    return job


async def _job_row(settings, job_id: str) -> str:
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        row = await conn.scalar(text("SELECT j::text FROM jobs j WHERE id = :id"), {"id": job_id})
    await engine.dispose()
    return str(row)


async def test_dropping_a_header_from_secret_headers_never_reveals_its_value(settings, stub, target, worker, key):
    token, auth = f"partner-{uuid.uuid4().hex}", f"Bearer {uuid.uuid4().hex}"
    job = await create(stub, _secret_job(target.url(f"/ok/{key}"), token, auth))
    # By the mask alone, and by sending back the job as read with its [REDACTED] values.
    read_back = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    del read_back.http_request.secret_headers[:]
    declassify = pb.Job(id=job.id, http_request=pb.HttpRequest(secret_headers=[]))
    for update, mask in ((declassify, "http_request.secret_headers"), (read_back, "http_request")):
        updated = await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=FieldMask(paths=[mask])))
        assert updated.job.http_request.headers["X-Partner-Token"] == REDACTED, mask
        assert token not in str(updated)
    read = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert token not in str(read)
    row = await _job_row(settings, job.id)
    assert token not in row
    assert auth.split()[1] not in row
    # The target still gets the value: it was kept, sealed.
    ran = (await stub.RunJob(api.RunJobRequest(id=job.id))).execution
    assert (await wait_terminal(stub, ran.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    [received] = target.received(f"/ok/{key}")
    assert received.headers["X-Partner-Token"] == token


async def test_a_header_sent_again_may_stop_being_secret(stub, target, key):
    job = await create(stub, _secret_job(target.url(f"/ok/{key}"), "old-token", "Bearer abc"))
    update = pb.Job(
        id=job.id, http_request=pb.HttpRequest(headers={"X-Partner-Token": "public-now"}, secret_headers=[])
    )
    mask = FieldMask(paths=["http_request.headers", "http_request.secret_headers"])
    updated = (await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=mask))).job
    assert updated.http_request.headers["X-Partner-Token"] == "public-now"  # its new value was sent
    assert "Authorization" not in updated.http_request.headers  # headers were replaced whole


@pytest.mark.parametrize("mask", [[], ["http_request.url"]])
async def test_a_new_origin_needs_the_secrets_sent_again(stub, target, key, mask):
    job = await create(stub, _secret_job(target.url(f"/ok/{key}"), "partner-token", "Bearer abc"))
    elsewhere = f"http://127.0.0.1:1/collect/{key}"  # another port: another origin
    update = pb.Job(id=job.id, http_request=pb.HttpRequest(url=elsewhere))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=FieldMask(paths=mask)))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violation = field_violations(raised.value)["job.http_request.headers"]
    assert "Authorization, X-Partner-Token" in violation
    assert "send their values again" in violation
    assert "partner-token" not in (raised.value.details() or "")
    assert (await stub.GetJob(api.GetJobRequest(id=job.id))).job.http_request.url == job.http_request.url

    # Same origin, another path: the secrets stay with their origin.
    moved = pb.Job(id=job.id, http_request=pb.HttpRequest(url=target.url(f"/ok/{key}-v2")))
    assert (await stub.UpdateJob(api.UpdateJobRequest(job=moved))).job.http_request.url.endswith("-v2")
    # Sending the values again (or dropping the headers) lets the job move.
    again = pb.Job(
        id=job.id,
        http_request=pb.HttpRequest(
            url=elsewhere, headers={"Authorization": "Bearer for-the-new-host"}, secret_headers=[]
        ),
    )
    paths = ["http_request.url", "http_request.headers", "http_request.secret_headers"]
    moved_away = await stub.UpdateJob(api.UpdateJobRequest(job=again, update_mask=FieldMask(paths=paths)))
    assert moved_away.job.http_request.url == elsewhere


async def test_a_new_origin_needs_a_new_signing_secret(stub, target, key):
    job = http_job(target.url(f"/ok/{key}"), schedule=every(3600))
    job.http_request.signing.generate_secret = True
    job = await create(stub, job)
    elsewhere = f"http://127.0.0.1:1/collect/{key}"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateJob(api.UpdateJobRequest(job=pb.Job(id=job.id, http_request=pb.HttpRequest(url=elsewhere))))
    assert "job.http_request.signing.secrets" in field_violations(raised.value)
    fresh = pb.Job(id=job.id, http_request=pb.HttpRequest(url=elsewhere))
    fresh.http_request.signing.generate_secret = True
    mask = FieldMask(paths=["http_request.url", "http_request.signing"])
    moved = (await stub.UpdateJob(api.UpdateJobRequest(job=fresh, update_mask=mask))).job
    [secret] = moved.http_request.signing.secrets
    assert secret.startswith("whsec_")  # a new one, shown once


def _one_field_updates(url: str) -> dict[str, pb.Job]:
    """A valid change of every leaf field of a job (an interval job with secret headers)."""
    redacted = {"Authorization": REDACTED, "X-Partner-Token": REDACTED}
    return {
        "http_request.method": pb.Job(http_request=pb.HttpRequest(method=pb.HTTP_METHOD_PUT)),
        "http_request.url": pb.Job(http_request=pb.HttpRequest(url=url + "-moved")),
        "http_request.headers": pb.Job(http_request=pb.HttpRequest(headers={**redacted, "X-Plain": "visible"})),
        "http_request.body": pb.Job(http_request=pb.HttpRequest(body=b"new body")),
        "http_request.follow_redirects": pb.Job(http_request=pb.HttpRequest(follow_redirects=True)),
        "http_request.secret_headers": pb.Job(http_request=pb.HttpRequest(secret_headers=["X-Partner-Token"])),
        "http_request.signing.generate_secret": pb.Job(
            http_request=pb.HttpRequest(signing=pb.WebhookSigning(generate_secret=True))
        ),
        "timeout": pb.Job(timeout=seconds(30)),
        "retry_policy.max_attempts": pb.Job(retry_policy=pb.RetryPolicy(max_attempts=7)),
        "retry_policy.min_backoff": pb.Job(retry_policy=pb.RetryPolicy(min_backoff=seconds(2))),
        "retry_policy.max_backoff": pb.Job(retry_policy=pb.RetryPolicy(max_backoff=seconds(60))),
        "retry_policy.multiplier": pb.Job(retry_policy=pb.RetryPolicy(multiplier=3)),
        "retry_policy.retry_status_codes": pb.Job(retry_policy=pb.RetryPolicy(retry_status_codes=[409])),
        "schedule.interval": pb.Job(schedule=pb.Schedule(interval=seconds(7200))),
        "schedule.overlap_policy": pb.Job(schedule=pb.Schedule(overlap_policy=pb.OVERLAP_POLICY_ALLOW)),
        "schedule.catch_up_policy": pb.Job(schedule=pb.Schedule(catch_up_policy=pb.CATCH_UP_POLICY_RUN_ALL)),
        "schedule.max_runs": pb.Job(schedule=pb.Schedule(max_runs=50)),
        "queue": pb.Job(queue="other-queue"),
        "labels": pb.Job(labels={"team": "payments"}),
    }


@pytest.mark.parametrize("named", [False, True], ids=["implied-mask", "named-mask"])
async def test_updating_any_field_never_returns_or_stores_a_secret_in_clear(settings, stub, target, key, named):
    url = target.url(f"/ok/{key}")
    token, auth = f"partner-{uuid.uuid4().hex}", f"Bearer {uuid.uuid4().hex}"
    job = await create(stub, _secret_job(url, token, auth))
    for path, update in _one_field_updates(url).items():
        update.id = job.id
        mask = FieldMask(paths=[path] if named else [])
        updated = await stub.UpdateJob(api.UpdateJobRequest(job=update, update_mask=mask))
        shown = str(updated) + str(await stub.GetJob(api.GetJobRequest(id=job.id)))
        assert token not in shown, path
        assert auth not in shown, path
        assert updated.job.http_request.headers["X-Partner-Token"] == REDACTED, path
        assert updated.job.http_request.headers["Authorization"] == REDACTED, path
        row = await _job_row(settings, job.id)
        assert token not in row, path
        assert auth.split()[1] not in row, path
