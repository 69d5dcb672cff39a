"""The Alembic migrations build exactly the schema the models describe, and carry old rows over."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.db import Base
from jobs_common.migrate import alembic_config, migrate
from tests.support import services


async def test_migrated_schema_matches_the_models(settings, api):
    await migrate(settings)  # a second run is a no-op, even with the api up
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata)
        )
    await engine.dispose()
    assert diff == []


_OLD_JOB = """
INSERT INTO jobs (id, queue, labels, state, create_time, update_time, method, url, headers, body,
                  timeout_ms, max_attempts, min_backoff_ms, max_backoff_ms, multiplier, retry_status_codes)
VALUES ('00000000-0000-0000-0000-000000000001', 'billing', '{}', 'COMPLETED', now(), now(),
        'POST', 'https://example.com', '{}', '', 1000, 1, 1000, 1000, 2, '{}')
"""
_OLD_EXECUTIONS = """
INSERT INTO executions (id, job_id, state, schedule_time, create_time, update_time, end_time, method, url,
                        headers, body, timeout_ms, max_attempts, min_backoff_ms, max_backoff_ms, multiplier,
                        retry_status_codes)
SELECT CAST('00000000-0000-0000-0000-00000000000' || n AS uuid), '00000000-0000-0000-0000-000000000001',
       'SUCCEEDED', now(), now(), now(), now(), 'POST', 'https://example.com', '{}', '', 1000, 1, 1000, 1000, 2, '{}'
FROM generate_series(2, 3) AS n
"""


async def test_0014_gives_existing_executions_their_jobs_queue():
    """A history written before executions named their queue is backfilled from the jobs."""
    name = await services.create_database()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    engine = create_async_engine(url)

    def upgrade(connection: Connection, revision: str) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade, "0013")
            await conn.execute(text(_OLD_JOB))
            await conn.execute(text(_OLD_EXECUTIONS))
        async with engine.begin() as conn:
            await conn.run_sync(upgrade, "head")
            queues = (await conn.execute(text("SELECT queue FROM executions"))).scalars().all()
        assert queues == ["billing", "billing"]
    finally:
        await engine.dispose()
        await services.drop_database(name)
