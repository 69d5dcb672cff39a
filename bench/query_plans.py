"""``make plans``: the PostgreSQL statements behind QueueService, the reconciler, the scheduler,
the history purge and the worker's claim, planned and run (EXPLAIN ANALYZE) against a history of 1,000,000 executions.

The statements are the store's own: each store method runs once while a SQLAlchemy hook records
what it sends, and each recorded statement is then explained with its own parameters, in a
transaction that is rolled back. The table shows, per statement, its time, the buffers it touched
and how it reads each table; a sequential scan of ``executions`` or ``attempts`` (the tables that
grow with history) is flagged. Uses a database of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobs_common.auth import DEFAULT_TENANT as TENANT
from jobs_common.domain import DeadLetterFilter, ErrorKind, ExecutionState, Retention
from jobs_common.migrate import migrate
from jobs_common.secrets import SecretBox
from jobs_common.settings import Settings
from jobs_common.store import (
    DeadLetters,
    ExecutionLeases,
    HistoryPurge,
    JobStore,
    QueueStore,
    Reconciliation,
    TickStore,
)
from tests.support import services

__all__ = ["explain_store_statements", "populate"]

# Tables whose size follows the history (a one-off job is a row of jobs too); reading them whole
# is what must not happen.
HISTORY_TABLES = frozenset({"executions", "attempts", "jobs"})
QUEUES = 20


async def populate(engine: AsyncEngine, executions: int, jobs: int, unfinished: int) -> str:
    """``jobs`` one-off jobs over QUEUES queues, ``executions`` finished executions (3 % DEAD,
    the rest SUCCEEDED) over the last 30 days with one attempt each, and ``unfinished`` waiting or
    running ones. Returns a queue name to query."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                """
INSERT INTO jobs (id, tenant, queue, labels, state, create_time, update_time, method, url, headers, body,
                  timeout_ms, max_attempts, min_backoff_ms, max_backoff_ms, multiplier, retry_status_codes)
SELECT gen_random_uuid(), 'default', 'queue-' || (i % :queues), '{}', 'ACTIVE', now() - interval '30 days', now(),
       'POST', 'https://example.com/hook/' || i, '{}', '', 30000, 5, 1000, 60000, 2, '{}'
FROM generate_series(1, :jobs) AS i
"""
            ),
            {"jobs": jobs, "queues": QUEUES},
        )
        await conn.execute(text("CREATE TEMP TABLE job_ids AS SELECT row_number() OVER () AS n, id, queue FROM jobs"))
        await conn.execute(
            text(
                """
INSERT INTO executions (id, job_id, queue, state, attempt_count, interrupted_attempts, schedule_time, start_time,
                        end_time, last_error, create_time, update_time, method, url, headers, body,
                        timeout_ms, max_attempts, min_backoff_ms, max_backoff_ms, multiplier, retry_status_codes)
SELECT gen_random_uuid(), j.id, j.queue, CASE WHEN i % 33 = 0 THEN 'DEAD' ELSE 'SUCCEEDED' END, 1, 0, t, t, t,
       CASE WHEN i % 33 = 0 THEN 'HTTP 500' ELSE '' END, t, t,
       'POST', 'https://example.com/hook', '{}', '', 30000, 5, 1000, 60000, 2, '{}'
FROM generate_series(1, :executions) AS i
CROSS JOIN LATERAL (SELECT now() - (i * interval '30 days' / :executions) AS t) AS at
JOIN job_ids j ON j.n = 1 + i % :jobs
"""
            ),
            {"executions": executions, "jobs": jobs},
        )
        await conn.execute(
            text(
                """
INSERT INTO executions (id, job_id, queue, state, attempt_count, interrupted_attempts, schedule_time, last_error,
                        lease_owner, lease_expires_at, create_time, update_time, method, url, headers, body,
                        timeout_ms, max_attempts, min_backoff_ms, max_backoff_ms, multiplier, retry_status_codes)
SELECT gen_random_uuid(), j.id, j.queue, s.state, CASE WHEN s.state = 'RUNNING' THEN 1 ELSE 0 END, 0,
       now() + ((i % 120) - 60) * interval '1 second', '',
       CASE WHEN s.state = 'RUNNING' THEN 'bench-worker' END,
       CASE WHEN s.state = 'RUNNING' THEN now() + interval '10 seconds' END,
       now(), now(), 'POST', 'https://example.com/hook', '{}', '', 30000, 5, 1000, 60000, 2, '{}'
FROM generate_series(1, :unfinished) AS i
CROSS JOIN LATERAL (SELECT (ARRAY['QUEUED', 'SCHEDULED', 'RETRY_SCHEDULED', 'RUNNING'])[1 + i % 4] AS state) AS s
JOIN job_ids j ON j.n = 1 + i % :jobs
"""
            ),
            {"unfinished": unfinished, "jobs": jobs},
        )
        await conn.execute(
            text(
                """
INSERT INTO attempts (execution_id, number, worker_id, start_time, end_time, response_status_code,
                      error_kind, error_message)
SELECT id, 1, 'bench-worker', start_time, end_time, CASE WHEN state = 'DEAD' THEN 500 ELSE 200 END,
       CASE WHEN state = 'DEAD' THEN 'HTTP_STATUS' END, last_error
FROM executions WHERE end_time IS NOT NULL
"""
            )
        )
        await conn.execute(
            text(
                """
UPDATE jobs SET last_execution_id = latest.id
FROM (SELECT DISTINCT ON (job_id) job_id, id FROM executions ORDER BY job_id, create_time DESC) AS latest
WHERE latest.job_id = jobs.id
"""
            )
        )
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))
    return "queue-7"


@contextlib.contextmanager
def _recording(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the block sends through ``engine``, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")):
            sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def _scans(plan: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(node type, table, index) of every node of ``plan`` that reads a table."""
    relation = plan.get("Relation Name")
    if relation is not None:
        yield plan["Node Type"], relation, plan.get("Index Name", "")
    elif "Index Name" in plan:  # a Bitmap Index Scan under its Bitmap Heap Scan
        yield plan["Node Type"], "", plan["Index Name"]
    for child in plan.get("Plans", []):
        yield from _scans(child)


async def _explain(engine: AsyncEngine, statement: str, parameters: Any) -> dict[str, Any]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
            raw = result.scalar_one()
        finally:
            await transaction.rollback()
    document = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    plan = document["Plan"]
    scans = sorted(set(_scans(plan)))
    return {
        "ms": round(document["Execution Time"] + document["Planning Time"], 2),
        "buffers": plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0),
        "rows": plan.get("Actual Rows", 0),
        "scans": [
            f"{kind}" + (f" on {table}" if table else "") + (f" using {index}" if index else "")
            for kind, table, index in scans
        ],
        "history_seq_scans": [table for kind, table, _ in scans if kind == "Seq Scan" and table in HISTORY_TABLES],
    }


async def explain_store_statements(engine: AsyncEngine, queue: str) -> list[dict[str, Any]]:
    """Runs each store method the figures and loops use, then explains what it sent."""
    queues, dead, reconcile, ticks, jobs = (
        QueueStore(engine),
        DeadLetters(engine),
        Reconciliation(engine),
        TickStore(engine),
        JobStore(engine, SecretBox()),
    )
    leases = ExecutionLeases(engine, "plans", timedelta(seconds=10), SecretBox())
    history = HistoryPurge(engine)
    # The history spans 30 days: a retention of 15 leaves a full batch for the explained run too.
    retention = Retention(timedelta(days=15), timedelta(days=15))
    await leases.join()
    async with engine.connect() as conn:
        waiting_id = await conn.scalar(text("SELECT id FROM executions WHERE state = 'QUEUED' LIMIT 1"))
        some_job = await conn.scalar(text("SELECT job_id FROM executions WHERE state = 'DEAD' LIMIT 1"))
    everything = DeadLetterFilter()
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("GetQueueStats: depth of one queue", lambda: queues.depth(queue)),
        ("queue gauges: depth of every queue", lambda: queues.depth()),
        ("GetScalingRecommendation / KEDA: backlog", lambda: queues.backlog(queue, timedelta(seconds=30))),
        ("queue loops: every queue", queues.all_queues),
        ("ListQueues: a page of 5 after the first", lambda: queues.page(queue[:1], 5)),
        ("GetQueueStats: the queue", lambda: queues.get(queue)),
        ("ListDeadLetters: first page", lambda: dead.page(TENANT, everything, 50, "")),
        ("ListDeadLetters: by queue", lambda: dead.page(TENANT, DeadLetterFilter(queue=queue), 50, "")),
        ("ListDeadLetters: by job", lambda: dead.page(TENANT, DeadLetterFilter(job_id=some_job), 50, "")),
        (
            "ListDeadLetters: by error kind",
            lambda: dead.page(TENANT, DeadLetterFilter(error_kind=ErrorKind.HTTP_STATUS), 50, ""),
        ),
        ("ReplayDeadLetters: ids by filter", lambda: dead.ids(TENANT, DeadLetterFilter(queue=queue), 100)),
        ("queue gauges: dead letters by queue", dead.count_by_queue),
        ("ListExecutions of a job", lambda: jobs.list_executions(TENANT, some_job, 50, "")),
        ("reconciler pass", lambda: reconcile.find(timedelta(seconds=10), 1000)),
        ("scheduler: next due time", ticks.next_due_time),
        ("scheduler: complete ended recurring jobs", lambda: ticks.complete_ended_jobs(datetime.now(UTC))),
        (
            "ListJobs: failed jobs (last execution DEAD)",
            lambda: jobs.list_jobs(TENANT, 50, "", None, None, {}, None, ExecutionState.DEAD),
        ),
        ("worker claim", lambda: leases.claim(waiting_id)),
        ("worker heartbeat: renew its lease", leases.renew),
        ("PurgeDeadLetters: 100 by queue", lambda: dead.purge(TENANT, DeadLetterFilter(queue=queue), 100)),
        ("history purge: queues with history", history.queues),
        ("history purge: a batch of 500", lambda: history.purge(queue, retention, datetime.now(UTC), 500)),
    ]
    results = []
    for name, call in calls:
        with _recording(engine) as sent:
            # The purge and the claim really run here; the database is this script's own.
            await call()
        for statement, parameters in sent:
            explained = await _explain(engine, statement, parameters)
            results.append({"name": name, **explained})
    return results


@contextlib.asynccontextmanager
async def _database() -> AsyncIterator[Settings]:
    name = await services.create_database()
    try:
        yield Settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", database_auto_create=False)
    finally:
        await services.drop_database(name)


def _table(results: list[dict[str, Any]]) -> str:
    lines = ["| Statement | ms | buffers | rows | how the tables are read |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        flag = " **SEQ SCAN OF HISTORY**" if r["history_seq_scans"] else ""
        lines.append(f"| {r['name']} | {r['ms']} | {r['buffers']} | {r['rows']} | {'; '.join(r['scans'])}{flag} |")
    return "\n".join(lines)


async def run(executions: int, jobs: int, unfinished: int) -> dict[str, Any]:
    async with _database() as settings:
        await migrate(settings)
        engine = create_async_engine(settings.database_url)
        try:
            started = time.perf_counter()
            queue = await populate(engine, executions, jobs, unfinished)
            populated_s = time.perf_counter() - started
            results = await explain_store_statements(engine, queue)
        finally:
            await engine.dispose()
    return {
        "executions": executions,
        "jobs": jobs,
        "unfinished": unfinished,
        "populate_seconds": round(populated_s, 1),
        "statements": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=1_000_000, help="finished executions of history")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--unfinished", type=int, default=2_000, help="waiting or running executions")
    args = parser.parse_args()
    result = asyncio.run(run(args.executions, args.jobs, args.unfinished))
    print(
        f"{result['executions']:,} finished executions, {result['unfinished']:,} unfinished, {result['jobs']:,} jobs "
        f"(populated in {result['populate_seconds']} s)\n"
    )
    print(_table(result["statements"]))
    out = Path("bench-results") / f"query-plans-{uuid.uuid4().hex[:8]}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nJSON: {out}")
    if any(r["history_seq_scans"] for r in result["statements"]):
        raise SystemExit("a statement reads a history table sequentially")


if __name__ == "__main__":
    main()
