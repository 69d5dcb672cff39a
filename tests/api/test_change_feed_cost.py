"""The change feed costs nothing for jobs nobody watches: the triggers NOTIFY only for a job an
api process has marked watched (and not let expire); WatchJob marks it before its first read."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, http_job
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")


async def _listening(settings) -> tuple[asyncpg.Connection, list[dict[str, object]]]:
    dsn = make_url(settings.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    received: list[dict[str, object]] = []
    await conn.add_listener("job_events", lambda _c, _p, _ch, payload: received.append(json.loads(payload)))
    return conn, received


def _about(received: list[dict[str, object]], job_id: str) -> list[object]:
    return [event["state"] for event in received if event["job_id"] == job_id]


async def _run_on_own_worker(settings, tmp_path: Path, queue: str, until) -> None:
    env = settings_env(settings.model_copy(update={"worker_queue": queue}), WORKER_HEALTH_FILE=str(tmp_path / "w"))
    worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
    try:
        await asyncio.wait_for(until(), 30)
    finally:
        await worker.stop()


async def test_an_unwatched_job_runs_without_a_notification_and_a_watched_one_with_them(
    settings, stub, target, tmp_path: Path
):
    queue = f"feed-{uuid.uuid4().hex[:8]}"
    conn, received = await _listening(settings)
    try:
        unwatched = await create(stub, http_job(target.url("/ok/unwatched"), queue=queue))
        watched = await create(stub, http_job(target.url("/ok/watched"), queue=queue))
        stream = stub.WatchJob(api.WatchJobRequest(id=watched.id))
        await asyncio.wait_for(stream.read(), 5)  # the first answer: the job is marked watched

        async def both_done() -> None:
            while True:
                states = []
                for job in (unwatched, watched):
                    execution_id = job.last_execution.id
                    got = await stub.GetExecution(api.GetExecutionRequest(id=execution_id))
                    states.append(got.execution.state)
                if states == [pb.EXECUTION_STATE_SUCCEEDED] * 2:
                    return
                await asyncio.sleep(0.1)

        await _run_on_own_worker(settings, tmp_path, queue, both_done)
        await asyncio.sleep(0.5)  # notifications are sent at commit; give them time to arrive
        stream.cancel()
        assert _about(received, unwatched.id) == []
        assert "RUNNING" in _about(received, watched.id)
        assert "SUCCEEDED" in _about(received, watched.id)
    finally:
        await conn.close()


async def test_an_expired_watcher_row_does_not_count(settings, stub, target, tmp_path: Path):
    """A row left by an api process that died stops costing anything once it expires."""
    queue = f"feed-{uuid.uuid4().hex[:8]}"
    conn, received = await _listening(settings)
    try:
        job = await create(stub, http_job(target.url("/ok/expired"), queue=queue))
        await conn.execute(
            "INSERT INTO watched_jobs (job_id, watcher, expires_at) VALUES ($1, 'dead-api:1', now() - interval '1 s')",
            uuid.UUID(job.id),
        )

        async def done() -> None:
            while (
                await stub.GetExecution(api.GetExecutionRequest(id=job.last_execution.id))
            ).execution.state != pb.EXECUTION_STATE_SUCCEEDED:
                await asyncio.sleep(0.1)

        await _run_on_own_worker(settings, tmp_path, queue, done)
        await asyncio.sleep(0.5)
        assert _about(received, job.id) == []
    finally:
        await conn.execute("DELETE FROM watched_jobs WHERE watcher = 'dead-api:1'")
        await conn.close()
