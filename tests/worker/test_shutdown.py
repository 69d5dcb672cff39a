"""SIGTERM (invariant 6): no new jobs, in-flight calls drain, what is left goes back to the queue
without being marked failed or using up a retry, and another worker runs it."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, eventually, http_job, wait_for_state, wait_terminal
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")


def _worker(settings, logs_dir, queue: str, drain: str, name: str) -> ChildProcess:
    env = settings_env(
        settings, WORKER_QUEUE=queue, WORKER_DRAIN_TIMEOUT=drain, WORKER_HEALTH_FILE=str(logs_dir / f"{name}.health")
    )
    return ChildProcess("jobs_worker", env, logs_dir / f"{name}.log")


async def test_sigterm_lets_an_in_flight_call_finish(stub, target, settings, logs_dir):
    queue = f"drain-{uuid.uuid4().hex[:8]}"
    worker = _worker(settings, logs_dir, queue, "10s", queue)
    try:
        await worker.wait_for_log("ready on queue")
        path = f"/sleep/2/{queue}"
        job = await create(stub, http_job(target.url(path), queue=queue))
        await wait_for_state(stub, job.last_execution.id, {pb.EXECUTION_STATE_RUNNING})

        worker.process.send_signal(signal.SIGTERM)
        # An impatient second SIGTERM (a supervisor, a double Ctrl-C) does not cut the drain short.
        await asyncio.sleep(0.3)
        worker.process.send_signal(signal.SIGTERM)
        execution = await wait_terminal(stub, job.last_execution.id, timeout=10)
        code = await worker.wait(timeout=15)
        assert "SIGTERM again: already draining" in worker.log()
    finally:
        await worker.stop()

    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    assert execution.attempt_count == 1
    assert len(target.received(path)) == 1
    assert code == 0


async def test_a_call_outliving_the_drain_is_handed_back_and_finished_elsewhere(stub, target, settings, logs_dir):
    queue = f"handback-{uuid.uuid4().hex[:8]}"
    first = _worker(settings, logs_dir, queue, "1s", f"{queue}-first")
    second: ChildProcess | None = None
    try:
        await first.wait_for_log("ready on queue")
        path = f"/sleep/4/{queue}"
        # One attempt only: the interrupted one must not use it up.
        job = await create(stub, http_job(target.url(path), queue=queue, retry_policy=pb.RetryPolicy(max_attempts=1)))
        execution_id = job.last_execution.id
        await wait_for_state(stub, execution_id, {pb.EXECUTION_STATE_RUNNING})

        first.process.send_signal(signal.SIGTERM)
        assert await first.wait(timeout=15) == 0
        handed_back = (await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution
        assert handed_back.state == pb.EXECUTION_STATE_QUEUED
        assert handed_back.attempts[0].error_kind == pb.ERROR_KIND_INTERRUPTED

        second = _worker(settings, logs_dir, queue, "10s", f"{queue}-second")
        execution = await wait_terminal(stub, execution_id, timeout=20)
    finally:
        if second is not None:
            await second.stop()
        await first.stop()

    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    assert execution.attempt_count == 2
    assert [a.error_kind for a in execution.attempts] == [pb.ERROR_KIND_INTERRUPTED, pb.ERROR_KIND_UNSPECIFIED]
    assert execution.attempts[0].worker_id != execution.attempts[1].worker_id
    await eventually(lambda: len(target.received(path)) == 2)
    assert {r.headers["Idempotency-Key"] for r in target.received(path)} == {execution_id}
