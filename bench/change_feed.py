"""``python -m bench.change_feed``: what WatchJob's change-feed triggers cost the hot path.

Single-row execution updates that fire the trigger (attempt_count + 1), ``--connections``
concurrent, autocommit, for ``--seconds`` each, on a database of its own: without the
triggers' NOTIFY at all (the functions emptied), with migration 0004's (a payload and a NOTIFY
for every change) and with migration 0013's (a NOTIFY only for watched jobs, nobody watching).
Prints updates/s for each; figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import time
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.query_plans import populate
from jobs_common.migrate import migrate
from jobs_common.settings import Settings
from tests.support import services

_NOTHING = """
CREATE OR REPLACE FUNCTION notify_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NULL; END $$
"""


def _functions() -> dict[str, str]:
    feed = importlib.import_module("jobs_common.migrations.versions.0013_watched_jobs")
    return {
        "no NOTIFY (function emptied)": _NOTHING,
        "every change NOTIFYs (0004)": feed._EVERY_EXECUTION_FUNCTION,
        "only watched jobs NOTIFY (0013), none watched": feed._EXECUTION_FUNCTION,
    }


async def _updates_per_second(dsn: str, ids: list[Any], connections: int, seconds: float) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    done = 0
    stop = time.monotonic() + seconds

    async def client(offset: int) -> None:
        nonlocal done
        async with pool.acquire() as conn:
            i = offset
            while time.monotonic() < stop:
                await conn.execute(
                    "UPDATE executions SET attempt_count = attempt_count + 1, update_time = now() WHERE id = $1",
                    ids[i % len(ids)],
                )
                done += 1
                i += connections

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(connections)))
    elapsed = time.monotonic() - started
    await pool.close()
    return done / elapsed


async def run(args: argparse.Namespace) -> None:
    database = await services.create_database()
    settings = Settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}")
    dsn = make_url(settings.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    engine = create_async_engine(settings.database_url)
    try:
        await migrate(settings)
        await populate(engine, executions=10_000, jobs=1_000, unfinished=0)
        conn = await asyncpg.connect(dsn)
        try:
            ids = [row["id"] for row in await conn.fetch("SELECT id FROM executions LIMIT 2000")]
            for _round in range(args.rounds):
                for name, function in _functions().items():
                    await conn.execute(function)
                    rate = await _updates_per_second(dsn, ids, args.connections, args.seconds)
                    print(f"{name:48} {rate:8.0f} updates/s", flush=True)
        finally:
            await conn.close()
    finally:
        await engine.dispose()
        await services.drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
