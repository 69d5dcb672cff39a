"""Key rotation: `python -m jobs_common.reseal` seals every row with the first key, moves
Authorization & co. stored in clear before sealing existed under it, and then the old key can go."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.secrets import job_secrets_binding
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from tests.support import services
from tests.support.apis import private_api
from tests.support.jobs import create, http_job
from tests.support.processes import settings_env


def _key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


@pytest.fixture
async def own_database(settings: Settings) -> AsyncIterator[Settings]:
    name = await services.create_database()
    yield settings.model_copy(update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"})
    await services.drop_database(name)


async def test_rotation_reseals_every_row_and_the_old_key_can_go(own_database: Settings):
    old, new = _key("old"), _key("new")
    job = http_job("https://hooks.example.com/x", queue="reseal")
    job.http_request.headers.update({"Authorization": "Bearer rotated-token", "X-Sig": "sig-value"})
    job.http_request.secret_headers.append("X-Sig")
    job.http_request.signing.generate_secret = True
    with_old = own_database.model_copy(update={"secrets_keys": SecretStr(old)})
    async with private_api(with_old, migrate=True) as (stub, _):
        sealed_job = await create(stub, job)
        legacy_job = await create(stub, http_job("https://hooks.example.com/legacy", queue="reseal"))
    [signing_secret] = sealed_job.http_request.signing.secrets
    engine = create_async_engine(own_database.database_url)
    async with engine.begin() as conn:  # a row written before secrets were sealed
        await conn.execute(
            text("""UPDATE jobs SET headers = '{"Authorization": "Bearer legacy-token"}' WHERE id = :id"""),
            {"id": uuid.UUID(legacy_job.id)},
        )

    rotated = settings_env(own_database.model_copy(update={"secrets_keys": SecretStr(f"{new},{old}")}))
    logs = []
    for _run in range(2):  # the second run finds nothing left to do
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "jobs_common.reseal"],
            env=rotated,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        logs.append(done.stderr)
    # Both jobs, and the sealed job's execution (the legacy job's execution holds no secret).
    assert "resealed 3 of 4 rows with key 'new'" in logs[0]
    assert "resealed 0 of 4 rows with key 'new'" in logs[1]

    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, headers::text, sealed_secrets FROM jobs"))).all()
        executions = (await conn.execute(text("SELECT sealed_secrets FROM executions"))).scalars().all()
    await engine.dispose()
    for row in rows:
        assert row.sealed_secrets.startswith("v2:new:")
        assert "token" not in row.headers
    assert all(sealed.startswith("v2:new:") for sealed in executions if sealed is not None)

    only_new = own_database.model_copy(update={"secrets_keys": SecretStr(new)})
    box = only_new.secret_box
    opened = box.open(await _sealed_of(own_database.database_url, sealed_job.id), job_secrets_binding(sealed_job.id))
    assert opened.headers == {"Authorization": "Bearer rotated-token", "X-Sig": "sig-value"}
    assert opened.signing_secrets == (signing_secret,)
    legacy_opened = box.open(
        await _sealed_of(own_database.database_url, legacy_job.id), job_secrets_binding(legacy_job.id)
    )
    assert legacy_opened.headers == {"Authorization": "Bearer legacy-token"}
    async with private_api(only_new) as (stub, _):
        legacy = (await stub.GetJob(api.GetJobRequest(id=legacy_job.id))).job
        assert legacy.http_request.headers["Authorization"] == "[REDACTED]"
        assert list(legacy.http_request.secret_headers) == ["Authorization"]


async def _sealed_of(database_url: str, job_id: str) -> str:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        sealed = await conn.scalar(text("SELECT sealed_secrets FROM jobs WHERE id = :id"), {"id": uuid.UUID(job_id)})
    await engine.dispose()
    assert isinstance(sealed, str)
    return sealed
