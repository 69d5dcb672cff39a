"""What a run costs the two servers: Redis commands, PostgreSQL rows written, commits and WAL
bytes, from their own counters read before and after (nothing else uses them during a run)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Counters", "cost"]

_POSTGRES = text(
    """
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal,
       tup_inserted + tup_updated + tup_deleted AS rows, xact_commit AS commits
FROM pg_stat_database WHERE datname = current_database()
"""
)


@dataclass(frozen=True)
class Counters:
    at: float
    redis_commands: int
    wal_bytes: int
    rows_written: int
    commits: int

    @classmethod
    async def read(cls, redis: Redis, engine: AsyncEngine) -> Counters:
        # Backends report their row and commit counts to pg_stat_database within a second of
        # going idle: wait that out so the run's last writes are counted.
        await asyncio.sleep(1.1)
        stats = await redis.info("stats")
        async with engine.connect() as conn:
            row = (await conn.execute(_POSTGRES)).one()
        return cls(time.time(), int(stats["total_commands_processed"]), int(row.wal), int(row.rows), int(row.commits))


def cost(before: Counters, after: Counters, jobs: int, seconds: float) -> dict[str, Any]:
    """Per job, and per second at the run's rate (``seconds``: the run's own duration)."""
    deltas = {
        "redis_commands": after.redis_commands - before.redis_commands,
        "postgres_rows_written": after.rows_written - before.rows_written,
        "postgres_commits": after.commits - before.commits,
        "postgres_wal_bytes": after.wal_bytes - before.wal_bytes,
    }
    return {
        **{f"{name}_per_job": round(value / jobs, 1) for name, value in deltas.items()},
        **{f"{name}_per_second": round(value / seconds) for name, value in deltas.items()},
    }
