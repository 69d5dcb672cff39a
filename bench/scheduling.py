"""Scheduling figures for ``make bench``: how close to their time jobs fire, and what a scheduler
pass costs with 100,000 recurring jobs stored."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs_common.store import TickStore
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["measure_fire_accuracy", "measure_scheduler_cost"]


def _stamp(epoch: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(epoch * 1e9))
    return stamp


def _ms(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(statistics.median(values), 1),
        "p99": round(cuts[98], 1),
        "max": round(max(values), 1),
        "min": round(min(values), 1),
    }


async def measure_fire_accuracy(
    stub: job_service_pb2_grpc.JobServiceAsyncStub,
    engine: AsyncEngine,
    target_url: str,
    jobs: list[tuple[float, bool]],
    concurrency: int = 32,
    answer_after_s: float = 0,
) -> dict[str, dict[str, Any]]:
    """Creates one job per (fire time, recurring): a one-off ``run_at`` job, or an hourly interval
    job whose ``start_time`` is its first tick, whose call the target answers after
    ``answer_after_s``. Measures, per job, when the target received the call minus when it was
    due; returns the figures per kind ("one_off", "recurring")."""
    path = f"/hit?delay={answer_after_s}" if answer_after_s else "/hit"
    label = f"fire-{uuid.uuid4().hex[:8]}"
    pending = iter(jobs)
    fire_times = [due for due, _ in jobs]

    async def client() -> None:
        for due, recurring in pending:
            job = pb.Job(http_request=pb.HttpRequest(url=f"{target_url}{path}"), labels={"bench": label})
            if recurring:
                job.schedule.interval.CopyFrom(Duration(seconds=3600))
                job.schedule.start_time.CopyFrom(_stamp(due))
            else:
                job.schedule.run_at.CopyFrom(_stamp(due))
            await stub.CreateJob(api.CreateJobRequest(job=job))

    async with httpx.AsyncClient() as http:
        await asyncio.gather(*(client() for _ in range(concurrency)))
        created_by = time.time()
        if created_by > min(fire_times):
            raise RuntimeError("jobs were still being created when the first was due; start later")
        receipts: dict[str, float] = {}
        deadline = max(fire_times) + 30
        while len(receipts) < len(fire_times) and time.time() < deadline:
            await asyncio.sleep(0.5)
            receipts.update((await http.get(f"{target_url}/receipts")).json())
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT e.id::text, extract(epoch FROM coalesce(e.tick_time, e.schedule_time)),"
                    " e.tick_time IS NOT NULL"
                    " FROM executions e JOIN jobs j ON j.id = e.job_id WHERE j.labels @> CAST(:l AS jsonb)"
                ),
                {"l": json.dumps({"bench": label})},
            )
        ).all()
        if any(recurring for _, recurring in jobs):  # stop them before their next tick
            await conn.execute(
                text("UPDATE jobs SET state = 'PAUSED', next_run_time = NULL WHERE labels @> CAST(:l AS jsonb)"),
                {"l": json.dumps({"bench": label})},
            )
            await conn.commit()
    arrived = [row for row in rows if row[0] in receipts]
    if len(arrived) < len(jobs):
        raise RuntimeError(f"only {len(arrived)}/{len(jobs)} scheduled calls arrived")
    results: dict[str, dict[str, Any]] = {}
    for recurring, kind in ((False, "one_off"), (True, "recurring")):
        lags = [(receipts[i] - float(due)) * 1000 for i, due, is_tick in arrived if is_tick is recurring]
        if lags:
            results[kind] = {
                "jobs": len(lags),
                "kind": "recurring (interval, first tick)" if recurring else "one-off run_at",
                "due_within_seconds": round(max(fire_times) - min(fire_times), 1),
                "fire_lag_ms": _ms(lags),
            }
    return results


async def measure_scheduler_cost(engine: AsyncEngine, stored: int, batch: int, url: str) -> dict[str, Any]:
    """Run before the api starts (nothing else schedules): time idle passes and a pass with
    ``batch`` due jobs, first with only those jobs stored, then with ``stored`` more."""
    ticks = TickStore(engine)

    async def idle_passes(count: int = 50) -> dict[str, float]:
        durations = []
        for _ in range(count):
            started = time.perf_counter()
            await ticks.fire_due(datetime.now(UTC), batch)
            await ticks.next_due_time()
            durations.append((time.perf_counter() - started) * 1000)
        return _ms(durations)

    async def due_pass() -> dict[str, float]:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE jobs SET start_time = now() - interval '1 second',"
                    " next_run_time = now() - interval '1 second', state = 'ACTIVE'"
                    ' WHERE labels @> \'{"bench": "due"}\''
                )
            )
        started = time.perf_counter()
        fired = await ticks.fire_due(datetime.now(UTC), batch)
        elapsed = (time.perf_counter() - started) * 1000
        assert len(fired.queued) == batch, fired
        async with engine.begin() as conn:  # leave nothing for the api to run
            await conn.execute(
                text(
                    'DELETE FROM executions WHERE job_id IN (SELECT id FROM jobs WHERE labels @> \'{"bench": "due"}\')'
                )
            )
            await conn.execute(
                text("UPDATE jobs SET state = 'PAUSED', next_run_time = NULL WHERE labels @> '{\"bench\": \"due\"}'")
            )
        return {"ms": round(elapsed, 1), "ms_per_tick": round(elapsed / batch, 3)}

    await _insert_jobs(engine, batch, url, label="due", next_run_in=timedelta(days=1))
    small = {"idle_pass_ms": await idle_passes(), "due_pass": await due_pass()}
    await _insert_jobs(engine, stored, url, label="stored", next_run_in=timedelta(days=1))
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE jobs"))
        plan = "\n".join(
            row[0]
            for row in await conn.execute(
                text(
                    "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM jobs WHERE state = 'ACTIVE' AND next_run_time <= now()"
                    f" ORDER BY next_run_time LIMIT {batch} FOR UPDATE SKIP LOCKED"
                )
            )
        )
    large = {"idle_pass_ms": await idle_passes(), "due_pass": await due_pass()}
    return {
        "batch": batch,
        f"with_{batch}_jobs_stored": small,
        f"with_{stored + batch}_jobs_stored": large,
        "due_query_uses_index": "ix_jobs_next_run_time" in plan,
        "due_query_plan": plan,
    }


async def _insert_jobs(engine: AsyncEngine, count: int, url: str, label: str, next_run_in: timedelta) -> None:
    """Recurring daily jobs written straight into PostgreSQL (CreateJob would take minutes)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                """
INSERT INTO jobs (id, tenant, method, url, headers, body, timeout_ms, max_attempts, min_backoff_ms, max_backoff_ms,
                  multiplier, retry_status_codes, queue, labels, state, create_time, update_time,
                  schedule_kind, interval_ms, start_time, next_run_time)
SELECT gen_random_uuid(), 'default', 'POST', :url, '{}', '', 90000, 4, 1000, 600000, 2, '{}', 'default',
       CAST(:labels AS jsonb), 'ACTIVE', now(), now(), 'INTERVAL', 86400000,
       now() + make_interval(secs => CAST(:ahead AS double precision) + g),
       now() + make_interval(secs => CAST(:ahead AS double precision) + g)
FROM generate_series(1, :count) AS g
"""
            ),
            {"url": url, "labels": json.dumps({"bench": label}), "ahead": next_run_in.total_seconds(), "count": count},
        )
