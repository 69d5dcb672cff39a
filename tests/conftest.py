"""Session fixtures: this session's own database and Redis DB, a real HTTP target, the api
in-process, and a real worker process."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from arq.connections import ArqRedis
from pydantic import SecretStr

from jobs_api.server import RunningApi, running_api
from jobs_common.arq_extension import create_redis_pool
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support import services
from tests.support.jobs import create
from tests.support.processes import ChildProcess, settings_env
from tests.support.target import TargetServer

SESSION_ID = uuid.uuid4().hex


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``finale`` run last: they check work started when the session began."""
    items.sort(key=lambda item: item.get_closest_marker("finale") is not None)


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[str]:
    name = await services.create_database()
    yield name
    await services.drop_database(name)


@pytest.fixture(scope="session")
async def redis_db() -> AsyncIterator[int]:
    index = await services.claim_redis_db(SESSION_ID)
    yield index
    await services.release_redis_db(index)


@pytest.fixture(scope="session")
def settings(database: str, redis_db: int, logs_dir: Path) -> Settings:
    return Settings(
        # Most tests run without tokens (tests/api/test_production_defaults.py checks production).
        environment="development",
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
        database_auto_create=False,
        redis_host=services.REDIS_HOST,
        redis_port=services.REDIS_PORT,
        redis_db=redis_db,
        grpc_host="127.0.0.1",
        grpc_port=0,
        # The test targets listen on loopback, which production refuses.
        egress_allow_networks="127.0.0.0/8,::1/128",
        # Secrets are sealed at rest in every test, as in production.
        secrets_keys=SecretStr(f"test:{base64.b64encode(os.urandom(32)).decode()}"),
        health_check_interval=timedelta(milliseconds=500),
        queue_poll_interval=timedelta(milliseconds=10),
        worker_drain_timeout=timedelta(seconds=5),
        # Fast background loops, so lost work is found within a test's patience.
        reconcile_interval=timedelta(seconds=1),
        reconcile_grace=timedelta(seconds=2),
        worker_lease_ttl=timedelta(seconds=3),
        worker_heartbeat_interval=timedelta(milliseconds=500),
        worker_health_file=str(logs_dir / "worker.health"),
        # Many apis and workers share this host: /metrics only where a test asks for it.
        metrics_port=0,
        worker_metrics_port=0,
    )


@pytest.fixture(scope="session")
async def target() -> AsyncIterator[TargetServer]:
    server = TargetServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def api(settings: Settings) -> AsyncIterator[RunningApi]:
    async with running_api(settings) as running:
        yield running


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
async def worker(settings: Settings, api: RunningApi, logs_dir: Path) -> AsyncIterator[ChildProcess]:
    """A real worker process (``python -m jobs_worker``) on the default queue."""
    process = ChildProcess("jobs_worker", settings_env(settings), logs_dir / "worker.log")
    await process.wait_for_log("ready on queue")
    yield process
    await process.stop()


@pytest.fixture(scope="session")
async def channel(api: RunningApi) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{api.port}") as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.aio.Channel) -> job_service_pb2_grpc.JobServiceAsyncStub:
    return job_service_pb2_grpc.JobServiceStub(channel)


@pytest.fixture
async def arq_redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = await create_redis_pool(settings)
    yield pool
    await pool.aclose()


@pytest.fixture
def key() -> str:
    """A path segment unique to the test, so target requests never mix."""
    return uuid.uuid4().hex


@pytest.fixture(scope="session")
async def long_calls(
    stub: job_service_pb2_grpc.JobServiceAsyncStub, target: TargetServer, worker: ChildProcess
) -> dict[str, str]:
    """Two real long calls with the default 90 s timeout, started once and checked by the
    ``finale`` tests, so they run alongside the rest of the suite instead of after it."""
    started: dict[str, str] = {}
    for name, seconds_ in (("answers_after_85s", 85), ("answers_after_120s", 120)):
        job = pb.Job(http_request=pb.HttpRequest(url=target.url(f"/sleep/{seconds_}/{SESSION_ID}-{name}")))
        job.retry_policy.max_attempts = 1
        started[name] = (await create(stub, job)).last_execution.id
    return started


@pytest.fixture(scope="session", autouse=True)
def _start_long_calls_first(request: pytest.FixtureRequest) -> None:
    """Starts the long calls at the beginning of a session that will check them."""
    if any(item.get_closest_marker("finale") for item in request.session.items):
        request.getfixturevalue("long_calls")
