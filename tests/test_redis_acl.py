"""The api and a worker run a job end to end as a Redis ACL user that may not run FLUSHALL,
FLUSHDB, KEYS, CONFIG or any other @dangerous command (INFO excepted): the ACL docs/security.md
documents. Redis's ACL LOG then shows that neither process was ever refused a command."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from jobs_common.settings import Settings
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.apis import private_api
from tests.support.jobs import create, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.services import free_port, start_private_redis, wait_for_redis
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api")  # the session's database, migrated

SERVICE_PASSWORD = "jobs-pass:with@odd/chars"
ADMIN_PASSWORD = "admin-pass-for-the-test"
# The ACL of docs/security.md, word for word.
SERVICE_ACL = "on >{password} ~* &* +@all -@dangerous +info"


async def test_the_services_run_under_an_acl_without_dangerous_commands(
    settings: Settings, target: TargetServer, tmp_path: Path
):
    port = free_port()
    server = start_private_redis(
        port,
        tmp_path,
        # redis-server takes a directive's words as separate arguments.
        *("--user", "default", "off"),
        *("--user", "jobs", *SERVICE_ACL.format(password=SERVICE_PASSWORD).split()),
        *("--user", "admin", "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all"),
    )
    admin = aioredis.Redis(port=port, username="admin", password=ADMIN_PASSWORD)
    try:
        await wait_for_redis(admin)
        restricted = settings.model_copy(
            update={"redis_port": port, "redis_db": 0, "redis_username": "jobs", "redis_password": SERVICE_PASSWORD}
        )
        as_service = aioredis.Redis(port=port, username="jobs", password=SERVICE_PASSWORD)
        for forbidden in (("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "GET", "maxmemory-policy"), ("FLUSHDB",)):
            with pytest.raises(NoPermissionError):
                await as_service.execute_command(*forbidden)
        await as_service.aclose()
        await admin.execute_command("ACL", "LOG", "RESET")

        worker = ChildProcess(
            "jobs_worker",
            settings_env(restricted, WORKER_HEALTH_FILE=str(tmp_path / "health")),
            tmp_path / "worker.log",
        )
        try:
            async with private_api(restricted) as (stub, _):
                await worker.wait_for_log("ready on queue")
                job = await create(stub, http_job(target.url("/flaky/acl?fail=1")))
                done = await wait_terminal(stub, job.last_execution.id, timeout=20)
                assert done.state == pb.EXECUTION_STATE_SUCCEEDED
                assert done.attempt_count == 2  # a deferred retry too
        finally:
            assert await worker.stop() == 0
        denied = await admin.execute_command("ACL", "LOG")
        assert denied == [], denied
        assert "NOPERM" not in worker.log()
    finally:
        await admin.aclose()
        server.terminate()
        server.wait()
