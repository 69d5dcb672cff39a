"""``make bench``: end-to-end throughput and dispatch latency of job-scheduler, with bare arq as
the reference, in one run on this machine. Prints a table and JSON (also saved to bench-results/).
Phases: CreateJob throughput end to end; BatchCreateJobs (10 calls of 1,000); dispatch latency;
the same with calls held open; fire-time accuracy and the scheduler's cost. ``--throughput-only``
keeps the first two and bare arq; ``--processes N`` runs N apis (one port) and N workers.

Everything runs as separate processes, as in production: a local target (answers 200 at once),
the api, one worker, and, for the reference, a bare arq worker whose job does nothing. The bench
uses its own PostgreSQL database and a free Redis DB index, and removes both when done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.arq_noop import DONE_KEY
from bench.dependencies import Counters, cost
from bench.scheduling import measure_fire_accuracy, measure_scheduler_cost
from jobs_common.arq_extension import create_redis_pool
from jobs_common.migrate import migrate
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.processes import ChildProcess, settings_env

RESULTS_DIR = Path("bench-results")


@dataclass
class Cpu:
    """CPU seconds (user + system) a process (and the ``others``) have used so far."""

    pid: int
    others: tuple[int, ...] = ()

    def seconds(self) -> float:
        total = 0
        for pid in (self.pid, *self.others):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p90": cuts[89], "p99": cuts[98], "max": max(values)}


async def _create_many(
    stubs: list[job_service_pb2_grpc.JobServiceAsyncStub], count: int, concurrency: int, url: str, label: str
) -> list[float]:
    """CreateJob ``count`` times with ``concurrency`` calls in flight, spread over the stubs'
    connections; returns each call's seconds."""
    durations: list[float] = []
    pending = iter(range(count))

    async def client(stub: job_service_pb2_grpc.JobServiceAsyncStub) -> None:
        for _ in pending:
            job = pb.Job(http_request=pb.HttpRequest(url=url), labels={"bench": label})
            started = time.perf_counter()
            await stub.CreateJob(api.CreateJobRequest(job=job))
            durations.append(time.perf_counter() - started)

    await asyncio.gather(*(client(stubs[i % len(stubs)]) for i in range(concurrency)))
    return durations


async def _wait_succeeded(engine: AsyncEngine, label: str, count: int, timeout: float) -> float:
    """Waits until ``count`` executions of the labelled jobs succeeded; returns the last end_time."""
    query = text(
        "SELECT count(*) FILTER (WHERE e.state = 'SUCCEEDED'), count(*) FILTER (WHERE e.state = 'DEAD'),"
        " extract(epoch FROM max(e.end_time)) FROM executions e JOIN jobs j ON j.id = e.job_id"
        " WHERE j.labels @> CAST(:labels AS jsonb)"
    )
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            succeeded, dead, last_end = (await conn.execute(query, {"labels": json.dumps({"bench": label})})).one()
        if dead:
            raise RuntimeError(f"{dead} benchmark executions went DEAD")
        if succeeded >= count:
            return float(last_end)
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {succeeded}/{count} succeeded within {timeout}s")
        await asyncio.sleep(0.1)


async def measure_throughput(
    stubs: list[job_service_pb2_grpc.JobServiceAsyncStub],
    engine: AsyncEngine,
    url: str,
    count: int,
    concurrency: int,
    cpus: dict[str, Cpu],
    redis: Redis | None = None,
) -> dict[str, Any]:
    label = f"throughput-{uuid.uuid4().hex[:8]}"
    counters = await Counters.read(redis, engine) if redis is not None else None
    cpu_before = {name: cpu.seconds() for name, cpu in cpus.items()}
    started = time.time()
    create_durations = await _create_many(stubs, count, concurrency, url, label)
    created = time.time()
    last_end = await _wait_succeeded(engine, label, count, timeout=600)
    elapsed = last_end - started
    cpu_used = {name: cpu.seconds() - cpu_before[name] for name, cpu in cpus.items()}
    dependencies = {}
    if redis is not None and counters is not None:
        dependencies = cost(counters, await Counters.read(redis, engine), count, elapsed)
    return {
        "jobs": count,
        "client_concurrency": concurrency,
        "create_seconds": round(created - started, 3),
        "create_per_second": round(count / (created - started), 1),
        "create_latency_ms": {k: round(v * 1000, 2) for k, v in _percentiles(create_durations).items()},
        "end_to_end_seconds": round(elapsed, 3),
        "end_to_end_jobs_per_second": round(count / elapsed, 1),
        "cpu_ms_per_job": {name: round(seconds * 1000 / count, 3) for name, seconds in cpu_used.items()},
        # What the run cost Redis and PostgreSQL, per job and per second at the end-to-end rate.
        "dependencies": dependencies,
    }


async def _batch_create_many(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, batches: int, size: int, concurrency: int, url: str, label: str
) -> list[float]:
    """``batches`` BatchCreateJobs of ``size`` labelled jobs, ``concurrency`` calls in flight;
    returns each call's seconds."""
    job = pb.Job(http_request=pb.HttpRequest(url=url), labels={"bench": label})
    message = api.BatchCreateJobsRequest(requests=[api.CreateJobRequest(job=job)] * size)
    durations: list[float] = []
    pending = iter(range(batches))

    async def client() -> None:
        for _ in pending:
            started = time.perf_counter()
            await stub.BatchCreateJobs(message)
            durations.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return durations


async def measure_batch_create(
    stub: job_service_pb2_grpc.JobServiceAsyncStub,
    engine: AsyncEngine,
    url: str,
    batches: int,
    size: int,
    concurrency: int,
) -> dict[str, Any]:
    """``batches`` BatchCreateJobs of ``size`` jobs, ``concurrency`` calls in flight: jobs
    committed per second (the worker runs them meanwhile); then waits for them all to succeed."""
    label = f"batch-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    durations = await _batch_create_many(stub, batches, size, concurrency, url, label)
    elapsed = time.perf_counter() - started
    await _wait_succeeded(engine, label, batches * size, timeout=600)
    return {
        "batches": batches,
        "jobs_per_batch": size,
        "calls_in_flight": concurrency,
        "jobs_per_second": round(batches * size / elapsed, 1),
        "call_ms": {k: round(v * 1000, 1) for k, v in _percentiles(durations).items()},
    }


async def measure_dispatch_latency(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, target_url: str, count: int, interval: float
) -> dict[str, Any]:
    """One CreateJob at a time, ``interval`` apart: CreateJob return → target receives the call."""
    async with httpx.AsyncClient() as http:
        await http.get(f"{target_url}/receipts")  # forget earlier runs
        returned: dict[str, float] = {}
        for _ in range(count):
            job = pb.Job(http_request=pb.HttpRequest(url=f"{target_url}/hit"), labels={"bench": "latency"})
            response = await stub.CreateJob(api.CreateJobRequest(job=job))
            returned[response.job.last_execution.id] = time.time()
            await asyncio.sleep(interval)
        deadline = time.monotonic() + 30
        receipts: dict[str, float] = {}
        while len(receipts) < count and time.monotonic() < deadline:
            receipts.update((await http.get(f"{target_url}/receipts")).json())
            await asyncio.sleep(0.1)
    missing = set(returned) - set(receipts)
    if missing:
        raise RuntimeError(f"{len(missing)} calls never reached the target")
    latencies = [(receipts[key] - returned[key]) * 1000 for key in returned]
    return {
        "jobs": count,
        "interval_ms": interval * 1000,
        "dispatch_latency_ms": {k: round(v, 2) for k, v in _percentiles(latencies).items()},
    }


async def measure_with_calls_in_flight(
    stub: job_service_pb2_grpc.JobServiceAsyncStub,
    target_url: str,
    in_flight: int,
    worker: Cpu,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Holds ``in_flight`` long calls open, then measures what they cost the worker while they
    wait (CPU) and what they do to new jobs (dispatch latency); then releases them, so none
    reaches its 90-second timeout (and is retried) during a later phase."""
    await _create_many([stub], in_flight, args.concurrency, f"{target_url}/hold", "in-flight")
    async with httpx.AsyncClient() as http:
        await _wait_held(http, target_url, lambda held: held >= in_flight)  # all open and waiting
        cpu_before, started = worker.seconds(), time.monotonic()
        await asyncio.sleep(5)
        idle_cpu = (worker.seconds() - cpu_before) / (time.monotonic() - started)
        latency = await measure_dispatch_latency(stub, target_url, args.latency_jobs // 2, args.latency_interval * 2)
        await http.post(f"{target_url}/release")
        await _wait_held(http, target_url, lambda held: held == 0)
    return {
        "calls_in_flight": in_flight,
        "worker_cpu_while_waiting_percent": round(idle_cpu * 100, 1),
        **latency,
    }


async def _wait_held(http: httpx.AsyncClient, target_url: str, done: Callable[[int], bool]) -> None:
    while not done((await http.get(f"{target_url}/stats")).json()["held_open"]):
        await asyncio.sleep(0.2)


async def measure_arq_noop(
    settings: Settings, env: dict[str, str], logs: Path, count: int, concurrency: int
) -> dict[str, Any]:
    queue = f"bench:arq-noop:{uuid.uuid4().hex[:8]}"
    worker = ChildProcess("bench.arq_noop", env, logs / "arq-noop.log", args=["--queue", queue])
    redis = await create_redis_pool(settings)
    try:
        await worker.wait_for_log("Starting worker")
        await redis.set(DONE_KEY, 0)
        cpu = Cpu(worker.pid)
        cpu_before = cpu.seconds()
        pending = iter(range(count))

        async def client() -> None:
            for _ in pending:
                await redis.enqueue_job("noop", _queue_name=queue)

        started = time.time()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        while int(await redis.get(DONE_KEY) or 0) < count:
            await asyncio.sleep(0.01)
        elapsed = time.time() - started
        return {
            "jobs": count,
            "client_concurrency": concurrency,
            "seconds": round(elapsed, 3),
            "jobs_per_second": round(count / elapsed, 1),
            "cpu_ms_per_job": round((cpu.seconds() - cpu_before) * 1000 / count, 3),
        }
    finally:
        await worker.stop()
        await redis.aclose()


def bench_settings(database: str, redis_db: int, logs: Path, **overrides: Any) -> Settings:
    """The processes' settings: the bench's own database and Redis index, free ports."""
    defaults: dict[str, Any] = {
        "environment": "development",  # no tokens: the bench's own processes on loopback
        "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
        "database_auto_create": False,
        "redis_db": redis_db,
        "grpc_host": "127.0.0.1",
        "grpc_port": services.free_port(),
        "worker_health_file": str(logs / "worker.health"),
        "worker_drain_timeout": timedelta(seconds=5),
        "egress_allow_networks": "127.0.0.0/8",  # the benchmark's target
        # Not measured here; free ports so a running `make run` is not disturbed.
        "metrics_port": services.free_port(),
        "worker_metrics_port": services.free_port(),
    }
    return Settings(**(defaults | overrides))


async def stop_and_drop(processes: list[ChildProcess], engine: AsyncEngine, database: str, redis_db: int) -> None:
    """A run's teardown: its processes (last started first), its engine, database and Redis index."""
    for process in reversed(processes):
        await process.stop()
    await engine.dispose()
    await services.drop_database(database)
    await services.release_redis_db(redis_db)


def start_processes(settings: Settings, logs: Path, count: int) -> tuple[list[ChildProcess], list[ChildProcess]]:
    """``count`` api processes sharing the gRPC port, and ``count`` workers; each its own metrics
    port and log."""
    apis, workers = [], []
    for i in range(count):
        own = settings.model_copy(
            update={
                "grpc_reuse_port": count > 1,
                "metrics_port": settings.metrics_port if i == 0 else services.free_port(),
                "worker_metrics_port": settings.worker_metrics_port if i == 0 else services.free_port(),
                "worker_health_file": settings.worker_health_file + ("" if i == 0 else f".{i}"),
            }
        )
        suffix = "" if i == 0 else f"-{i}"
        apis.append(ChildProcess("jobs_api", settings_env(own), logs / f"api{suffix}.log"))
        workers.append(ChildProcess("jobs_worker", settings_env(own), logs / f"worker{suffix}.log"))
    return apis, workers


async def run(args: argparse.Namespace) -> dict[str, Any]:
    database = await services.create_database()
    redis_db = await services.claim_redis_db(f"bench-{os.getpid()}")
    logs = Path(tempfile.mkdtemp(prefix="jobs-bench-"))
    processes: list[ChildProcess] = []
    settings = bench_settings(database, redis_db, logs)
    env = settings_env(settings)
    engine = create_async_engine(settings.database_url)
    try:
        await migrate(settings)
        target_port = services.free_port()
        # Before the api starts, so no other scheduler competes for the due jobs.
        scheduler_cost = (
            {}
            if args.throughput_only
            else await measure_scheduler_cost(
                engine, args.stored_jobs, settings.scheduler_batch_size, f"http://127.0.0.1:{target_port}/hit"
            )
        )
        target_url = f"http://127.0.0.1:{target_port}"
        target = ChildProcess("bench.target", env, logs / "target.log", args=["--port", str(target_port)])
        processes.append(target)
        apis, workers = start_processes(settings, logs, args.processes)
        processes += apis + workers
        for process in apis:
            await process.wait_for_log("api listening")
        for process in workers:
            await process.wait_for_log("ready on queue")
        async with contextlib.AsyncExitStack() as channels:
            # Each channel is its own connection (the kernel gives each to one api process).
            stubs = [
                job_service_pb2_grpc.JobServiceStub(
                    await channels.enter_async_context(
                        grpc.aio.insecure_channel(
                            f"127.0.0.1:{settings.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
                        )
                    )
                )
                for _ in range(args.channels)
            ]
            stub = stubs[0]
            # Warm-up (connections, prepared statements), not measured.
            await measure_throughput(stubs, engine, f"{target_url}/hit", 200, args.concurrency, {})
            cpus = {
                "api": Cpu(apis[0].pid, tuple(p.pid for p in apis[1:])),
                "worker": Cpu(workers[0].pid, tuple(p.pid for p in workers[1:])),
            }
            counted = Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db)
            try:
                throughput = await measure_throughput(
                    stubs, engine, f"{target_url}/hit", args.jobs, args.concurrency, cpus, counted
                )
            finally:
                await counted.aclose()
            batch_create = await measure_batch_create(
                stub, engine, f"{target_url}/hit", args.batches, args.batch_size, args.batch_concurrency
            )
            if args.throughput_only:
                latency = in_flight = fire = {}
            else:
                latency = await measure_dispatch_latency(stub, target_url, args.latency_jobs, args.latency_interval)
                in_flight = await measure_with_calls_in_flight(stub, target_url, args.in_flight, cpus["worker"], args)
                # With the 100,000 recurring jobs of the cost measurement still stored.
                fire = await _measure_fire_times(stub, engine, target_url, args.fire_jobs)
        reference = await measure_arq_noop(settings, env, logs, args.jobs, args.concurrency)
    finally:
        await stop_and_drop(processes, engine, database, redis_db)
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {
            "api_processes": args.processes,
            "worker_processes": args.processes,
            "client_connections": args.channels,
            "worker_max_concurrent_jobs": settings.worker_max_concurrent_jobs,
            "queue_poll_interval_ms": settings.queue_poll_interval.total_seconds() * 1000,
        },
        "job_scheduler": throughput,
        "batch_create": batch_create,
        "dispatch": latency,
        "with_calls_in_flight": in_flight,
        "bare_arq_noop": reference,
        "fire_accuracy": fire,
        "scheduler_cost": scheduler_cost,
        "ratio_end_to_end_vs_bare_arq": round(
            throughput["end_to_end_jobs_per_second"] / reference["jobs_per_second"], 3
        ),
        "logs": str(logs),
    }


async def _measure_fire_times(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, engine: AsyncEngine, target_url: str, count: int
) -> dict[str, Any]:
    """Fire-time accuracy: ``count`` jobs all due in the same second (one-off, then recurring),
    then ``count`` spread over a minute (half one-off, half recurring)."""
    results: dict[str, Any] = {}
    for recurring in (False, True):
        due = time.time() + 10
        measured = await measure_fire_accuracy(stub, engine, target_url, [(due, recurring)] * count)
        for kind, figures in measured.items():
            results[f"same_second_{kind}"] = figures
    start = time.time() + 10
    spread = [(start + 60 * i / count, i % 2 == 1) for i in range(count)]
    for kind, figures in (await measure_fire_accuracy(stub, engine, target_url, spread)).items():
        results[f"spread_over_a_minute_{kind}"] = figures
    return results


def _table(result: dict[str, Any]) -> str:
    js, dispatch, arq = result["job_scheduler"], result["dispatch"], result["bare_arq_noop"]
    create = js["create_latency_ms"]
    used = result["settings"]
    rows = [
        (
            "processes",
            f"{used['api_processes']} api, {used['worker_processes']} worker; "
            f"{used['client_connections']} client connection(s)",
        ),
        (
            "end-to-end throughput",
            f"{js['end_to_end_jobs_per_second']} jobs/s ({js['jobs']} jobs, HTTP call + full history)",
        ),
        ("CreateJob throughput", f"{js['create_per_second']} calls/s ({js['client_concurrency']} in flight)"),
        ("CreateJob latency", f"p50 {create['p50']} ms, p99 {create['p99']} ms (under that load)"),
        ("CPU per job", ", ".join(f"{k} {v} ms" for k, v in js["cpu_ms_per_job"].items())),
        (
            "BatchCreateJobs",
            f"{result['batch_create']['jobs_per_second']} jobs/s ({result['batch_create']['batches']} calls of "
            f"{result['batch_create']['jobs_per_batch']}, {result['batch_create']['calls_in_flight']} in flight; "
            f"call p50 {result['batch_create']['call_ms']['p50']} ms)",
        ),
        ("bare arq no-op drain", f"{arq['jobs_per_second']} jobs/s, CPU {arq['cpu_ms_per_job']} ms/job"),
        ("ratio vs bare arq", f"{result['ratio_end_to_end_vs_bare_arq']}"),
    ]
    if not dispatch:  # --throughput-only
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
    lat = dispatch["dispatch_latency_ms"]
    flight = result["with_calls_in_flight"]
    flight_lat = flight["dispatch_latency_ms"]
    rows += [
        (
            "dispatch latency",
            f"p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"
            f" ({dispatch['jobs']} jobs, one per {dispatch['interval_ms']:.0f} ms)",
        ),
        (
            f"with {flight['calls_in_flight']} calls in flight",
            f"worker CPU {flight['worker_cpu_while_waiting_percent']}% while they wait; new jobs' dispatch "
            f"p50 {flight_lat['p50']} ms, p99 {flight_lat['p99']} ms",
        ),
    ]
    for name, fire in result["fire_accuracy"].items():
        lag = fire["fire_lag_ms"]
        rows.append(
            (
                f"fire lag, {name.replace('_', ' ')}",
                f"p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms ({fire['jobs']} {fire['kind']})",
            )
        )
    cost = result["scheduler_cost"]
    for key, value in cost.items():
        if key.startswith("with_"):
            rows.append(
                (
                    f"scheduler pass, {key.replace('_', ' ')}",
                    f"idle p50 {value['idle_pass_ms']['p50']} ms; {cost['batch']} due ticks in "
                    f"{value['due_pass']['ms']} ms ({value['due_pass']['ms_per_tick']} ms/tick)",
                )
            )
    rows.append(("due query uses ix_jobs_next_run_time", str(cost["due_query_uses_index"])))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--latency-interval", type=float, default=0.05)
    parser.add_argument("--in-flight", type=int, default=400, help="long calls held open (< worker concurrency)")
    parser.add_argument("--fire-jobs", type=int, default=1000, help="scheduled jobs per fire-accuracy phase")
    parser.add_argument("--stored-jobs", type=int, default=100_000, help="recurring jobs stored for the cost phase")
    parser.add_argument("--processes", type=int, default=1, help="api processes (one port) and worker processes")
    parser.add_argument("--channels", type=int, default=1, help="client connections the CreateJobs share")
    parser.add_argument("--throughput-only", action="store_true", help="only the throughput phases and bare arq")
    parser.add_argument("--batches", type=int, default=10, help="BatchCreateJobs calls of the batch phase")
    parser.add_argument("--batch-size", type=int, default=1000, help="jobs per BatchCreateJobs call")
    parser.add_argument("--batch-concurrency", type=int, default=2, help="BatchCreateJobs calls in flight")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(_table(result))
    print(json.dumps(result, indent=2))
    print(f"saved to {path}")


if __name__ == "__main__":
    main()
