"""Prometheus: the api and a worker each serve /metrics, and the values move with the work."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.apis import private_api
from tests.support.jobs import create, eventually, http_job, wait_for_state, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.services import free_port

pytestmark = pytest.mark.usefixtures("api")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Metered:
    """An api of the test's own and a worker on ``queue``, each serving /metrics."""

    stub: job_service_pb2_grpc.JobServiceAsyncStub
    channel: grpc.aio.Channel
    api_port: int
    worker_port: int


@contextlib.asynccontextmanager
async def _metered(settings, queue: str, tmp_path: Path, refresh: timedelta) -> AsyncIterator[Metered]:
    api_port, worker_port = free_port(), free_port()
    private = settings.model_copy(
        update={
            "metrics_port": api_port,
            "metrics_refresh_interval": refresh,
            "metrics_dead_letters_interval": refresh,
        }
    )
    worker_env = settings_env(
        settings.model_copy(update={"worker_queue": queue, "worker_metrics_port": worker_port}),
        WORKER_HEALTH_FILE=str(tmp_path / "w"),
    )
    worker = ChildProcess("jobs_worker", worker_env, tmp_path / "worker.log")
    try:
        async with private_api(private) as (stub, channel):
            await worker.wait_for_log("ready on queue")
            yield Metered(stub, channel, api_port, worker_port)
    finally:
        await worker.stop()


async def test_api_and_worker_metrics_follow_the_work(settings, target, tmp_path: Path):
    key = uuid.uuid4().hex[:8]
    queue, idle_queue = f"metrics-{key}", f"metrics-idle-{key}"
    async with _metered(settings, queue, tmp_path, timedelta(milliseconds=300)) as metered:
        stub, api_port = metered.stub, metered.api_port
        before = await _scrape(api_port)
        job = await create(stub, http_job(target.url(f"/flaky/{key}?fail=1"), queue=queue))
        done = await wait_terminal(stub, job.last_execution.id, timeout=20)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetJob(api.GetJobRequest(id=str(uuid.uuid4())))
        # Waits on a queue no worker serves, so the queue gauges have something to show.
        await create(stub, http_job(target.url(f"/ok/{key}"), queue=idle_queue))
        await asyncio.sleep(1.0)
        after = await _scrape(api_port)
        worker_samples = await _scrape(metered.worker_port)

    assert done.state == pb.EXECUTION_STATE_SUCCEEDED

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    service = "jobscheduler.v1.JobService"
    assert moved("jobscheduler_jobs_created_total", kind="one_off") == 2
    assert moved("grpc_server_handled_total", grpc_service=service, grpc_method="CreateJob", grpc_code="OK") == 2
    assert moved("grpc_server_handled_total", grpc_service=service, grpc_method="GetJob", grpc_code="NOT_FOUND") == 1
    assert moved("grpc_server_handling_seconds_count", grpc_service=service, grpc_method="CreateJob") == 2
    assert _value(after, "jobscheduler_dependency_up", dependency="postgresql") == 1
    assert _value(after, "jobscheduler_dependency_up", dependency="redis") == 1
    assert _value(after, "jobscheduler_executions", queue=idle_queue, state="QUEUED") == 1
    assert _value(after, "jobscheduler_oldest_ready_age_seconds", queue=idle_queue) > 0

    assert _value(worker_samples, "jobscheduler_attempts_total", outcome="failure", error_kind="HTTP_STATUS") == 1
    assert _value(worker_samples, "jobscheduler_attempts_total", outcome="success", error_kind="") == 1
    assert _value(worker_samples, "jobscheduler_attempt_duration_seconds_count") == 2
    assert _value(worker_samples, "jobscheduler_executions_finished_total", state="RETRY_SCHEDULED") == 1
    assert _value(worker_samples, "jobscheduler_executions_finished_total", state="SUCCEEDED") == 1
    assert _value(worker_samples, "jobscheduler_dispatch_lag_seconds_count") == 2
    assert _value(worker_samples, "jobscheduler_in_flight_calls") == 0
    # The client's own process collector comes along.
    assert _value(worker_samples, "process_resident_memory_bytes") > 0


async def test_queue_gauges_read_zero_instead_of_vanishing_and_say_what_people_alert_on(
    settings, target, tmp_path: Path
):
    key = uuid.uuid4().hex[:8]
    queue = f"alerts-{key}"
    async with _metered(settings, queue, tmp_path, timedelta(milliseconds=200)) as metered:
        stub = metered.stub
        queues = queue_service_pb2_grpc.QueueServiceStub(metered.channel)
        failing = http_job(target.url(f"/status/500/{key}"), queue=queue)
        failing.retry_policy.max_attempts = 1
        dead = await wait_terminal(stub, (await create(stub, failing)).last_execution.id)
        slow = await create(stub, http_job(target.url(f"/sleep/30/{key}"), queue=queue))
        await wait_for_state(stub, slow.last_execution.id, {pb.EXECUTION_STATE_RUNNING})
        await stub.CancelExecution(api.CancelExecutionRequest(id=slow.last_execution.id))
        await queues.PauseQueue(queue_service_pb2.PauseQueueRequest(name=queue))
        await asyncio.sleep(1.0)  # a few gauge refreshes
        after = await _scrape(metered.api_port)

        # The session's api runs in this process too and sets the same gauge from a count of its
        # own, refreshed once a minute (METRICS_DEAD_LETTERS_INTERVAL): it may have set its older
        # 0 since this api's last refresh (every 200 ms), so read until this api's count shows.
        async def dead_letter_counted() -> bool:
            return _value(await _scrape(metered.api_port), "jobscheduler_dead_letters", queue=queue) == 1

        await eventually(dead_letter_counted, timeout=5)
        await queues.ResumeQueue(queue_service_pb2.ResumeQueueRequest(name=queue))

        async def cancelled_counted() -> bool:
            samples = await _scrape(metered.worker_port)
            return _value(samples, "jobscheduler_attempts_total", outcome="cancelled", error_kind="CANCELLED") == 1

        await eventually(cancelled_counted, timeout=10)

    assert dead.state == pb.EXECUTION_STATE_DEAD
    for state in ("SCHEDULED", "QUEUED", "RUNNING", "RETRY_SCHEDULED"):
        # The queue has nothing unfinished: every state reads 0, none is missing.
        assert after[("jobscheduler_executions", frozenset({"queue": queue, "state": state}.items()))] == 0
    assert after[("jobscheduler_oldest_ready_age_seconds", frozenset({"queue": queue}.items()))] == 0
    assert _value(after, "jobscheduler_queue_paused", queue=queue) == 1
    assert _value(after, "jobscheduler_workers", queue=queue) == 1
    for loop in ("scheduler", "queue-gauges"):
        assert _value(after, "jobscheduler_loop_last_pass_timestamp_seconds", loop=loop) > time.time() - 10
    # This api may not lead the reconciler or the purge (the session's api does), but the series are there.
    for loop in ("reconciler", "history-purge"):
        assert ("jobscheduler_loop_last_pass_timestamp_seconds", frozenset({"loop": loop}.items())) in after


async def test_what_a_queues_rate_limits_hold_back_is_a_gauge(settings, target, tmp_path: Path):
    key = uuid.uuid4().hex[:8]
    queue = f"held-{key}"
    async with _metered(settings, queue, tmp_path, timedelta(milliseconds=200)) as metered:
        queues = queue_service_pb2_grpc.QueueServiceStub(metered.channel)
        limits = queue_service_pb2.RateLimits(max_concurrent_dispatches=1)
        await queues.UpdateQueue(
            queue_service_pb2.UpdateQueueRequest(queue=queue_service_pb2.Queue(name=queue, rate_limits=limits))
        )
        jobs = [await create(metered.stub, http_job(target.url(f"/sleep/30/{key}"), queue=queue)) for _ in range(3)]

        async def held_back() -> bool:
            samples = await _scrape(metered.api_port)
            return (
                _value(samples, "jobscheduler_queue_held_back", queue=queue, reason="concurrency") == 2
                and _value(samples, "jobscheduler_queue_open_dispatches", queue=queue) == 1
            )

        await eventually(held_back, timeout=10)
        samples = await _scrape(metered.api_port)
        assert ("jobscheduler_queue_held_back", frozenset({"queue": queue, "reason": "rate"}.items())) in samples
        for job in jobs:
            await metered.stub.CancelExecution(api.CancelExecutionRequest(id=job.last_execution.id))
