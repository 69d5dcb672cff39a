"""`make run`'s process group: api + WORKER_POOL_SIZE workers, a job runs, SIGTERM stops all."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from pathlib import Path

import grpc

from jobscheduler.v1 import job_service_pb2_grpc
from tests.support.jobs import create, http_job, wait_terminal
from tests.support.processes import settings_env
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[1]


async def test_run_local_starts_api_and_workers_and_stops_cleanly(settings, api, target, tmp_path):
    port = free_port()
    queue = f"run-local-{uuid.uuid4().hex[:8]}"
    env = settings_env(
        settings,
        GRPC_PORT=str(port),
        WORKER_POOL_SIZE="2",
        WORKER_QUEUE=queue,
        WORKER_HEALTH_FILE=str(tmp_path / "health"),
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "scripts" / "run_local.py"), env=env, stdout=out, stderr=out
        )
        try:

            async def logged(needle: str, count: int = 1) -> None:
                while log.read_text().count(needle) < count:
                    assert process.returncode is None, log.read_text()
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(logged("api listening"), 30)
            await asyncio.wait_for(logged("ready on queue", count=2), 30)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = job_service_pb2_grpc.JobServiceStub(channel)
                job = await create(stub, http_job(target.url(f"/ok/{queue}"), queue=queue))
                execution = await wait_terminal(stub, job.last_execution.id)
            assert execution.state == 5  # SUCCEEDED
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = log.read_text()
    assert "api stopped" in text
    assert text.count("worker") >= 2
    assert text.count("stopped") >= 3, text[-2000:]
