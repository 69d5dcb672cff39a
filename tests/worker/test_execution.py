"""End to end: CreateJob → PostgreSQL → arq → a real worker process → a real HTTP target."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import grpc
import pytest
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.arq_extension import RUN_EXECUTION, arq_queue_name
from jobs_worker import build_worker
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import (
    create,
    eventually,
    every,
    executions_of,
    http_job,
    seconds,
    wait_for_state,
    wait_terminal,
)

pytestmark = pytest.mark.usefixtures("worker")


async def test_success_records_the_attempt(stub, target, key):
    path = f"/ok/{key}"
    job = await create(stub, http_job(target.url(path), labels={"team": "payments"}))
    assert job.last_execution.state == pb.EXECUTION_STATE_QUEUED

    execution = await wait_terminal(stub, job.last_execution.id)

    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    assert execution.attempt_count == 1
    attempt = execution.attempts[0]
    assert attempt.response_status_code == 200
    assert attempt.response_body == b"ok"
    assert attempt.response_headers["content-type"].startswith("text/plain")
    assert attempt.error_kind == pb.ERROR_KIND_UNSPECIFIED
    assert re.fullmatch(r".+:\d+", attempt.worker_id)
    assert attempt.HasField("end_time")
    assert attempt.duration.ToNanoseconds() > 0
    received = target.received(path)
    assert len(received) == 1
    assert received[0].method == "POST"
    assert received[0].headers["Idempotency-Key"] == execution.id
    # Exactly what docs/internals.md says targets receive.
    documented = (Path(__file__).resolve().parents[2] / "docs" / "internals.md").read_text()
    assert f"`User-Agent: {received[0].headers['User-Agent']}`" in documented
    finished_job = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert finished_job.state == pb.JOB_STATE_COMPLETED
    assert finished_job.last_execution.state == pb.EXECUTION_STATE_SUCCEEDED


async def test_request_method_headers_and_body_reach_the_target(stub, target, key):
    path = f"/ok/{key}"
    job = http_job(target.url(path))
    job.http_request.method = pb.HTTP_METHOD_PUT
    job.http_request.headers["X-Tenant"] = "acme"
    job.http_request.body = b'{"hello": "world"}'
    created = await create(stub, job)
    await wait_terminal(stub, created.last_execution.id)
    [received] = target.received(path)
    assert received.method == "PUT"
    assert received.headers["X-Tenant"] == "acme"
    assert received.body == b'{"hello": "world"}'


async def test_two_500s_then_200_succeeds_on_the_third_attempt_with_growing_delays(stub, target, key):
    path = f"/flaky/{key}"
    policy = pb.RetryPolicy(min_backoff=seconds(0.3), multiplier=2.0)
    job = await create(stub, http_job(target.url(path) + "?fail=2&code=500", retry_policy=policy))

    execution = await wait_terminal(stub, job.last_execution.id)

    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    assert execution.attempt_count == 3
    assert [a.response_status_code for a in execution.attempts] == [500, 500, 200]
    assert [a.error_kind for a in execution.attempts] == [pb.ERROR_KIND_HTTP_STATUS] * 2 + [pb.ERROR_KIND_UNSPECIFIED]
    times = [r.time for r in target.received(path)]
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    # 0.3 s then 0.6 s, each shortened by at most 10 % jitter.
    assert first_gap >= 0.27
    assert second_gap >= 0.54
    assert second_gap > first_gap
    assert {r.headers["Idempotency-Key"] for r in target.received(path)} == {execution.id}


async def test_404_is_final_after_one_attempt(stub, target, key):
    job = await create(stub, http_job(target.url(f"/status/404/{key}")))
    execution = await wait_terminal(stub, job.last_execution.id)
    assert execution.state == pb.EXECUTION_STATE_DEAD
    assert execution.attempt_count == 1
    assert execution.attempts[0].error_kind == pb.ERROR_KIND_HTTP_STATUS
    assert "404" in execution.last_error
    assert len(target.received(f"/status/404/{key}")) == 1


async def test_a_listed_4xx_is_retried(stub, target, key):
    policy = pb.RetryPolicy(max_attempts=2, retry_status_codes=[409])
    job = await create(stub, http_job(target.url(f"/status/409/{key}"), retry_policy=policy))
    execution = await wait_terminal(stub, job.last_execution.id)
    assert execution.state == pb.EXECUTION_STATE_DEAD
    assert execution.attempt_count == 2
    assert "all 2 attempts used" in execution.last_error


async def test_429_retry_after_is_honoured(stub, target, key):
    path = f"/flaky/{key}"
    job = await create(stub, http_job(target.url(path) + "?fail=1&code=429&retry_after=2"))
    execution = await wait_terminal(stub, job.last_execution.id)
    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    assert [a.response_status_code for a in execution.attempts] == [429, 200]
    first, second = target.received(path)
    assert second.time - first.time >= 2.0


async def test_an_odd_retry_after_falls_back_to_the_normal_backoff(stub, target, key):
    """Once recorded as a lost worker: "²" passes str.isdigit() and int() refuses it."""
    path = f"/flaky/{key}"
    job = await create(stub, http_job(target.url(path) + "?fail=1&code=503&retry_after=%C2%B2"))
    execution = await wait_terminal(stub, job.last_execution.id)
    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    assert [a.response_status_code for a in execution.attempts] == [503, 200]
    assert execution.attempts[0].response_headers["retry-after"] == "²"
    assert execution.attempts[0].error_kind == pb.ERROR_KIND_HTTP_STATUS


async def test_timeout_is_recorded_and_retried(stub, target, key):
    path = f"/sleep/5/{key}"
    job = await create(
        stub,
        http_job(target.url(path), timeout=seconds(0.5), retry_policy=pb.RetryPolicy(max_attempts=2)),
    )
    execution = await wait_terminal(stub, job.last_execution.id)
    assert execution.state == pb.EXECUTION_STATE_DEAD
    assert execution.attempt_count == 2
    for attempt in execution.attempts:
        assert attempt.error_kind == pb.ERROR_KIND_TIMEOUT
        assert 0.45 <= attempt.duration.ToNanoseconds() / 1e9 < 2.0
    assert len(target.received(path)) == 2


async def test_connection_refused_is_a_connect_error(stub):
    job = await create(stub, http_job("http://127.0.0.1:9/", retry_policy=pb.RetryPolicy(max_attempts=1)))
    execution = await wait_terminal(stub, job.last_execution.id)
    assert execution.state == pb.EXECUTION_STATE_DEAD
    assert execution.attempts[0].error_kind == pb.ERROR_KIND_CONNECT
    assert execution.attempts[0].response_status_code == 0


async def test_exhausted_execution_goes_dead_and_replays_to_success(stub, target, key):
    path = f"/flaky/{key}"
    job = await create(stub, http_job(target.url(path) + "?fail=3", retry_policy=pb.RetryPolicy(max_attempts=3)))
    dead = await wait_terminal(stub, job.last_execution.id)
    assert dead.state == pb.EXECUTION_STATE_DEAD
    assert dead.attempt_count == 3
    assert "all 3 attempts used" in dead.last_error

    replay = (await stub.ReplayExecution(api.ReplayExecutionRequest(id=dead.id))).execution
    assert replay.replay_of == dead.id
    assert replay.id != dead.id
    replayed = await wait_terminal(stub, replay.id)

    assert replayed.state == pb.EXECUTION_STATE_SUCCEEDED
    assert replayed.attempt_count == 1
    assert target.received(path)[-1].headers["Idempotency-Key"] == replay.id
    finished_job = (await stub.GetJob(api.GetJobRequest(id=job.id))).job
    assert finished_job.last_execution.id == replay.id
    assert finished_job.state == pb.JOB_STATE_COMPLETED
    executions = (await stub.ListExecutions(api.ListExecutionsRequest(job_id=job.id))).executions
    assert [e.id for e in executions] == [replay.id, dead.id]
    with pytest.raises(grpc.aio.AioRpcError) as succeeded:
        await stub.ReplayExecution(api.ReplayExecutionRequest(id=replay.id))
    assert succeeded.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_replaying_an_execution_twice_calls_the_target_once(stub, target, key):
    """A second ReplayExecution of the same execution, at once or after the replay ended, answers
    the existing replay: one execution, one call, one Idempotency-Key."""
    path = f"/flaky/{key}"
    job = await create(stub, http_job(target.url(path) + "?fail=1", retry_policy=pb.RetryPolicy(max_attempts=1)))
    dead = await wait_terminal(stub, job.last_execution.id)
    assert dead.state == pb.EXECUTION_STATE_DEAD

    request = api.ReplayExecutionRequest(id=dead.id)
    first, second = await asyncio.gather(stub.ReplayExecution(request), stub.ReplayExecution(request))
    assert first.execution.id == second.execution.id
    assert (await wait_terminal(stub, first.execution.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    later = (await stub.ReplayExecution(request)).execution
    assert later.id == first.execution.id
    assert later.state == pb.EXECUTION_STATE_SUCCEEDED
    await asyncio.sleep(0.5)  # room for a second call, were one dispatched
    assert [r.headers["Idempotency-Key"] for r in target.received(path)] == [dead.id, first.execution.id]
    executions = await executions_of(stub, job.id)
    assert [e.id for e in executions] == [dead.id, first.execution.id]


async def test_cancel_a_scheduled_execution_it_never_runs(stub, target, key):
    path = f"/ok/{key}"
    job = http_job(target.url(path))
    job.schedule.run_at.GetCurrentTime()
    job.schedule.run_at.seconds += 2
    created = await create(stub, job)
    assert created.last_execution.state == pb.EXECUTION_STATE_SCHEDULED

    cancelled = (await stub.CancelExecution(api.CancelExecutionRequest(id=created.last_execution.id))).execution
    assert cancelled.state == pb.EXECUTION_STATE_CANCELLED

    await asyncio.sleep(3)
    assert target.received(path) == []
    execution = (await stub.GetExecution(api.GetExecutionRequest(id=cancelled.id))).execution
    assert execution.state == pb.EXECUTION_STATE_CANCELLED
    assert execution.attempt_count == 0
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.CancelExecution(api.CancelExecutionRequest(id=cancelled.id))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_a_queued_execution_it_never_runs(stub, target, key, settings):
    """Queued on a queue no worker serves yet; cancelled; then a worker for that queue drains it."""
    queue = f"parked-{key[:8]}"
    path = f"/ok/{key}"
    created = await create(stub, http_job(target.url(path), queue=queue))
    assert created.last_execution.state == pb.EXECUTION_STATE_QUEUED
    await stub.CancelExecution(api.CancelExecutionRequest(id=created.last_execution.id))

    worker = build_worker(settings.model_copy(update={"worker_queue": queue}), burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()

    assert target.received(path) == []
    execution = (await stub.GetExecution(api.GetExecutionRequest(id=created.last_execution.id))).execution
    assert execution.state == pb.EXECUTION_STATE_CANCELLED
    assert execution.attempt_count == 0


async def test_cancel_a_running_execution_aborts_the_call(stub, target, key):
    path = f"/sleep/30/{key}"
    created = await create(stub, http_job(target.url(path)))
    await wait_for_state(stub, created.last_execution.id, {pb.EXECUTION_STATE_RUNNING})
    await eventually(lambda: len(target.received(path)) == 1)

    cancelled = (await stub.CancelExecution(api.CancelExecutionRequest(id=created.last_execution.id))).execution
    assert cancelled.state == pb.EXECUTION_STATE_CANCELLED

    async def attempt_closed() -> bool:
        execution = (await stub.GetExecution(api.GetExecutionRequest(id=cancelled.id))).execution
        return execution.attempts[0].HasField("end_time")

    await eventually(attempt_closed, timeout=5)
    execution = (await stub.GetExecution(api.GetExecutionRequest(id=cancelled.id))).execution
    assert execution.state == pb.EXECUTION_STATE_CANCELLED
    assert execution.attempts[0].error_kind == pb.ERROR_KIND_CANCELLED
    assert execution.attempts[0].duration.ToNanoseconds() / 1e9 < 10
    assert len(target.received(path)) == 1


async def test_duplicate_arq_delivery_makes_no_second_call(stub, target, key, arq_redis):
    path = f"/sleep/1/{key}"
    created = await create(stub, http_job(target.url(path), timeout=seconds(3)))
    execution_id = created.last_execution.id
    await wait_for_state(stub, execution_id, {pb.EXECUTION_STATE_RUNNING})
    queue = arq_queue_name("default")
    # arq itself refuses a second job with the same id, so a duplicate needs another id.
    during = await arq_redis.enqueue_job(RUN_EXECUTION, execution_id, _job_id=f"dup-during-{key}", _queue_name=queue)
    assert during is not None
    await wait_terminal(stub, execution_id)
    after = await arq_redis.enqueue_job(RUN_EXECUTION, execution_id, _job_id=f"dup-after-{key}", _queue_name=queue)
    assert after is not None

    # Not ArqJob.result(): it gives up on a job that a worker has claimed (out of the ready set)
    # and not yet finished; status() sees the claim.
    dup_after = ArqJob(f"dup-after-{key}", arq_redis, _queue_name=queue)

    async def dup_after_finished() -> bool:
        return await dup_after.status() == JobStatus.complete

    await eventually(dup_after_finished)
    result = await dup_after.result_info()
    assert result is not None
    assert result.result == "SKIPPED:SUCCEEDED"
    # The one delivered while the call ran waits for the lease (timeout + grace), never calls.
    during_score = await arq_redis.zscore(queue, f"dup-during-{key}")
    assert during_score is not None
    assert len(target.received(path)) == 1
    execution = (await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution
    assert execution.attempt_count == 1


async def test_response_body_is_capped_and_a_huge_body_is_not_downloaded(stub, target, key, worker):
    rss_before = _rss_bytes(worker.pid)
    huge = f"/big/{10**9}/{key}"
    job = http_job(target.url(huge))
    job.http_request.method = pb.HTTP_METHOD_GET
    created = await create(stub, job)
    execution = await wait_terminal(stub, created.last_execution.id, timeout=20)
    attempt = execution.attempts[0]
    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    assert len(attempt.response_body) == 64 * 1024
    assert attempt.response_body_truncated
    assert attempt.duration.ToNanoseconds() / 1e9 < 5
    assert _rss_bytes(worker.pid) - rss_before < 50 * 1024 * 1024

    small = http_job(target.url(f"/big/{64 * 1024}/{key}"))
    small.http_request.method = pb.HTTP_METHOD_GET
    exact = await wait_terminal(stub, (await create(stub, small)).last_execution.id)
    assert len(exact.attempts[0].response_body) == 64 * 1024
    assert not exact.attempts[0].response_body_truncated


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_stored_header_value_httpx_refuses_is_never_quoted(settings, stub, target, worker, key):
    """A value stored before RFC 9110 values were checked at create: the attempt fails as
    PROTOCOL, and neither its error nor the worker's log holds the value."""
    mark = f"c0ffee{key[:8]}"
    job = await create(stub, http_job(target.url(f"/ok/{key}"), schedule=every(3600)))
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE jobs SET headers = CAST(:headers AS jsonb) WHERE id = :id"),
            {"headers": json.dumps({"X-Odd": f"x\r\nInjected: {mark}"}), "id": job.id},
        )
    await engine.dispose()
    ran = (await stub.RunJob(api.RunJobRequest(id=job.id))).execution
    done = await wait_terminal(stub, ran.id)
    assert done.attempts[0].error_kind == pb.ERROR_KIND_PROTOCOL
    assert "could not be sent" in done.attempts[0].error_message
    assert mark not in done.attempts[0].error_message
    assert mark not in done.last_error
    assert mark not in worker.log()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_answers_are_kept_decoded(stub, target, key, encoding):
    job = await create(stub, http_job(target.url(f"/encoded/{encoding}/{key}")))
    execution = await wait_terminal(stub, job.last_execution.id)
    [attempt] = execution.attempts
    assert attempt.response_body == f"compressed {key} ".encode() * 1000
    assert not attempt.response_body_truncated


async def test_a_corrupt_compressed_answer_is_a_protocol_error(stub, target, key):
    job = await create(
        stub, http_job(target.url(f"/encoded/corrupt/{key}"), retry_policy=pb.RetryPolicy(max_attempts=1))
    )
    execution = await wait_terminal(stub, job.last_execution.id)
    assert execution.attempts[0].error_kind == pb.ERROR_KIND_PROTOCOL
    assert "corrupt" in execution.attempts[0].error_message
