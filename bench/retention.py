"""``make bench-retention``: what the history purge can delete, and whether the history stays the
same size while jobs keep coming.

1. **Purge rate.** ``--executions`` finished one-off jobs (one execution and one attempt each,
   3 % dead letters) on a database of the script's own, all past their retention; the purge
   (:class:`~jobs_common.store.HistoryPurge`, batches of HISTORY_PURGE_BATCH_SIZE) deletes them
   all. Prints executions (with their attempts and jobs) deleted per second.
2. **Soak.** The api and one worker with HISTORY_RETENTION and DEAD_LETTER_RETENTION of
   ``--retention`` seconds and the purge every second; CreateJob as fast as ``--concurrency``
   clients go for ``--seconds``, each job answered 200 by a local target. Every ``--sample``
   seconds: the rows and the on-disk size (table, indexes and TOAST) of executions, attempts and
   jobs. Printed: the size at the start and the end of the last third, and its growth per 1,000
   jobs created then (a history kept whole grows by the size of every row: the ``--no-purge`` run).

   Deleted rows leave space that VACUUM makes reusable; PostgreSQL's autovacuum does that by
   default. Where the server runs with autovacuum off (this development machine's does), the soak
   stands in for it with a plain ``VACUUM`` of the three tables every ``--vacuum-every`` seconds
   (0: never, to show what happens without).

Figures, not pass/fail. Uses its own database and Redis DB index, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.__main__ import Cpu, bench_settings, start_processes, stop_and_drop
from bench.query_plans import populate
from jobs_common.domain import Retention
from jobs_common.migrate import migrate
from jobs_common.store import HistoryPurge
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.processes import ChildProcess, settings_env

RESULTS_DIR = Path("bench-results")
_TABLES = ("executions", "attempts", "jobs")


async def measure_purge_rate(executions: int, batch_size: int) -> dict[str, Any]:
    database = await services.create_database()
    settings = bench_settings(database, 0, Path(tempfile.gettempdir()))
    engine = create_async_engine(settings.database_url)
    try:
        await migrate(settings)
        queue = await populate(engine, executions, executions, 0)
        async with engine.begin() as conn:  # one-off jobs that are over, as they are once run
            await conn.execute(text("UPDATE jobs SET state = 'COMPLETED', update_time = now() - interval '30 days'"))
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
            queues = int(await conn.scalar(text("SELECT count(DISTINCT queue) FROM jobs")) or 0)
        history = HistoryPurge(engine)
        retention = Retention(timedelta(seconds=1), timedelta(seconds=1))
        now = datetime.now(UTC) + timedelta(days=1)
        deleted = dead = jobs = batches = 0
        started = time.perf_counter()
        for name in await history.queues():
            while True:
                batch = await history.purge(name, retention, now, batch_size)
                assert batch is not None, "nothing else purges this database"
                batches += 1
                deleted, dead, jobs = deleted + batch.executions, dead + batch.dead_letters, jobs + batch.jobs
                if not batch.more:
                    break
        seconds = time.perf_counter() - started
        async with engine.connect() as conn:
            left = {t: int(await conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in _TABLES}
    finally:
        await engine.dispose()
        await services.drop_database(database)
    return {
        "populated_executions": executions,
        "queues": queues,
        "queue_queried": queue,
        "batch_size": batch_size,
        "batches": batches,
        "seconds": round(seconds, 2),
        "executions_deleted": deleted + dead,
        "dead_letters_deleted": dead,
        "jobs_deleted": jobs,
        "executions_per_second": round((deleted + dead) / seconds),
        "rows_left": left,
    }


async def _sizes(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    async with engine.connect() as conn:
        return {
            table: {
                "rows": int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0),
                "bytes": int(await conn.scalar(text("SELECT pg_total_relation_size(:t)"), {"t": table}) or 0),
            }
            for table in _TABLES
        }


async def _autovacuum_on(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return str(await conn.scalar(text("SHOW autovacuum"))) == "on"


async def soak(
    seconds: float, retention_s: float, concurrency: int, sample_s: float, vacuum_every: float, purge: bool = True
) -> dict[str, Any]:
    database = await services.create_database()
    redis_db = await services.claim_redis_db(f"bench-retention-{os.getpid()}")
    logs = Path(tempfile.mkdtemp(prefix="jobs-bench-retention-"))
    settings = bench_settings(
        database,
        redis_db,
        logs,
        history_retention=timedelta(seconds=retention_s),
        dead_letter_retention=timedelta(seconds=retention_s),
        history_purge_interval=timedelta(seconds=1),
        history_purge_enabled=purge,
    )
    env = settings_env(settings)
    engine = create_async_engine(settings.database_url)
    processes: list[ChildProcess] = []
    samples: list[dict[str, Any]] = []
    created = 0
    try:
        await migrate(settings)
        target_port = services.free_port()
        target = ChildProcess("bench.target", env, logs / "target.log", args=["--port", str(target_port)])
        [api_process], [worker] = start_processes(settings, logs, 1)
        processes += [target, api_process, worker]
        await api_process.wait_for_log("api listening")
        await worker.wait_for_log("ready on queue")
        cpus = {"api": Cpu(api_process.pid), "worker": Cpu(worker.pid)}
        url = f"http://127.0.0.1:{target_port}/hit"
        started = time.monotonic()
        stop = started + seconds
        cpu_start = {name: cpu.seconds() for name, cpu in cpus.items()}

        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)

            async def client() -> None:
                nonlocal created
                while time.monotonic() < stop:
                    await stub.CreateJob(api.CreateJobRequest(job=pb.Job(http_request=pb.HttpRequest(url=url))))
                    created += 1

            async def sampler() -> None:
                while time.monotonic() < stop:
                    await asyncio.sleep(sample_s)
                    sizes = await _sizes(engine)
                    samples.append({"t": round(time.monotonic() - started), "created": created, **sizes})
                    print(
                        f"  t={samples[-1]['t']:>4} s  created {created:>7,}  "
                        + "  ".join(
                            f"{t} {sizes[t]['rows']:>6,} rows {sizes[t]['bytes'] / 2**20:6.1f} MiB" for t in _TABLES
                        ),
                        flush=True,
                    )

            async def vacuum() -> None:
                """What autovacuum would do, on a server that runs without it."""
                async with engine.connect() as conn:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                    while vacuum_every and not autovacuum and time.monotonic() < stop:
                        await asyncio.sleep(vacuum_every)
                        await conn.execute(text("VACUUM executions, attempts, jobs"))

            autovacuum = await _autovacuum_on(engine)
            await asyncio.gather(sampler(), vacuum(), *(client() for _ in range(concurrency)))
        cpu = {name: round(cpus[name].seconds() - cpu_start[name], 1) for name in cpus}
        purge_log = [line for line in (logs / "api.log").read_text().splitlines() if "history-purge" in line]
    finally:
        await stop_and_drop(processes, engine, database, redis_db)
    last_third = samples[2 * len(samples) // 3 :] or samples[-1:]
    first, end = last_third[0], samples[-1]

    def total(sample: dict[str, Any]) -> int:
        return sum(sample[t]["bytes"] for t in _TABLES)

    return {
        "seconds": seconds,
        "retention_seconds": retention_s,
        "concurrency": concurrency,
        "server_autovacuum": autovacuum,
        "soak_vacuum_every_seconds": 0 if autovacuum else vacuum_every,
        "purge": purge,
        "jobs_created": created,
        "jobs_per_second": round(created / seconds, 1),
        "cpu_seconds": cpu,
        "last_third_from": {"t": first["t"], "bytes": total(first)},
        "last_third_to": {"t": end["t"], "bytes": total(end)},
        "last_third_kib_per_1000_jobs": round(
            (total(end) - total(first)) / 1024 / max(end["created"] - first["created"], 1) * 1000, 1
        ),
        "purge_log_lines": len(purge_log),
        "samples": samples,
        "logs": str(logs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=1_000_000, help="history the purge-rate phase deletes")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=300, help="soak length")
    parser.add_argument("--retention", type=float, default=30, help="soak retention, seconds")
    parser.add_argument("--concurrency", type=int, default=4, help="CreateJob clients (4: below one worker's rate)")
    parser.add_argument("--sample", type=float, default=15)
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--no-purge", action="store_true", help="soak without the purge (the reference)")
    parser.add_argument("--vacuum-every", type=float, default=30, help="VACUUM period if autovacuum is off (0: none)")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    if not args.skip_rate:
        result["purge_rate"] = rate = asyncio.run(measure_purge_rate(args.executions, args.batch_size))
        print(
            f"purge: {rate['executions_deleted']:,} executions ({rate['dead_letters_deleted']:,} dead letters), "
            f"{rate['jobs_deleted']:,} jobs in {rate['seconds']} s over {rate['queues']} queues: "
            f"{rate['executions_per_second']:,} executions/s (batches of {rate['batch_size']}); "
            f"left {rate['rows_left']}"
        )
    if not args.skip_soak:
        result["soak"] = run = asyncio.run(
            soak(args.seconds, args.retention, args.concurrency, args.sample, args.vacuum_every, not args.no_purge)
        )
        print(
            f"soak: {run['jobs_created']:,} jobs in {run['seconds']:.0f} s ({run['jobs_per_second']}/s), retention "
            f"{run['retention_seconds']:.0f} s; the three tables {run['last_third_from']['bytes'] / 2**20:.1f} MiB "
            f"at t={run['last_third_from']['t']} s, {run['last_third_to']['bytes'] / 2**20:.1f} MiB at "
            f"t={run['last_third_to']['t']} s ({run['last_third_kib_per_1000_jobs']} KiB per 1,000 jobs created); "
            f"CPU s {run['cpu_seconds']}; autovacuum "
            + ("on" if run["server_autovacuum"] else f"off, VACUUM every {run['soak_vacuum_every_seconds']} s")
        )
    out = RESULTS_DIR / f"retention-{uuid.uuid4().hex[:8]}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
