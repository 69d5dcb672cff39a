"""``make bench-scale``: what long calls held open cost one worker process, at 1,000, 2,500, 5,000
and 10,000 calls in flight (``--levels``), each level opened from none and released after.

A local target (aiohttp) holds every ``/hold`` call open until the bench releases them; one api
and one worker (``WORKER_MAX_CONCURRENT_JOBS`` above the largest level) run as separate
processes. At each level, once the calls are open (or ``--open-timeout`` has passed), the bench
measures over ``--window`` seconds: the worker's CPU and RSS, Redis commands/s (the server's
``total_commands_processed``) and PostgreSQL rows written/s (``pg_stat_database`` of the bench's
database); then what the calls do to new work: the dispatch latency of jobs created one at a
time, and how late ``run_at`` jobs spread over a few seconds fire. Before the levels, a burst:
``--burst`` one-off jobs due in the same second, whose calls the target answers after 1 s, and how
late each call started. With the largest level's calls still open, ``--cancels`` of them are
cancelled one at a time (CancelExecution's return → the worker recorded the aborted attempt), and
then the worker gets SIGTERM and the target answers every call 2 s later: how long the drain took
and what became of the calls. Prints a table and JSON (saved to bench-results/). Figures, not
pass/fail: the machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf.duration_pb2 import Duration
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.__main__ import RESULTS_DIR, Cpu, bench_settings, measure_dispatch_latency
from bench.scheduling import measure_fire_accuracy
from jobs_common.migrate import migrate
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.processes import ChildProcess, settings_env

BATCH = 1000  # jobs per BatchCreateJobs
CALL_TIMEOUT = Duration(seconds=300)  # the longest a job may take; the target holds until released


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def _rows_written(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            text(
                "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database"
                " WHERE datname = current_database()"
            )
        )
    return int(value or 0)


async def _redis_commands(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


def _lease_lapses(worker_log: Path) -> int:
    """How often the worker found its own lease lapsed (it missed heartbeats), from its log."""
    return worker_log.read_text(errors="replace").count("this worker's lease lapsed")


async def _open_calls(http: httpx.AsyncClient, target_url: str) -> int:
    return int((await http.get(f"{target_url}/stats")).json()["held_open"])


def _held_label(level: int) -> str:
    return f"held-{level}"


async def _hold_more(stub: job_service_pb2_grpc.JobServiceAsyncStub, target_url: str, count: int) -> None:
    """Creates ``count`` jobs whose call the target holds open, BATCH per BatchCreateJobs,
    labelled ``bench: held-<count>``."""
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        requests = [
            api.CreateJobRequest(
                job=pb.Job(
                    http_request=pb.HttpRequest(url=f"{target_url}/hold"),
                    timeout=CALL_TIMEOUT,
                    labels={"bench": _held_label(count)},
                )
            )
            for _ in range(size)
        ]
        await stub.BatchCreateJobs(api.BatchCreateJobsRequest(requests=requests))


async def measure_cancels(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, engine: AsyncEngine, level: int, count: int
) -> dict[str, Any]:
    """CancelExecution of ``count`` of the ``level`` held calls, one at a time: from its return
    until the worker recorded the attempt's end (after aborting the call)."""
    async with engine.connect() as conn:
        ids = (
            await conn.scalars(
                text(
                    "SELECT e.id::text FROM executions e JOIN jobs j ON j.id = e.job_id"
                    " WHERE e.state = 'RUNNING' AND j.labels @> CAST(:labels AS jsonb) LIMIT :count"
                ),
                {"labels": json.dumps({"bench": _held_label(level)}), "count": count},
            )
        ).all()
    ended = text("SELECT end_time IS NOT NULL FROM attempts WHERE execution_id = CAST(:id AS uuid)")
    seconds: list[float] = []
    for execution_id in ids:
        await stub.CancelExecution(api.CancelExecutionRequest(id=execution_id))
        returned = time.monotonic()
        while time.monotonic() - returned < 30:
            async with engine.connect() as conn:
                if await conn.scalar(ended, {"id": execution_id}):
                    break
            await asyncio.sleep(0.01)
        seconds.append(time.monotonic() - returned)
    return {"cancelled": len(ids), "seconds_to_abort": [round(x, 3) for x in sorted(seconds)]}


async def measure_drain(
    engine: AsyncEngine, target_url: str, worker: ChildProcess, level: int, held: int, answer_after_s: float
) -> dict[str, Any]:
    """SIGTERM to the worker holding ``held`` calls of the ``level``; the target answers them
    ``answer_after_s`` later. How long the worker took to exit, and what became of the calls."""
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(answer_after_s)
    async with httpx.AsyncClient() as http:
        await http.post(f"{target_url}/release")
    exit_code = await worker.wait(timeout=300)
    seconds = time.monotonic() - started
    async with engine.connect() as conn:
        states: dict[str, int] = dict(
            (
                await conn.execute(
                    text(
                        "SELECT e.state, count(*) FROM executions e JOIN jobs j ON j.id = e.job_id"
                        " WHERE j.labels @> CAST(:labels AS jsonb) GROUP BY e.state"
                    ),
                    {"labels": json.dumps({"bench": _held_label(level)})},
                )
            ).all()
        )
    return {
        "calls_held": held,
        "answered_after_sigterm_s": answer_after_s,
        "seconds_to_exit": round(seconds, 1),
        "exit_code": exit_code,
        "held_jobs_by_state": states,
    }


async def release_all(target_url: str) -> None:
    """Has the target answer every held call; waits until their outcomes are recorded."""
    async with httpx.AsyncClient() as http:
        await http.post(f"{target_url}/release")
        deadline = time.monotonic() + 120
        while await _open_calls(http, target_url) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
    await asyncio.sleep(5)  # their outcomes recorded, before the next level opens


async def measure_level(
    stub: job_service_pb2_grpc.JobServiceAsyncStub,
    engine: AsyncEngine,
    redis: Redis,
    target_url: str,
    worker: Cpu,
    worker_log: Path,
    level: int,
    idle_rss: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Opens ``level`` calls from none and measures; the caller then releases them all
    (:func:`release_all`): no call outlives its level, so none reaches the 300-second job
    timeout however long the run."""
    lapses = _lease_lapses(worker_log)
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        await _hold_more(stub, target_url, level)
        opened = await _open_calls(http, target_url)
        while opened < level and time.monotonic() - started < args.open_timeout:
            await asyncio.sleep(0.5)
            opened = await _open_calls(http, target_url)
        open_seconds = time.monotonic() - started
        await asyncio.sleep(3)  # let the opening burst settle
        cpu, commands, rows = worker.seconds(), await _redis_commands(redis), await _rows_written(engine)
        window_started = time.monotonic()
        await asyncio.sleep(args.window)
        window = time.monotonic() - window_started
        cpu_percent = (worker.seconds() - cpu) / window * 100
        commands_per_second = (await _redis_commands(redis) - commands) / window
        rows_per_second = (await _rows_written(engine) - rows) / window
        rss = _rss_bytes(worker.pid)
    # A saturated worker may not start the probes at all: that is a figure too, not a crash.
    try:
        dispatch = (await measure_dispatch_latency(stub, target_url, args.probe_jobs, 0.1))["dispatch_latency_ms"]
    except RuntimeError as exc:
        dispatch = {"p50": None, "p99": None, "error": str(exc)}
    due = time.time() + 4
    try:
        fire = (
            await measure_fire_accuracy(
                stub, engine, target_url, [(due + 3 * i / args.probe_jobs, False) for i in range(args.probe_jobs)]
            )
        )["one_off"]["fire_lag_ms"]
    except RuntimeError as exc:
        fire = {"p99": None, "error": str(exc)}
    return {
        "calls_wanted": level,
        "calls_open": opened,
        "seconds_to_open": round(open_seconds, 1),
        "worker_rss_mib": round(rss / 2**20, 1),
        "rss_kib_per_call": round((rss - idle_rss) / opened / 1024, 1) if opened else None,
        "worker_cpu_percent_while_waiting": round(cpu_percent, 1),
        "redis_commands_per_second": round(commands_per_second),
        "postgres_rows_written_per_second": round(rows_per_second),
        "dispatch_latency_ms": dispatch,
        "fire_lag_ms": fire,
        "worker_lease_lapses": _lease_lapses(worker_log) - lapses,
    }


async def measure_burst(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, engine: AsyncEngine, target_url: str, count: int
) -> dict[str, Any]:
    """``count`` one-off jobs due in the same second on an idle worker, each call answered after
    1 s: how late each call reached the target."""
    due = time.time() + 5 + count / 200  # CreateJob, 32 at a time, makes a few hundred a second
    figures = (await measure_fire_accuracy(stub, engine, target_url, [(due, False)] * count, answer_after_s=1))[
        "one_off"
    ]
    await asyncio.sleep(3)  # their outcomes recorded, before the levels open
    return {"jobs": count, "target_answers_after_s": 1, "start_lag_ms": figures["fire_lag_ms"]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = sorted(int(level) for level in args.levels.split(","))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The worker and the target inherit it: each holds one socket per call.
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    database = await services.create_database()
    redis_db = await services.claim_redis_db(f"bench-scale-{os.getpid()}")
    logs = Path(tempfile.mkdtemp(prefix="jobs-bench-scale-"))
    processes: list[ChildProcess] = []
    settings = bench_settings(
        database,
        redis_db,
        logs,
        worker_max_concurrent_jobs=max(levels[-1], args.burst) + 200,
        worker_drain_timeout=Settings().worker_drain_timeout,  # the default: the drain is measured
    )
    env = settings_env(settings)
    engine = create_async_engine(settings.database_url)
    redis = Redis(db=redis_db)
    results: list[dict[str, Any]] = []
    cancels: dict[str, Any] | None = None
    drain: dict[str, Any] | None = None
    try:
        await migrate(settings)
        target_port = services.free_port()
        target_url = f"http://127.0.0.1:{target_port}"
        target = ChildProcess("bench.target", env, logs / "target.log", args=["--port", str(target_port)])
        api_process = ChildProcess("jobs_api", env, logs / "api.log")
        processes += [target, api_process]
        await api_process.wait_for_log("api listening")
        worker_process = ChildProcess("jobs_worker", env, logs / "worker.log")
        processes.append(worker_process)
        await worker_process.wait_for_log("ready on queue")
        worker = Cpu(worker_process.pid)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            await measure_dispatch_latency(stub, target_url, 20, 0.05)  # warm-up, not measured
            idle_rss = _rss_bytes(worker.pid)
            burst = await measure_burst(stub, engine, target_url, args.burst) if args.burst else None
            if burst is not None:
                lag = burst["start_lag_ms"]
                print(
                    f"burst: {args.burst:,} due in the same second started p50 {lag['p50']} ms,"
                    f" p99 {lag['p99']} ms, max {lag['max']} ms late",
                    flush=True,
                )
            print(HEADER, flush=True)
            for level in levels:
                result = await measure_level(
                    stub, engine, redis, target_url, worker, logs / "worker.log", level, idle_rss, args
                )
                results.append(result)
                print(_row(result), flush=True)
                if level < levels[-1] or not level:
                    await release_all(target_url)
            if levels[-1]:  # with the largest level's calls held open
                cancels = await measure_cancels(stub, engine, levels[-1], args.cancels)
                print(f"CancelExecution → call aborted, recorded (s): {cancels['seconds_to_abort']}", flush=True)
                held = results[-1]["calls_open"]
                drain = await measure_drain(engine, target_url, worker_process, levels[-1], held, 2.0)
                print(f"SIGTERM drain: {drain}", flush=True)
    finally:
        for process in reversed(processes):
            await process.stop()
        await redis.aclose()
        await engine.dispose()
        await services.drop_database(database)
        await services.release_redis_db(redis_db)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {
            "worker_processes": 1,
            "worker_max_concurrent_jobs": settings.worker_max_concurrent_jobs,
            "worker_lease_ttl_s": settings.worker_lease_ttl.total_seconds(),
            "worker_heartbeat_interval_s": settings.worker_heartbeat_interval.total_seconds(),
            "nofile": hard,
        },
        "worker_idle_rss_mib": round(idle_rss / 2**20, 1),
        "burst": burst,
        "levels": results,
        "cancel_with_largest_level_open": cancels,
        "sigterm_drain_with_largest_level_open": drain,
        "logs": str(logs),
    }


HEADER = (
    "| calls wanted | open | s to open | RSS MiB | KiB/call | worker CPU % | Redis cmd/s | PG rows/s "
    "| dispatch p50 / p99 ms | fire lag p99 ms | lease lapses |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def _row(level: dict[str, Any]) -> str:
    dispatch, fire = level["dispatch_latency_ms"], level["fire_lag_ms"]
    if dispatch["p50"] is None:
        dispatch = {"p50": "not started", "p99": dispatch["error"]}
    if fire["p99"] is None:
        fire = {"p99": fire["error"]}
    return (
        f"| {level['calls_wanted']:,} | {level['calls_open']:,} | {level['seconds_to_open']} "
        f"| {level['worker_rss_mib']} | {level['rss_kib_per_call'] or '—'} "
        f"| {level['worker_cpu_percent_while_waiting']} "
        f"| {level['redis_commands_per_second']:,} | {level['postgres_rows_written_per_second']:,} "
        f"| {dispatch['p50']} / {dispatch['p99']} | {fire['p99']} | {level['worker_lease_lapses']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--levels", default="0,1000,2500,5000,10000", help="calls in flight, comma separated (0: an idle worker)"
    )
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured at each level")
    parser.add_argument("--open-timeout", type=float, default=120.0, help="seconds a level may take to open")
    parser.add_argument("--probe-jobs", type=int, default=30, help="new jobs timed at each level")
    parser.add_argument("--burst", type=int, default=1000, help="jobs due in the same second (0: no burst)")
    parser.add_argument("--cancels", type=int, default=10, help="held calls cancelled at the largest level")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"bench-scale-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"saved to {path}")


if __name__ == "__main__":
    main()
