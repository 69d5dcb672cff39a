"""`make run`'s process group: API_PROCESSES apis on one port + WORKER_POOL_SIZE workers + the console, a job
runs, connections reach every api, SIGTERM stops all."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import uuid
from pathlib import Path

import grpc
import httpx

from jobscheduler.v1 import job_service_pb2_grpc
from tests.support.jobs import create, http_job, wait_terminal
from tests.support.processes import settings_env
from tests.support.services import free_port, free_port_run

ROOT = Path(__file__).resolve().parents[1]


def _created_jobs(metrics: str) -> float:
    """CreateJob calls an api answered, from its /metrics."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("grpc_server_handled_total{") and 'grpc_method="CreateJob"' in line
    )


async def test_run_local_starts_apis_and_workers_and_stops_cleanly(settings, api, target, tmp_path):
    port = free_port()
    # The workers' metrics on base, base+1; the apis' on base+2 and (the next above all) base+3.
    base = free_port_run(4)
    queue = f"run-local-{uuid.uuid4().hex[:8]}"
    env = settings_env(
        settings,
        GRPC_PORT=str(port),
        API_PROCESSES="2",
        METRICS_PORT=str(base + 2),
        WORKER_METRICS_PORT=str(base),
        WORKER_POOL_SIZE="2",
        WORKER_QUEUE=queue,
        WORKER_HEALTH_FILE=str(tmp_path / "health"),
        CONSOLE_PORT=str(free_port()),
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

            await asyncio.wait_for(logged("api listening", count=2), 30)
            await asyncio.wait_for(logged("ready on queue", count=2), 30)
            await asyncio.wait_for(logged("console on http"), 30)
            # 16 connections, each its own channel: the kernel gives each to one of the two apis
            # (all 16 to the same one: odds of 1 in 32,768).
            jobs = []
            for i in range(16):
                async with grpc.aio.insecure_channel(
                    f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
                ) as channel:
                    stub = job_service_pb2_grpc.JobServiceStub(channel)
                    jobs.append(await create(stub, http_job(target.url(f"/ok/{queue}-{i}"), queue=queue)))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = job_service_pb2_grpc.JobServiceStub(channel)
                for job in jobs:
                    assert (await wait_terminal(stub, job.last_execution.id)).state == 5  # SUCCEEDED
            listed = re.search(
                r"api process\(es\) on \S+ \(pids [\d, ]+; metrics on ports ([\d, ]+)\)", log.read_text()
            )
            assert listed is not None, log.read_text()
            ports = [int(p) for p in listed.group(1).split(", ")]
            async with httpx.AsyncClient() as http:
                served = [_created_jobs((await http.get(f"http://127.0.0.1:{p}/metrics")).text) for p in ports]
            assert sum(served) == 16
            async with httpx.AsyncClient() as http:
                page = await http.get(f"http://127.0.0.1:{env['CONSOLE_PORT']}/")
            assert page.status_code == 200
            assert f'data-queue="{queue}"' in page.text  # the console reached the apis
            assert all(served), served
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
