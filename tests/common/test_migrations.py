"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.db import Base
from jobs_common.migrate import migrate


async def test_migrated_schema_matches_the_models(settings, api):
    await migrate(settings)  # a second run is a no-op, even with the api up
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata)
        )
    await engine.dispose()
    assert diff == []
