"""Poison jobs: an execution whose worker dies every time it runs it is not retried forever.
Crash-caused attempts count toward max_attempts; the next claim after the last one ends the
execution DEAD, with the reason, and makes no further call."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, eventually, http_job, seconds, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api")


def _received(target: TargetServer, path: str, count: int) -> Callable[[], bool]:
    return lambda: len(target.received(path)) == count


async def test_a_job_that_kills_every_worker_ends_dead_after_max_attempts(settings, stub, target, tmp_path: Path):
    key = uuid.uuid4().hex[:8]
    queue = f"poison-{key}"
    env = settings_env(settings.model_copy(update={"worker_queue": queue}))
    path = f"/sleep/30/{key}"
    job = await create(
        stub, http_job(target.url(path), queue=queue, timeout=seconds(40), retry_policy=pb.RetryPolicy(max_attempts=2))
    )
    execution_id = job.last_execution.id
    # The job "exhausts the worker's memory": whichever worker makes its call dies (SIGKILL).
    for delivery in range(1, 3):
        worker = ChildProcess(
            "jobs_worker", {**env, "WORKER_HEALTH_FILE": str(tmp_path / "w")}, tmp_path / f"w{delivery}.log"
        )
        try:
            await eventually(_received(target, path, delivery), timeout=20)
        finally:
            await worker.stop(signal.SIGKILL)
    survivor = ChildProcess("jobs_worker", {**env, "WORKER_HEALTH_FILE": str(tmp_path / "w")}, tmp_path / "w3.log")
    try:
        done = await wait_terminal(stub, execution_id, timeout=20)
    finally:
        await survivor.stop()

    assert done.state == pb.EXECUTION_STATE_DEAD
    assert done.last_error == "all 2 attempts used (workers lost)"
    assert [a.error_kind for a in done.attempts] == [pb.ERROR_KIND_INTERRUPTED] * 3
    assert [a.error_message for a in done.attempts[:2]] == ["worker lost: lease expired"] * 2
    assert len(target.received(path)) == 2
    latest = (await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution
    assert latest.state == pb.EXECUTION_STATE_DEAD
