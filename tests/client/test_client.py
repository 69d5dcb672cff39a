"""The Python SDK against a real api (and worker): creates that cannot repeat, typed errors with
their details, iterators over every page, watching a job to its end, tokens, and the sync client
doing the same from a thread."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from jobs_api.server import RunningApi, running_api
from jobs_client import (
    AsyncJobsClient,
    Connection,
    InvalidArgumentError,
    JobsClient,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
    every,
    http_job,
    retry_policy,
    run_at,
)
from jobs_common.settings import Settings
from jobscheduler.v1 import queue_service_pb2
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.certs import make_pki
from tests.support.services import free_port
from tests.support.target import TargetServer

IDLE = "sdk-idle"  # no worker serves it


@pytest.fixture
async def client(api: RunningApi) -> AsyncIterator[AsyncJobsClient]:
    async with AsyncJobsClient(Connection(f"127.0.0.1:{api.port}")) as client:
        yield client


async def test_create_fills_a_request_id_and_the_same_id_answers_the_same_job(client: AsyncJobsClient):
    job = http_job("https://hooks.example.com/sdk", queue=IDLE, labels={"sdk": "yes"}, body='{"a": 1}')
    first, second = await client.create_job(job), await client.create_job(job)
    assert first.id != second.id  # each call its own request_id
    assert first.http_request.body == b'{"a": 1}'
    request_id = str(uuid.uuid4())
    again = [await client.create_job(job, request_id=request_id) for _ in range(2)]
    assert again[0].id == again[1].id
    made = await client.create_jobs([job, job])
    assert len({j.id for j in made}) == 2
    key = f"sdk-{uuid.uuid4().hex}"
    deduplicated = [
        await client.create_job(job, deduplication_key=key, deduplication_window=timedelta(minutes=1)) for _ in range(3)
    ]
    assert len({j.id for j in deduplicated}) == 1  # each call its own request_id, one job
    debounced = [
        await client.create_job(
            http_job(f"https://hooks.example.com/sdk/{i}", queue=job.queue),
            deduplication_key=f"{key}-debounce",
            deduplication_window=timedelta(minutes=1),
            debounce=True,
        )
        for i in range(2)
    ]
    assert debounced[0].id == debounced[1].id
    assert debounced[1].http_request.url == "https://hooks.example.com/sdk/1"  # the last create's


async def test_errors_are_typed_with_their_reason_and_field_violations(client: AsyncJobsClient):
    with pytest.raises(NotFoundError) as missing:
        await client.get_job(str(uuid.uuid4()))
    assert "not found" in missing.value.message
    assert missing.value.reason == "NOT_FOUND"
    bad = http_job("ftp://example.com/x", timeout=timedelta(days=1), retry=retry_policy(0))
    with pytest.raises(InvalidArgumentError) as invalid:
        await client.create_job(bad)
    assert set(invalid.value.field_violations) >= {
        "job.http_request.url",
        "job.timeout",
        "job.retry_policy.max_attempts",
    }
    with pytest.raises(ValueError, match="unknown HTTP method"):
        http_job("https://example.com", method="BREW")
    with pytest.raises(ValueError, match="aware datetime"):
        run_at(datetime(2030, 1, 1))


async def test_iterators_walk_every_page(client: AsyncJobsClient):
    label = {"sdk-pages": uuid.uuid4().hex}
    made = [
        await client.create_job(http_job("https://hooks.example.com/p", queue=IDLE, labels=label)) for _ in range(5)
    ]
    listed = [job.id async for job in client.list_jobs(labels=label, page_size=2)]
    assert listed == [job.id for job in reversed(made)]
    full = [job async for job in client.list_jobs(labels=label, full=True, page_size=2)]
    assert all(job.http_request.url == "https://hooks.example.com/p" for job in full)
    recurring = await client.create_job(
        http_job("https://hooks.example.com/r", queue=IDLE, schedule=every(timedelta(hours=1)))
    )
    runs = [(await client.run_job(recurring.id)).execution.id for _ in range(3)]
    assert [e.id async for e in client.list_executions(recurring.id, page_size=2)] == list(reversed(runs))
    queues = [queue.name async for queue in client.list_queues(page_size=1)]
    assert IDLE in queues
    for job in (*made, recurring):
        await client.delete_job(job.id)


@pytest.mark.usefixtures("worker")
async def test_watch_follows_a_job_to_its_end(client: AsyncJobsClient, target: TargetServer, key: str):
    job = await client.create_job(
        http_job(target.url(f"/ok/{key}"), schedule=run_at(datetime.now(UTC) + timedelta(seconds=1)))
    )
    states = [change.execution.state async for change in client.watch(job.id) if change.HasField("execution")]
    assert states[-1] == pb.EXECUTION_STATE_SUCCEEDED
    assert pb.EXECUTION_STATE_SCHEDULED in states


async def test_the_sync_client_does_the_same_from_plain_code(api: RunningApi):
    def script() -> tuple[str, list[str], str]:
        with JobsClient(Connection(f"127.0.0.1:{api.port}")) as client:
            made = client.create_job(http_job("https://hooks.example.com/sync", queue=IDLE))
            listed = [job.id for job in client.list_jobs(queue=IDLE, page_size=3)]
            try:
                client.get_job("not-a-uuid")
            except InvalidArgumentError as error:
                problem = error.field_violations["id"]
            client.delete_job(made.id)
            return made.id, listed, problem

    made, listed, problem = await asyncio.to_thread(script)
    assert made in listed
    assert problem


@pytest.mark.usefixtures("api")  # the session's database, migrated
async def test_tokens_come_from_the_environment_and_roles_are_typed(settings: Settings, monkeypatch):
    tokens = "sdk-reader/reader:sdk-reader-token-0123456789"
    secured = settings.model_copy(update={"api_tokens": SecretStr(tokens)})
    async with running_api(secured, run_migrations=False) as running:
        monkeypatch.setenv("JOBS_API_ADDRESS", f"127.0.0.1:{running.port}")
        monkeypatch.setenv("JOBS_API_TOKEN", "sdk-reader-token-0123456789")
        async with AsyncJobsClient() as reader:
            assert reader.connection.address == f"127.0.0.1:{running.port}"
            assert [job async for job in reader.list_jobs(queue=f"none-{uuid.uuid4().hex[:6]}")] == []
            with pytest.raises(PermissionDeniedError) as denied:
                await reader.create_job(http_job("https://hooks.example.com/x", queue=IDLE))
            assert denied.value.reason == "ROLE_REQUIRED"
        async with AsyncJobsClient(Connection.from_env(token="wrong-token-wrong-token")) as stranger:
            with pytest.raises(UnauthenticatedError):
                await stranger.get_job(str(uuid.uuid4()))


async def test_the_guide_example_runs_as_written(api: RunningApi, tmp_path):
    text = (Path(__file__).parents[2] / "docs" / "client.md").read_text()
    [example] = re.findall(r"<!-- example:sdk -->\n```python\n(.*?)```", text, re.S)
    script = tmp_path / "example.py"
    script.write_text(example)
    env = {**os.environ, "JOBS_API_ADDRESS": f"127.0.0.1:{api.port}"}
    env.pop("JOBS_API_TOKEN", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    output = out.decode()
    assert process.returncode == 0, output
    assert "created " in output
    assert "listed " in output
    assert "refused: {'job.http_request.url':" in output


@pytest.mark.usefixtures("api")
async def test_mutual_tls_from_the_environment(settings: Settings, tmp_path: Path, monkeypatch):
    pki = make_pki(tmp_path)
    mutual = settings.model_copy(
        update={
            "grpc_tls_cert_file": str(pki.server_cert),
            "grpc_tls_key_file": str(pki.server_key),
            "grpc_tls_client_ca_file": str(pki.ca),
            "grpc_health_port": free_port(),
        }
    )
    async with running_api(mutual, run_migrations=False) as running:
        monkeypatch.setenv("JOBS_API_ADDRESS", f"127.0.0.1:{running.port}")
        monkeypatch.setenv("JOBS_API_TLS_CA_FILE", str(pki.ca))
        monkeypatch.setenv("JOBS_API_TLS_CERT_FILE", str(pki.client_cert))
        monkeypatch.setenv("JOBS_API_TLS_KEY_FILE", str(pki.client_key))
        async with AsyncJobsClient() as client:
            assert [job async for job in client.list_jobs(queue=f"none-{uuid.uuid4().hex[:6]}")] == []
        monkeypatch.delenv("JOBS_API_TLS_KEY_FILE")
        with pytest.raises(ValueError, match="needs both"):
            Connection.from_env().async_channel()
        # Without a client certificate the server refuses the handshake: no answer at all.
        no_certificate = Connection(f"127.0.0.1:{running.port}", tls_ca_file=str(pki.ca))
        async with AsyncJobsClient(no_certificate, timeout=5) as refused:
            with pytest.raises(UnavailableError):
                await refused.get_job(str(uuid.uuid4()))


@pytest.mark.usefixtures("worker")
async def test_queue_calls_workers_and_dead_letters(client: AsyncJobsClient, target: TargetServer, key: str):
    dead = await client.create_job(http_job(target.url(f"/status/500/{key}"), retry=retry_policy(1)))
    states = [change.execution.state async for change in client.watch(dead.id) if change.HasField("execution")]
    assert states[-1] == pb.EXECUTION_STATE_DEAD
    letters = [e.id async for e in client.list_dead_letters(job_id=dead.id, error_kind=pb.ERROR_KIND_HTTP_STATUS)]
    assert letters == [dead.last_execution.id]
    assert [e async for e in client.list_dead_letters(job_id=dead.id, error_kind=pb.ERROR_KIND_TIMEOUT)] == []
    replayed = await client.replay_dead_letters([letters[0], str(uuid.uuid4())])
    assert [e.replay_of for e in replayed.executions] == letters
    assert len(replayed.skipped_ids) == 1
    replay = replayed.executions[0].id
    while (await client.get_execution(replay)).state != pb.EXECUTION_STATE_DEAD:  # it fails too
        await asyncio.sleep(0.05)
    assert await client.purge_dead_letters(job_id=dead.id) == 1
    assert [e async for e in client.list_dead_letters(job_id=dead.id)] == []

    workers = await client.list_workers(queue="default")
    assert workers
    assert all(w.queue == "default" and w.capacity > 0 for w in workers)
    assert (await client.get_scaling_recommendation("default")).current_workers == len(workers)

    queue = f"sdk-settings-{key}"
    changed = await client.update_queue(queue, history_retention=timedelta(days=2), dead_letter_retention=timedelta(0))
    assert changed.history_retention.ToTimedelta() == timedelta(days=2)
    assert changed.dead_letter_retention.ToTimedelta() == timedelta(0)
    reset = await client.update_queue(queue, reset=["dead_letter_retention"])
    assert reset.history_retention.ToTimedelta() == timedelta(days=2)
    assert reset.dead_letter_retention.ToTimedelta() == timedelta(days=30)
    limited = await client.update_queue(queue, max_dispatches_per_second=1.5, max_concurrent_dispatches=3)
    assert (limited.rate_limits.max_dispatches_per_second, limited.rate_limits.max_burst_size) == (1.5, 2)
    assert (await client.get_queue(queue)).rate_limits.max_concurrent_dispatches == 3
    unlimited = await client.update_queue(queue, reset=["rate_limits"])
    assert unlimited.rate_limits == queue_service_pb2.RateLimits()
    with pytest.raises(InvalidArgumentError) as invalid:
        await client.update_queue(queue, history_retention=timedelta(seconds=-1))
    assert "queue.history_retention" in invalid.value.field_violations
