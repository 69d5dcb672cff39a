"""``python -m bench.api_alone``: the api's own cost, with no worker to share the machine with.

One api process (its own database and Redis index, as make bench's) takes ``--calls`` CreateJobs
with ``--concurrency`` in flight, then ``--batches`` BatchCreateJobs of ``--batch-size`` with
``--batch-concurrency`` in flight; nothing runs the jobs (their executions wait in Redis). It
prints each phase's rate, latency and the api's CPU per job. ``--profile-seconds N`` has py-spy
(if on PATH or at ``--py-spy``) record the api for N seconds of each phase into the log folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import create_async_engine

from bench.__main__ import Cpu, _batch_create_many, _create_many, _percentiles, bench_settings, stop_and_drop
from jobs_common.migrate import migrate
from jobscheduler.v1 import job_service_pb2_grpc
from tests.support import services
from tests.support.processes import ChildProcess, settings_env

_URL = "http://127.0.0.1:9/hit"  # never called: no worker runs


async def _phase(
    name: str, jobs: int, cpu: Cpu, work: Callable[[], Awaitable[list[float]]], spy: list[str] | None, logs: Path
) -> dict[str, Any]:
    profiler = await asyncio.create_subprocess_exec(*spy, "-o", str(logs / f"profile-{name}.txt")) if spy else None
    before, started = cpu.seconds(), time.perf_counter()
    durations = await work()
    seconds, used = time.perf_counter() - started, cpu.seconds() - before
    if profiler is not None:
        await profiler.wait()
    return {
        "jobs": jobs,
        "jobs_per_second": round(jobs / seconds, 1),
        "call_ms": {k: round(v * 1000, 2) for k, v in _percentiles(durations).items()},
        "api_cpu_ms_per_job": round(used * 1000 / jobs, 4),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    database = await services.create_database()
    redis_db = await services.claim_redis_db("bench-api-alone")
    logs = Path(tempfile.mkdtemp(prefix="jobs-api-alone-"))
    settings = bench_settings(database, redis_db, logs)
    engine = create_async_engine(settings.database_url)
    processes: list[ChildProcess] = []
    try:
        await migrate(settings)
        apiproc = ChildProcess("jobs_api", settings_env(settings), logs / "api.log")
        processes.append(apiproc)
        await apiproc.wait_for_log("api listening")
        spy = None
        if args.profile_seconds:  # _phase adds the output file, named after the phase
            spy = [args.py_spy, "record", "-r", "100", "-d", str(args.profile_seconds), "-f", "raw"]
            spy += ["--nonblocking", "-p", str(apiproc.pid)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            await _create_many([stub], 500, args.concurrency, _URL, "warm-up")
            await _batch_create_many(stub, 2, args.batch_size, 1, _URL, "warm-up")
            cpu = Cpu(apiproc.pid)
            results = {
                "create_job": await _phase(
                    "create",
                    args.calls,
                    cpu,
                    lambda: _create_many([stub], args.calls, args.concurrency, _URL, "api-alone"),
                    spy,
                    logs,
                ),
                "batch_create_jobs": await _phase(
                    "batch",
                    args.batches * args.batch_size,
                    cpu,
                    lambda: _batch_create_many(
                        stub, args.batches, args.batch_size, args.batch_concurrency, _URL, "api-alone"
                    ),
                    spy,
                    logs,
                ),
            }
        results["settings"] = vars(args) | {"logs": str(logs)}
        return results
    finally:
        await stop_and_drop(processes, engine, database, redis_db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-concurrency", type=int, default=2)
    parser.add_argument("--profile-seconds", type=int, default=0)
    parser.add_argument("--py-spy", default="py-spy")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
