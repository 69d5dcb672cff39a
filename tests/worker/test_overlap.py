"""Overlap policies in real time: an interval of 1 s against calls that take longer."""

from __future__ import annotations

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, eventually, every, executions_of, http_job, wait_terminal


async def _states(stub, job_id: str) -> list[int]:
    return [e.state for e in await executions_of(stub, job_id)]


async def test_skip_records_the_ticks_it_skips(stub, target, worker, key):
    path = f"/sleep/2.5/{key}"
    job = await create(stub, http_job(target.url(path), schedule=every(1, start_in_s=0.5)))
    await eventually(lambda: _count(stub, job.id, pb.EXECUTION_STATE_SKIPPED, 2), timeout=10)
    await stub.PauseJob(api.PauseJobRequest(id=job.id))
    executions = await executions_of(stub, job.id)
    running = executions[0]
    skipped = [e for e in executions if e.state == pb.EXECUTION_STATE_SKIPPED]
    assert all(running.id in e.last_error and e.HasField("tick_time") for e in skipped)
    assert (await wait_terminal(stub, running.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    assert len(target.received(path)) == len(executions) - len(skipped) == 1


async def test_allow_runs_ticks_concurrently(stub, target, worker, key):
    path = f"/sleep/2.5/{key}"
    job = await create(
        stub, http_job(target.url(path), schedule=every(1, start_in_s=0.5, overlap_policy=pb.OVERLAP_POLICY_ALLOW))
    )
    await eventually(lambda: len(target.received(path)) >= 3, timeout=10)
    await stub.PauseJob(api.PauseJobRequest(id=job.id))
    starts = [r.time for r in target.received(path)]
    assert starts[2] - starts[0] < 2.5  # the third began before the first could have ended
    assert pb.EXECUTION_STATE_SKIPPED not in await _states(stub, job.id)


async def test_buffer_one_runs_one_tick_right_after_the_unfinished_one(stub, target, worker, key):
    path = f"/sleep/2/{key}"
    schedule = every(1, start_in_s=0.5, overlap_policy=pb.OVERLAP_POLICY_BUFFER_ONE)
    job = await create(stub, http_job(target.url(path), schedule=schedule))
    await eventually(lambda: len(target.received(path)) >= 2, timeout=10)
    await stub.PauseJob(api.PauseJobRequest(id=job.id))
    executions = await executions_of(stub, job.id)
    ran = [e for e in executions if e.state != pb.EXECUTION_STATE_SKIPPED]
    first = await wait_terminal(stub, ran[0].id)
    second = await wait_terminal(stub, ran[1].id)
    # The buffered run is the tick right after the running one's, though created later.
    assert ran[1].tick_time.ToNanoseconds() - ran[0].tick_time.ToNanoseconds() == 1_000_000_000
    assert any("already buffered" in e.last_error for e in executions if e.state == pb.EXECUTION_STATE_SKIPPED)
    gap = second.start_time.ToNanoseconds() / 1e9 - first.end_time.ToNanoseconds() / 1e9
    assert 0 <= gap < 1.5, f"buffered run started {gap:.2f}s after the first ended"


async def test_cancel_previous_aborts_the_running_call(stub, target, worker, key):
    path = f"/sleep/30/{key}"
    schedule = every(1, start_in_s=0.5, overlap_policy=pb.OVERLAP_POLICY_CANCEL_PREVIOUS)
    job = await create(stub, http_job(target.url(path), schedule=schedule))
    await eventually(lambda: len(target.received(path)) >= 2, timeout=10)
    await stub.DeleteJob(api.DeleteJobRequest(id=job.id))
    first = await wait_terminal(stub, (await executions_of(stub, job.id))[0].id)
    assert first.state == pb.EXECUTION_STATE_CANCELLED
    assert "CANCEL_PREVIOUS" in first.last_error
    cancelled = (await stub.GetExecution(api.GetExecutionRequest(id=first.id))).execution
    await eventually(lambda: _attempt_closed(stub, first.id), timeout=10)
    assert cancelled.attempt_count == 1


async def _count(stub, job_id: str, state: int, at_least: int) -> bool:
    return (await _states(stub, job_id)).count(state) >= at_least


async def _attempt_closed(stub, execution_id: str) -> bool:
    execution = (await stub.GetExecution(api.GetExecutionRequest(id=execution_id))).execution
    return bool(execution.attempts) and execution.attempts[0].error_kind == pb.ERROR_KIND_CANCELLED
