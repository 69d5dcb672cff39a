"""Leases with heartbeats and fencing: a worker that dies or stalls loses its executions within
one WORKER_LEASE_TTL (3 s in tests), whatever the call's timeout, and a stalled worker's late
result is kept as a superseded attempt without moving the execution."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, eventually, http_job, seconds, wait_terminal
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")


def _workers(settings, tmp_path: Path, queue: str, count: int) -> list[ChildProcess]:
    env = settings_env(settings.model_copy(update={"worker_queue": queue}))
    return [
        ChildProcess("jobs_worker", {**env, "WORKER_HEALTH_FILE": str(tmp_path / f"w{i}")}, tmp_path / f"w{i}.log")
        for i in range(count)
    ]


async def _first_call_held(
    stub, target, workers: list[ChildProcess], queue: str, path: str
) -> tuple[str, ChildProcess]:
    """Once the workers are ready, creates a job calling ``path`` (timeout 30 s) and waits for
    its first request; returns the execution id and the worker making that call."""
    for w in workers:
        await w.wait_for_log("ready on queue")
    job = http_job(target.url(path), queue=queue, timeout=seconds(30))
    execution_id = (await create(stub, job)).last_execution.id
    await eventually(lambda: len(target.received(path)) == 1, timeout=10)
    execution = (await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution
    return execution_id, next(w for w in workers if execution.attempts[0].worker_id.endswith(f":{w.pid}"))


async def test_a_worker_killed_mid_call_is_replaced_within_one_lease_ttl(settings, stub, target, tmp_path: Path):
    """SIGKILL the worker holding a 6-second call with a 30-second timeout: attempt 2 starts on
    the other worker once the dead worker's lease and in-progress key lapse (3 s), not after the
    call's timeout, and no reconciler pass is needed for it."""
    key = uuid.uuid4().hex[:8]
    path = f"/sleep/6/{key}"
    workers = _workers(settings, tmp_path, f"kill-{key}", 2)
    try:
        execution_id, holder = await _first_call_held(stub, target, workers, f"kill-{key}", path)
        os.kill(holder.pid, signal.SIGKILL)
        killed_at = time.time()
        await holder.wait()
        done = await wait_terminal(stub, execution_id, timeout=30)
    finally:
        for w in workers:
            await w.stop()

    assert done.state == pb.EXECUTION_STATE_SUCCEEDED
    lost, retried = done.attempts
    assert lost.error_kind == pb.ERROR_KIND_INTERRUPTED
    assert "lease expired" in lost.error_message
    assert retried.worker_id != lost.worker_id
    assert retried.response_status_code == 200
    took = retried.start_time.ToNanoseconds() / 1e9 - killed_at
    # The lease left at the kill (≤ 3 s) plus a poll and a claim; the call's timeout is 30 s.
    assert took < 3 + 3, f"attempt 2 started {took:.1f}s after the kill"
    assert [r.headers["X-Job-Attempt"] for r in target.received(path)] == ["1", "2"]


async def test_a_stalled_worker_is_fenced_and_its_late_result_kept_as_superseded(
    settings, stub, target, tmp_path: Path
):
    """SIGSTOP the worker holding a call (a stop-the-world pause): it misses its heartbeats, the
    other worker takes over as attempt 2 and finishes. Resumed, the stalled worker gets its answer
    and records it on attempt 1, marked superseded; the execution stays as attempt 2 left it."""
    key = uuid.uuid4().hex[:8]
    path = f"/sleep/2/{key}"
    workers = _workers(settings, tmp_path, f"stall-{key}", 2)
    try:
        execution_id, stalled = await _first_call_held(stub, target, workers, f"stall-{key}", path)
        os.kill(stalled.pid, signal.SIGSTOP)
        try:
            done = await wait_terminal(stub, execution_id, timeout=20)
        finally:
            os.kill(stalled.pid, signal.SIGCONT)
        await stalled.wait_for_log("superseded", timeout=20)
        await asyncio.sleep(0.2)
        after = (await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution
    finally:
        for w in workers:
            await w.stop()

    assert done.state == pb.EXECUTION_STATE_SUCCEEDED
    assert after.state == pb.EXECUTION_STATE_SUCCEEDED
    assert after.end_time == done.end_time
    assert after.attempt_count == 2
    late, current = after.attempts
    assert late.worker_id.endswith(f":{stalled.pid}")
    assert late.superseded
    assert late.response_status_code == 200
    assert not current.superseded
    assert current.response_status_code == 200
