"""``make bench-lists``: what one list call costs the api in memory (issue 18, finding 4).

``--jobs`` one-off jobs with ``--body-kib`` bodies on a queue no worker serves, on a database of
the script's own; then, one after the other, ListJobs with page_size 1000 in the default view, in
the FULL view (every page, following next_page_token), and ListExecutions and ListDeadLetters of
the same rows (their executions made dead letters by hand). For each: the pages and bytes
answered, the largest page, the api's resident memory before and after and its peak (VmHWM,
which only grows: read the calls in order). The client accepts answers of any size, so a server
without a byte budget shows what it costs.

Figures, not pass/fail. Uses its own database and Redis DB index, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.__main__ import bench_settings, stop_and_drop
from jobs_common.migrate import migrate
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.processes import ChildProcess, settings_env

QUEUE = "bench-lists"  # no worker serves it


def _memory(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) // 1024
    return {"rss_mib": fields["VmRSS"], "peak_mib": fields["VmHWM"]}


async def _list_all(pid: int, call: Callable[[str], Awaitable[Any]]) -> dict[str, Any]:
    """Every page of one listing, with its sizes and the api's memory around it."""
    before = _memory(pid)
    started = time.perf_counter()
    pages, token, sizes, items = 0, "", [], 0
    while True:
        page = await call(token)
        pages += 1
        sizes.append(page.ByteSize())
        items += sum(len(getattr(page, name)) for name in ("jobs", "executions") if hasattr(page, name))
        token = page.next_page_token
        if not token:
            break
    return {
        "pages": pages,
        "items": items,
        "answer_mib": round(sum(sizes) / 2**20, 1),
        "largest_page_mib": round(max(sizes) / 2**20, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "api_before": before,
        "api_after": _memory(pid),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    database = await services.create_database()
    redis_db = await services.claim_redis_db(f"bench-lists-{os.getpid()}")
    logs = Path(tempfile.mkdtemp(prefix="jobs-bench-lists-"))
    settings = bench_settings(database, redis_db, logs)
    engine = create_async_engine(settings.database_url)
    processes: list[ChildProcess] = []
    unlimited = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    try:
        await migrate(settings)
        process = ChildProcess("jobs_api", settings_env(settings), logs / "api.log")
        processes.append(process)
        await process.wait_for_log("api listening")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}", options=unlimited) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            queues = queue_service_pb2_grpc.QueueServiceStub(channel)
            body = os.urandom(args.body_kib * 1024)
            for _ in range(args.jobs):
                job = pb.Job(http_request=pb.HttpRequest(url="http://127.0.0.1:9/never", body=body), queue=QUEUE)
                await jobs.CreateJob(api.CreateJobRequest(job=job))
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE executions SET state = 'DEAD', end_time = now()"))
            result: dict[str, Any] = {"jobs": args.jobs, "body_kib": args.body_kib, "api_idle": _memory(process.pid)}

            def list_jobs(view: int) -> Callable[[str], Awaitable[Any]]:
                return lambda token: jobs.ListJobs(api.ListJobsRequest(page_size=1000, page_token=token, view=view))  # type: ignore[arg-type]

            def dead_letters(token: str) -> Awaitable[Any]:
                request = queue_service_pb2.ListDeadLettersRequest(page_size=1000, page_token=token)
                return queues.ListDeadLetters(request)

            some_job = (await jobs.ListJobs(api.ListJobsRequest(page_size=1))).jobs[0].id

            def executions(token: str) -> Awaitable[Any]:
                request = api.ListExecutionsRequest(job_id=some_job, page_size=1000, page_token=token)
                return jobs.ListExecutions(request)

            result["ListJobs (default view)"] = await _list_all(process.pid, list_jobs(api.JOB_VIEW_UNSPECIFIED))
            result["ListJobs (FULL)"] = await _list_all(process.pid, list_jobs(api.JOB_VIEW_FULL))
            result["ListDeadLetters"] = await _list_all(process.pid, dead_letters)
            result["ListExecutions (one job)"] = await _list_all(process.pid, executions)
            return result
    finally:
        await stop_and_drop(processes, engine, database, redis_db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--body-kib", type=int, default=1024)
    result = asyncio.run(run(parser.parse_args()))
    for name, value in result.items():
        print(f"{name}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
