"""``make bench-flow``: queue rate limits kept across workers, measured at the target.

Three workers serve each queue; the api and a local target run as their own processes, with the
bench's own database and Redis DB index (removed at the end).

1. **Rate.** A queue at ``--rate`` dispatches a second, burst ``--burst``; ``--rate-jobs`` jobs
   created at once (the target answers at once). From the target's arrival times: the calls per
   second over the run (whole seconds after the first), and how far the count of calls ever ran
   above the rate line drawn from the first call (the burst allows ``--burst``).
2. **Concurrency.** A queue of at most ``--slots`` open calls; ``--slot-jobs`` jobs of
   ``--call-s`` each. The target counts the calls open at once. ``--kill-at`` seconds in, one
   worker is SIGKILLed mid-call: its calls stop counting when its lease lapses and run again on
   the others (at least once). Printed: the most calls open at once, the calls made (the jobs plus
   the killed worker's, made twice), the calls open right after the kill, and how long until the
   target saw every slot in use again.
3. **Per key.** On a queue of its own, ``--key-b-jobs`` jobs of flow key B (``--key-parallelism``
   at once) alone, then ``--key-a-jobs`` jobs of key A (as many at once) created first and B's
   again right after: how long from B's creates until the target saw B's last call, both times,
   and the most of A's calls the target ever saw open at once. Calls last ``--key-call-s``.
4. **Priority.** ``--prio-jobs`` priority-0 jobs on a queue of one call at a time, then, once they
   run, one priority-9 job: how many priority-0 calls started between its create and its call.
5. **De-duplication.** 100 concurrent creates with one key and a DROP window: the jobs made;
   then 100 creates with one key, a DEBOUNCE window of ``--debounce-window-s``, one every 10 ms,
   each its own URL: the jobs made, the calls the target saw, which create's URL it was, and
   how long after the last create it came.
6. **Cost.** CreateJob-to-SUCCEEDED of ``--cost-jobs`` jobs, 64 CreateJobs in flight, on a queue
   without limits, on one with limits that never bind (10,000 a second, 100,000 open), and with
   each job under one of 16 flow keys whose limits never bind: the workers' CPU per job, the
   end-to-end rate and the dispatch latency (create to first attempt), each twice, alternating.

Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
from google.protobuf.duration_pb2 import Duration
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.__main__ import Cpu, _wait_succeeded, bench_settings, stop_and_drop
from jobs_common.migrate import migrate
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc, queue_service_pb2_grpc
from jobscheduler.v1 import queue_service_pb2 as qapi
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.processes import ChildProcess, settings_env


async def _set_limits(channel: grpc.aio.Channel, queue: str, limits: qapi.RateLimits) -> None:
    stub = queue_service_pb2_grpc.QueueServiceStub(channel)
    await stub.UpdateQueue(qapi.UpdateQueueRequest(queue=qapi.Queue(name=queue, rate_limits=limits)))


async def _workers(settings: Settings, logs: Path, queue: str, count: int) -> list[ChildProcess]:
    workers = []
    for i in range(count):
        own = settings.model_copy(
            update={
                "worker_queue": queue,
                "worker_metrics_port": services.free_port(),
                "worker_health_file": str(logs / f"worker-{queue}-{i}.health"),
            }
        )
        workers.append(ChildProcess("jobs_worker", settings_env(own), logs / f"worker-{queue}-{i}.log"))
    for worker in workers:
        await worker.wait_for_log("ready on queue")
    return workers


async def _create_all(
    stub: job_service_pb2_grpc.JobServiceAsyncStub,
    url: str,
    queue: str,
    count: int,
    flow: pb.FlowControl | None = None,
    priority: int = 0,
) -> None:
    job = pb.Job(http_request=pb.HttpRequest(url=url), queue=queue, flow_control=flow, priority=priority)
    requests = [api.CreateJobRequest(job=job)] * count
    for start in range(0, count, 1000):
        await stub.BatchCreateJobs(api.BatchCreateJobsRequest(requests=requests[start : start + 1000]))


async def _wait_arrivals(http: httpx.AsyncClient, target_url: str, count: int, timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        arrivals = sorted((await http.get(f"{target_url}/arrivals")).json())
        if len(arrivals) >= count or time.monotonic() > deadline:
            return arrivals
        await asyncio.sleep(0.2)


def rate_figures(arrivals: list[float], rate: float, burst: int) -> dict[str, Any]:
    """Calls per whole second after the first call, and the most the running count stood above
    the rate line from the first call (``burst`` is what the bucket allows)."""
    first = arrivals[0]
    seconds = int(arrivals[-1] - first)
    per_second = [sum(1 for t in arrivals if first + s <= t < first + s + 1) for s in range(seconds)]
    above = max(i + 1 - rate * (t - first) for i, t in enumerate(arrivals))
    steady = per_second[1:] or per_second
    return {
        "calls": len(arrivals),
        "seconds": round(arrivals[-1] - first, 2),
        "mean_per_second": round((len(arrivals) - burst) / (arrivals[-1] - first), 2) if seconds else None,
        "per_second": per_second,
        "steady_min_max": [min(steady), max(steady)] if steady else None,
        "most_above_rate_line": round(above, 2),
    }


async def measure_rate(
    channel: grpc.aio.Channel, settings: Settings, logs: Path, target_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    queue = "bench-rate"
    await _set_limits(channel, queue, qapi.RateLimits(max_dispatches_per_second=args.rate, max_burst_size=args.burst))
    workers = await _workers(settings, logs, queue, args.workers)
    try:
        async with httpx.AsyncClient() as http:
            await http.post(f"{target_url}/reset")
            await _create_all(job_service_pb2_grpc.JobServiceStub(channel), f"{target_url}/hit", queue, args.rate_jobs)
            timeout = args.rate_jobs / args.rate + 30
            arrivals = await _wait_arrivals(http, target_url, args.rate_jobs, timeout)
    finally:
        for worker in workers:
            await worker.stop()
    return {"rate": args.rate, "burst": args.burst, "workers": args.workers} | rate_figures(
        arrivals, args.rate, args.burst
    )


async def measure_slots(
    channel: grpc.aio.Channel, settings: Settings, logs: Path, target_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    queue = "bench-slots"
    await _set_limits(channel, queue, qapi.RateLimits(max_concurrent_dispatches=args.slots))
    workers = await _workers(settings, logs, queue, args.workers)
    samples: list[tuple[float, int]] = []
    try:
        async with httpx.AsyncClient() as http:
            await http.post(f"{target_url}/reset")
            url = f"{target_url}/hit?delay={args.call_s}"
            started = time.time()
            await _create_all(job_service_pb2_grpc.JobServiceStub(channel), url, queue, args.slot_jobs)
            killed_at = None
            wanted = args.slot_jobs
            deadline = time.monotonic() + args.slot_jobs * args.call_s / args.slots + 60
            while time.monotonic() < deadline:
                stats = (await http.get(f"{target_url}/stats")).json()
                samples.append((time.time(), stats["hits_open"]))
                if killed_at is None and time.time() - started >= args.kill_at:
                    held = await _held_by(settings, workers[0])
                    workers[0].process.send_signal(signal.SIGKILL)
                    await workers[0].wait()
                    killed_at, killed_calls = time.time(), held
                    wanted += held  # its calls are made again elsewhere
                arrivals = (await http.get(f"{target_url}/arrivals")).json()
                if len(arrivals) >= wanted and stats["hits_open"] == 0:
                    break
                await asyncio.sleep(0.05)
            stats = (await http.get(f"{target_url}/stats")).json()
            arrivals = sorted((await http.get(f"{target_url}/arrivals")).json())
    finally:
        for worker in workers[1:]:
            await worker.stop()
    if killed_at is None:
        raise RuntimeError("the concurrency phase ended before the kill: raise --slot-jobs")
    return {
        "max_concurrent_dispatches": args.slots,
        "workers": args.workers,
        "jobs": args.slot_jobs,
        "call_s": args.call_s,
        "most_open_at_once": stats["hits_open_max"],
        "calls_made": len(arrivals),
        "killed_worker_calls": killed_calls,
        "kill_after_s": round(killed_at - started, 2),
        "open_right_after_kill": next((open_ for at, open_ in samples if at > killed_at), None),
        "slots_all_open_again_after_s": _slot_back(samples, killed_at, args.slots),
        "seconds": round((arrivals[-1] if arrivals else started) - started, 2),
    }


def _slot_back(samples: list[tuple[float, int]], killed_at: float, slots: int) -> float | None:
    """Seconds from the kill until the target again saw ``slots`` calls open at once."""
    for at, open_ in samples:
        if at > killed_at and open_ >= slots:
            return round(at - killed_at, 2)
    return None


async def _held_by(settings: Settings, worker: ChildProcess) -> int:
    """How many calls the worker holds now (its held hash), read before it is killed."""
    redis = Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db)
    try:
        held = 0
        async for key in redis.scan_iter(match=f"jobs:held:*:{worker.pid}#*"):
            held += await cast(Awaitable[int], redis.hlen(key))
        return held
    finally:
        await redis.aclose()


async def _arrivals_of(http: httpx.AsyncClient, target_url: str, tag: str) -> list[float]:
    return sorted((await http.get(f"{target_url}/arrivals", params={"tag": tag})).json())


async def _until_arrived(http: httpx.AsyncClient, target_url: str, tag: str, count: int, timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    while len(arrived := await _arrivals_of(http, target_url, tag)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(arrived)}/{count} calls tagged {tag} within {timeout}s")
        await asyncio.sleep(0.02)
    return arrived


async def measure_keys(
    channel: grpc.aio.Channel, settings: Settings, logs: Path, target_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    queue = "bench-keys"
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    workers = await _workers(settings, logs, queue, args.workers)
    url = f"{target_url}/hit?delay={args.key_call_s}"
    a_flow = pb.FlowControl(key="A", max_concurrent=args.key_parallelism)
    b_flow = pb.FlowControl(key="B", max_concurrent=args.key_parallelism)
    try:
        async with httpx.AsyncClient() as http:
            await http.post(f"{target_url}/reset")
            started = time.time()
            await _create_all(stub, f"{url}&tag=B-alone", queue, args.key_b_jobs, b_flow)
            alone = await _until_arrived(http, target_url, "B-alone", args.key_b_jobs, 60)
            b_alone_s = alone[-1] - started
            await _create_all(stub, f"{url}&tag=A", queue, args.key_a_jobs, a_flow)
            started = time.time()
            await _create_all(stub, f"{url}&tag=B", queue, args.key_b_jobs, b_flow)
            beside = await _until_arrived(http, target_url, "B", args.key_b_jobs, 60)
            b_beside_s = beside[-1] - started
            await asyncio.sleep(args.key_call_s * 10)  # A goes on: its open calls are watched a while longer
            stats = (await http.get(f"{target_url}/stats")).json()
            a_started = len(await _arrivals_of(http, target_url, "A"))
    finally:
        for worker in workers:
            worker.process.send_signal(signal.SIGKILL)  # A's backlog is not drained
            await worker.wait()
    return {
        "workers": args.workers,
        "parallelism_per_key": args.key_parallelism,
        "call_s": args.key_call_s,
        "key_a_jobs_waiting": args.key_a_jobs,
        "key_b_jobs": args.key_b_jobs,
        "b_last_call_after_s_alone": round(b_alone_s, 3),
        "b_last_call_after_s_beside_a": round(b_beside_s, 3),
        "b_most_open_at_once": max(stats["tags"]["B"]["open_max"], stats["tags"]["B-alone"]["open_max"]),
        "a_most_open_at_once": stats["tags"]["A"]["open_max"],
        "a_calls_started_meanwhile": a_started,
    }


async def measure_priority(
    channel: grpc.aio.Channel, settings: Settings, logs: Path, target_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    queue = "bench-priority"
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    await _set_limits(channel, queue, qapi.RateLimits(max_concurrent_dispatches=1))
    workers = await _workers(settings, logs, queue, args.workers)
    url = f"{target_url}/hit?delay={args.prio_call_s}"
    try:
        async with httpx.AsyncClient() as http:
            await http.post(f"{target_url}/reset")
            await _create_all(stub, f"{url}&tag=low", queue, args.prio_jobs)
            await _until_arrived(http, target_url, "low", 3, 60)  # they run, one at a time
            created = time.time()
            await _create_all(stub, f"{url}&tag=high", queue, 1, priority=9)
            [high] = await _until_arrived(http, target_url, "high", 1, 60)
            low = await _arrivals_of(http, target_url, "low")
    finally:
        for worker in workers:
            worker.process.send_signal(signal.SIGKILL)
            await worker.wait()
    return {
        "max_concurrent_dispatches": 1,
        "priority_0_jobs": args.prio_jobs,
        "call_s": args.prio_call_s,
        "priority_0_calls_started_between_create_and_call": sum(1 for t in low if created < t < high),
        "priority_9_call_after_s": round(high - created, 3),
        "priority_0_calls_before_it": sum(1 for t in low if t < high),
    }


async def measure_deduplication(
    channel: grpc.aio.Channel, settings: Settings, logs: Path, target_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    queue = "bench-dedup"
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    [worker] = await _workers(settings, logs, queue, 1)
    window = Duration()
    try:
        window.FromTimedelta(timedelta(seconds=60))
        drop = api.Deduplication(key="drop", window=window)
        job = pb.Job(http_request=pb.HttpRequest(url=f"{target_url}/hit?tag=drop"), queue=queue)
        dropped = await asyncio.gather(
            *(stub.CreateJob(api.CreateJobRequest(job=job, deduplication=drop)) for _ in range(100))
        )
        window = Duration()
        window.FromTimedelta(timedelta(seconds=args.debounce_window_s))
        debounce = api.Deduplication(key="debounce", window=window, mode=api.DEDUPLICATION_MODE_DEBOUNCE)
        debounced = []
        async with httpx.AsyncClient() as http:
            await http.post(f"{target_url}/reset")
            for i in range(100):
                job = pb.Job(http_request=pb.HttpRequest(url=f"{target_url}/hit?tag=debounce-{i}"), queue=queue)
                debounced.append(await stub.CreateJob(api.CreateJobRequest(job=job, deduplication=debounce)))
                last_create = time.time()
                await asyncio.sleep(0.01)
            await asyncio.sleep(args.debounce_window_s + 3)
            stats = (await http.get(f"{target_url}/stats")).json()
            called = sorted(tag for tag in stats["tags"] if tag.startswith("debounce-"))
            arrivals = [t for tag in called for t in await _arrivals_of(http, target_url, tag)]
    finally:
        await worker.stop()
    return {
        "drop_creates": 100,
        "drop_jobs_made": len({answer.job.id for answer in dropped}),
        "debounce_creates": 100,
        "debounce_window_s": args.debounce_window_s,
        "debounce_jobs_made": len({answer.job.id for answer in debounced}),
        "debounce_calls": len(arrivals),
        "debounce_called_definitions": called,
        "debounce_call_after_last_create_s": round(arrivals[0] - last_create, 3) if arrivals else None,
    }


async def _dispatch_latency_ms(engine: AsyncEngine, label: str) -> dict[str, float]:
    """p50 and p99 of create → first attempt's start of the labelled jobs' executions."""
    query = text(
        "SELECT percentile_cont(ARRAY[0.5, 0.99])"
        " WITHIN GROUP (ORDER BY extract(epoch FROM a.start_time - e.create_time))"
        " FROM executions e JOIN jobs j ON j.id = e.job_id"
        " JOIN attempts a ON a.execution_id = e.id AND a.number = 1"
        " WHERE j.labels @> CAST(:labels AS jsonb)"
    )
    async with engine.connect() as conn:
        p50, p99 = (await conn.execute(query, {"labels": json.dumps({"bench": label})})).scalar_one()
    return {"dispatch_p50_ms": round(p50 * 1000, 1), "dispatch_p99_ms": round(p99 * 1000, 1)}


async def measure_cost(
    channel: grpc.aio.Channel, settings: Settings, logs: Path, target_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    engine = create_async_engine(settings.database_url)
    stubs = [job_service_pb2_grpc.JobServiceStub(channel)]
    never_binding = qapi.RateLimits(
        max_dispatches_per_second=10_000, max_burst_size=100_000, max_concurrent_dispatches=100_000
    )
    variants: list[tuple[str, qapi.RateLimits | None, int]] = [
        ("without limits", None, 0),
        ("with limits that never bind", never_binding, 0),
        ("with 16 flow keys whose limits never bind", None, 16),
    ]
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in variants}
    try:
        for round_ in range(2):
            for index, (label, limits, keys) in enumerate(variants):
                queue = f"bench-cost-{round_}-{index}"
                if limits is not None:
                    await _set_limits(channel, queue, limits)
                [worker] = await _workers(settings, logs, queue, 1)
                try:
                    cpu = Cpu(worker.pid, ())
                    mark = f"{queue}"
                    started, cpu_before = time.time(), cpu.seconds()
                    await _create_many_on(stubs, args.cost_jobs, f"{target_url}/hit", queue, mark, keys)
                    last_end = await _wait_succeeded(engine, mark, args.cost_jobs, timeout=300)
                    worker_cpu = cpu.seconds() - cpu_before
                finally:
                    await worker.stop()
                runs[label].append(
                    {
                        "end_to_end_jobs_per_second": round(args.cost_jobs / (last_end - started), 1),
                        "worker_cpu_ms_per_job": round(worker_cpu * 1000 / args.cost_jobs, 3),
                    }
                    | await _dispatch_latency_ms(engine, mark)
                )
    finally:
        await engine.dispose()
    return runs


async def _create_many_on(
    stubs: list[job_service_pb2_grpc.JobServiceAsyncStub], count: int, url: str, queue: str, label: str, keys: int = 0
) -> None:
    pending = iter(range(count))

    async def client(stub: job_service_pb2_grpc.JobServiceAsyncStub) -> None:
        for i in pending:
            job = pb.Job(http_request=pb.HttpRequest(url=url), queue=queue, labels={"bench": label})
            if keys:
                job.flow_control.CopyFrom(
                    pb.FlowControl(key=f"k{i % keys}", max_concurrent=100_000, max_dispatches_per_second=10_000)
                )
            await stub.CreateJob(api.CreateJobRequest(job=job))

    await asyncio.gather(*(client(stubs[0]) for _ in range(64)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    database = await services.create_database()
    redis_db = await services.claim_redis_db(f"bench-flow-{os.getpid()}")
    logs = Path(tempfile.mkdtemp(prefix="jobs-bench-flow-"))
    settings = bench_settings(database, redis_db, logs)
    env = settings_env(settings)
    engine = create_async_engine(settings.database_url)
    processes: list[ChildProcess] = []
    result: dict[str, Any] = {"logs": str(logs)}
    try:
        await migrate(settings)
        target_port = services.free_port()
        target_url = f"http://127.0.0.1:{target_port}"
        processes.append(ChildProcess("bench.target", env, logs / "target.log", args=["--port", str(target_port)]))
        processes.append(ChildProcess("jobs_api", env, logs / "api.log"))
        await processes[-1].wait_for_log("api listening")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
            if not args.skip_rate:
                result["rate"] = await measure_rate(channel, settings, logs, target_url, args)
            if not args.skip_slots:
                result["concurrency"] = await measure_slots(channel, settings, logs, target_url, args)
            if not args.skip_keys:
                result["per_key"] = await measure_keys(channel, settings, logs, target_url, args)
            if not args.skip_priority:
                result["priority"] = await measure_priority(channel, settings, logs, target_url, args)
            if not args.skip_dedup:
                result["deduplication"] = await measure_deduplication(channel, settings, logs, target_url, args)
            if not args.skip_cost:
                result["cost"] = await measure_cost(channel, settings, logs, target_url, args)
    finally:
        await stop_and_drop(processes, engine, database, redis_db)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--rate-jobs", type=int, default=300)
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--slot-jobs", type=int, default=30)
    parser.add_argument("--call-s", type=float, default=2.0)
    parser.add_argument("--kill-at", type=float, default=5.0, help="seconds into the concurrency phase")
    parser.add_argument("--key-a-jobs", type=int, default=5000)
    parser.add_argument("--key-b-jobs", type=int, default=10)
    parser.add_argument("--key-parallelism", type=int, default=2)
    parser.add_argument("--key-call-s", type=float, default=0.2)
    parser.add_argument("--prio-jobs", type=int, default=2000)
    parser.add_argument("--prio-call-s", type=float, default=0.05)
    parser.add_argument("--debounce-window-s", type=float, default=3.0)
    parser.add_argument("--cost-jobs", type=int, default=3000)
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--skip-slots", action="store_true")
    parser.add_argument("--skip-keys", action="store_true")
    parser.add_argument("--skip-priority", action="store_true")
    parser.add_argument("--skip-dedup", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result, indent=2))
    Path("bench-results").mkdir(exist_ok=True)
    path = Path("bench-results") / f"flow-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"saved to {path}")


if __name__ == "__main__":
    main()
