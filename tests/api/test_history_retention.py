"""History retention: UpdateQueue sets a queue's retention; the purge deletes finished executions
and dead letters past it (with their attempts), then the jobs left with nothing, and keeps what a
queue keeps for ever. The purge is run at a "now" hours ahead, on this test's queues only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobs_api.loops import HistoryPurgeLoop
from jobs_common.domain import KEEP_FOREVER, Retention
from jobs_common.store import HISTORY_PURGE_LOCK_KEY, HistoryPurge, PurgedBatch, QueueStore
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, field_violations, http_job, seconds, wait_terminal
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")

HOUR = 3600


@pytest.fixture
async def engine(settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(settings.database_url)
    yield engine
    await engine.dispose()


def _purge_loop(engine: AsyncEngine) -> HistoryPurgeLoop:
    """A purge of the queues that have a retention of their own: the default keeps for ever, so
    the other tests' history in the shared database is left alone."""
    return HistoryPurgeLoop(
        HistoryPurge(engine), QueueStore(engine), Retention(KEEP_FOREVER, KEEP_FOREVER), timedelta(hours=1), 500
    )


async def _purge_at(loop: HistoryPurgeLoop, now: datetime) -> PurgedBatch:
    """Passes until one is not full; another replica (the session api) may hold the lock a moment."""
    total = PurgedBatch()
    while True:
        batch = await loop.purge(now)
        if batch is None:
            continue
        total += batch
        if not batch.more:
            return total


async def _exists(stub, request) -> bool:
    """True when the read answers, False when it answers NOT_FOUND (any other error is raised)."""
    try:
        await request(stub)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True


async def _attempts_of(engine: AsyncEngine, execution_ids: list[str]) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                text("SELECT count(*) FROM attempts WHERE execution_id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": [uuid.UUID(i) for i in execution_ids]},
            )
            or 0
        )


async def test_history_and_dead_letters_go_after_their_retention_with_their_jobs(
    settings, channel, stub, target, engine, tmp_path: Path
):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    key = uuid.uuid4().hex[:8]
    queue, kept_queue = f"retained-{key}", f"kept-{key}"
    updated = await queues.UpdateQueue(
        qapi.UpdateQueueRequest(
            queue=qapi.Queue(name=queue, history_retention=seconds(HOUR), dead_letter_retention=seconds(2 * HOUR))
        )
    )
    assert updated.queue.history_retention.seconds == HOUR
    assert updated.queue.dead_letter_retention.seconds == 2 * HOUR
    # A queue that keeps everything (0): nothing of it goes, however old.
    await queues.UpdateQueue(
        qapi.UpdateQueueRequest(
            queue=qapi.Queue(name=kept_queue, history_retention=seconds(0), dead_letter_retention=seconds(0)),
            update_mask=FieldMask(paths=["history_retention", "dead_letter_retention"]),
        )
    )
    env = settings_env(settings.model_copy(update={"worker_queue": queue}), WORKER_HEALTH_FILE=str(tmp_path / "w"))
    kept_env = settings_env(
        settings.model_copy(update={"worker_queue": kept_queue}), WORKER_HEALTH_FILE=str(tmp_path / "k")
    )
    worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
    kept_worker = ChildProcess("jobs_worker", kept_env, tmp_path / "kept-worker.log")
    once = pb.RetryPolicy(max_attempts=1)
    try:
        await worker.wait_for_log("ready on queue")
        await kept_worker.wait_for_log("ready on queue")
        succeeded = await create(stub, http_job(target.url(f"/ok/{key}-s"), queue=queue))
        dead = await create(stub, http_job(target.url(f"/flaky/{key}-d?fail=1"), queue=queue, retry_policy=once))
        replayed = await create(stub, http_job(target.url(f"/flaky/{key}-r?fail=1"), queue=queue, retry_policy=once))
        kept = await create(stub, http_job(target.url(f"/ok/{key}-k"), queue=kept_queue))
        kept_dead = await create(
            stub, http_job(target.url(f"/flaky/{key}-kd?fail=1"), queue=kept_queue, retry_policy=once)
        )
        for job in (succeeded, dead, replayed, kept, kept_dead):
            await wait_terminal(stub, job.last_execution.id)
        [replay] = (
            await queues.ReplayDeadLetters(qapi.ReplayDeadLettersRequest(ids=[replayed.last_execution.id]))
        ).executions
        assert (await wait_terminal(stub, replay.id)).state == pb.EXECUTION_STATE_SUCCEEDED
    finally:
        await worker.stop()
        await kept_worker.stop()

    def job_exists(job: pb.Job):
        return _exists(stub, lambda s: s.GetJob(api.GetJobRequest(id=job.id)))

    def execution_exists(execution_id: str):
        return _exists(stub, lambda s: s.GetExecution(api.GetExecutionRequest(id=execution_id)))

    mine = [succeeded.last_execution.id, dead.last_execution.id, replayed.last_execution.id, replay.id]
    assert await _attempts_of(engine, mine) == 4
    loop = _purge_loop(engine)
    now = datetime.now(UTC)

    # Within both retentions: nothing goes.
    assert await _purge_at(loop, now + timedelta(minutes=30)) == PurgedBatch()

    # Past the history's: the succeeded execution and its job go, and so does the replayed dead
    # letter with its replay (it is history, not a dead letter); the dead letter stays.
    after_history = await _purge_at(loop, now + timedelta(hours=1, minutes=30))
    assert (after_history.executions, after_history.dead_letters, after_history.jobs) == (3, 0, 2)
    assert not await job_exists(succeeded)
    assert not await execution_exists(succeeded.last_execution.id)
    assert not await job_exists(replayed)
    assert not await execution_exists(replayed.last_execution.id)
    assert not await execution_exists(replay.id)
    assert await execution_exists(dead.last_execution.id)
    letters = await queues.ListDeadLetters(qapi.ListDeadLettersRequest(filter=qapi.DeadLetterFilter(queue=queue)))
    assert [e.id for e in letters.executions] == [dead.last_execution.id]
    assert await _attempts_of(engine, mine) == 1

    # Past the dead letters' too: the dead letter and its job go.
    after_dead = await _purge_at(loop, now + timedelta(hours=2, minutes=30))
    assert (after_dead.executions, after_dead.dead_letters, after_dead.jobs) == (0, 1, 1)
    assert not await job_exists(dead)
    assert await _attempts_of(engine, mine) == 0

    # A queue that keeps for ever keeps everything, a century on.
    assert await _purge_at(loop, now + timedelta(days=36_500)) == PurgedBatch()
    for job in (kept, kept_dead):
        assert await job_exists(job)
        assert await execution_exists(job.last_execution.id)


async def test_a_job_that_never_ran_goes_once_it_is_over_for_the_retention(channel, stub, target, engine):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    queue = f"never-ran-{uuid.uuid4().hex[:8]}"
    await queues.UpdateQueue(qapi.UpdateQueueRequest(queue=qapi.Queue(name=queue, history_retention=seconds(HOUR))))
    job = http_job(
        target.url("/ok/never"), queue=queue, schedule=pb.Schedule(cron=pb.CronSchedule(expression="0 0 1 1 *"))
    )
    created = await create(stub, job)
    active = await create(stub, http_job(target.url("/ok/active"), queue=queue, schedule=job.schedule))
    await stub.DeleteJob(api.DeleteJobRequest(id=created.id))
    loop = _purge_loop(engine)
    now = datetime.now(UTC)
    assert (await _purge_at(loop, now + timedelta(minutes=30))).jobs == 0
    assert (await _purge_at(loop, now + timedelta(hours=2))).jobs == 1
    assert not await _exists(stub, lambda s: s.GetJob(api.GetJobRequest(id=created.id)))
    assert await _exists(stub, lambda s: s.GetJob(api.GetJobRequest(id=active.id)))  # not over: kept


async def test_one_replica_purges_at_a_time(engine):
    history = HistoryPurge(engine)
    retention = Retention(timedelta(hours=1), timedelta(hours=1))
    async with engine.connect() as conn, conn.begin():
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": HISTORY_PURGE_LOCK_KEY})
        assert await history.purge("any-queue", retention, datetime.now(UTC), 10) is None
    assert await history.purge("any-queue", retention, datetime.now(UTC), 10) == PurgedBatch()


async def test_update_queue_masks_and_defaults(settings, channel):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    name = f"settings-{uuid.uuid4().hex[:8]}"
    default_history = int(settings.history_retention.total_seconds())
    default_dead = int(settings.dead_letter_retention.total_seconds())

    # An implied mask (AIP-134): only what is set changes.
    first = await queues.UpdateQueue(
        qapi.UpdateQueueRequest(queue=qapi.Queue(name=name, history_retention=seconds(60)))
    )
    assert (first.queue.history_retention.seconds, first.queue.dead_letter_retention.seconds) == (60, default_dead)
    second = await queues.UpdateQueue(
        qapi.UpdateQueueRequest(queue=qapi.Queue(name=name, dead_letter_retention=seconds(120)))
    )
    assert (second.queue.history_retention.seconds, second.queue.dead_letter_retention.seconds) == (60, 120)
    listed = {q.name: q for q in (await queues.ListQueues(qapi.ListQueuesRequest())).queues}
    assert listed[name].history_retention.seconds == 60
    # Named in the mask but unset: back to the default; pausing keeps the retention.
    paused = await queues.PauseQueue(qapi.PauseQueueRequest(name=name))
    assert paused.queue.dead_letter_retention.seconds == 120
    reset = await queues.UpdateQueue(
        qapi.UpdateQueueRequest(queue=qapi.Queue(name=name), update_mask=FieldMask(paths=["history_retention"]))
    )
    assert (reset.queue.history_retention.seconds, reset.queue.dead_letter_retention.seconds) == (default_history, 120)
    assert reset.queue.paused
    everything = await queues.UpdateQueue(
        qapi.UpdateQueueRequest(queue=qapi.Queue(name=name), update_mask=FieldMask(paths=["*"]))
    )
    assert everything.queue.dead_letter_retention.seconds == default_dead


@pytest.mark.parametrize(
    ("queue", "paths", "field", "message"),
    [
        (qapi.Queue(history_retention=seconds(60)), [], "queue.name", "required"),
        (qapi.Queue(name="Bad Name", history_retention=seconds(60)), [], "queue.name", "lowercase"),
        (qapi.Queue(name="q"), [], "update_mask", "nothing to change"),
        (qapi.Queue(name="q"), ["paused"], "update_mask", "PauseQueue"),
        (qapi.Queue(name="q"), ["colour"], "update_mask", "unknown field 'colour'"),
        (qapi.Queue(name="q", history_retention=seconds(-1)), [], "queue.history_retention", "negative"),
        (qapi.Queue(name="q", dead_letter_retention=seconds(1.5)), [], "queue.dead_letter_retention", "whole seconds"),
        (qapi.Queue(name="q", history_retention=seconds(10**10)), [], "queue.history_retention", "at most 36500 days"),
    ],
)
async def test_update_queue_rejects_what_it_cannot_do(channel, queue, paths, field, message):
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await queues.UpdateQueue(qapi.UpdateQueueRequest(queue=queue, update_mask=FieldMask(paths=paths)))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in field_violations(bad.value)[field]
