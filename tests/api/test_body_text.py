"""``http_request.body_text``: a body sent as text (JSON as it is, not base64), from grpcurl and
from UpdateJob; set with a different ``body`` it is INVALID_ARGUMENT."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.grpcurl import grpcurl
from tests.support.jobs import create, every, field_violations, http_job, wait_terminal

PAYLOAD = '{"event": "invoice.paid", "amount": 4200}'


@pytest.mark.usefixtures("worker")
async def test_grpcurl_sends_json_as_text(api, stub, target, key):
    path = f"/ok/{key}"
    request = {
        "job": {
            "http_request": {
                "url": target.url(path),
                "headers": {"Content-Type": "application/json"},
                "body_text": PAYLOAD,
            }
        }
    }
    code, out = await grpcurl(
        "-plaintext", "-d", json.dumps(request), f"127.0.0.1:{api.port}", "jobscheduler.v1.JobService/CreateJob"
    )
    assert code == 0, out
    created = json.loads(out)["job"]
    assert "body_text" not in created["http_request"]  # input only: the answer has body
    execution = await wait_terminal(stub, created["last_execution"]["id"])
    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    [received] = target.received(path)
    assert received.body == PAYLOAD.encode()


async def test_body_and_body_text_must_agree(stub):
    same = http_job("https://hooks.example.com/x")
    same.http_request.body = PAYLOAD.encode()
    same.http_request.body_text = PAYLOAD
    assert (await create(stub, same)).http_request.body == PAYLOAD.encode()

    different = http_job("https://hooks.example.com/x")
    different.http_request.body = b"other"
    different.http_request.body_text = PAYLOAD
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, different)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "job.http_request.body_text" in field_violations(raised.value)


async def test_update_job_takes_body_text_with_or_without_a_mask(stub):
    job = http_job("https://hooks.example.com/x", schedule=every(3600))
    job.http_request.headers["Content-Type"] = "application/json"
    job.http_request.body = b"{}"
    job = await create(stub, job)

    update = pb.Job(id=job.id, http_request=pb.HttpRequest(body_text=PAYLOAD))
    implied = (await stub.UpdateJob(api.UpdateJobRequest(job=update))).job
    assert implied.http_request.body == PAYLOAD.encode()
    assert implied.http_request.headers["Content-Type"] == "application/json"

    update.http_request.body_text = "[]"
    named = await stub.UpdateJob(
        api.UpdateJobRequest(job=update, update_mask=FieldMask(paths=["http_request.body_text"]))
    )
    assert named.job.http_request.body == b"[]"
    assert named.job.http_request.url == job.http_request.url
