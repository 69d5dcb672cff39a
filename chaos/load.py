"""The client side of a chaos run: creates the run's jobs over gRPC and records, for each, what
CreateJob answered. Nothing is retried: a failed CreateJob stays unacknowledged, and if the api
had committed it before failing, the checker finds it in PostgreSQL (``recovered``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration

from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["Answer", "JobPlan", "Load"]

RUN_LABEL = "chaos-run"


@dataclass(frozen=True)
class JobPlan:
    """The n-th job of a run: the target answers ``status`` after ``sleep`` seconds."""

    n: int
    url: str
    sleep: float = 0.0
    status: int = 200
    timeout: float = 30.0
    max_attempts: int = 5


@dataclass
class Answer:
    n: int
    code: str  # "OK" or the gRPC status code's name
    sent: float
    at: float
    job_id: str = ""
    execution_id: str = ""

    @property
    def acknowledged(self) -> bool:
        return self.code == "OK"


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


class Load:
    def __init__(self, address: str, run: str) -> None:
        self.run = run
        self.answers: dict[int, Answer] = {}
        self.plans: dict[int, JobPlan] = {}
        # Reconnect quickly after the api restarts (gRPC's default backoff grows to 120 s).
        self._channel = grpc.aio.insecure_channel(
            address, options=[("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)]
        )
        self._stub = job_service_pb2_grpc.JobServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def create(self, plan: JobPlan) -> Answer:
        self.plans[plan.n] = plan
        job = pb.Job(
            http_request=pb.HttpRequest(url=plan.url),
            timeout=_duration(plan.timeout),
            retry_policy=pb.RetryPolicy(
                max_attempts=plan.max_attempts, min_backoff=_duration(0.1), max_backoff=_duration(1)
            ),
            labels={RUN_LABEL: self.run, "n": str(plan.n)},
        )
        sent = time.time()
        try:
            response = await self._stub.CreateJob(api.CreateJobRequest(job=job), timeout=10)
        except grpc.aio.AioRpcError as exc:
            answer = Answer(plan.n, exc.code().name, sent, time.time())
        else:
            answer = Answer(plan.n, "OK", sent, time.time(), response.job.id, response.job.last_execution.id)
        self.answers[plan.n] = answer
        return answer

    async def _wait_ready(self) -> None:
        """After a failed call: wait until the api is reachable again (a restart) instead of
        spending the plans on a known-dead address. A down dependency keeps it reachable."""
        await asyncio.sleep(0.1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._channel.channel_ready(), 30)

    async def create_all(self, plans: Iterable[JobPlan], concurrency: int, per_second: float | None = None) -> None:
        """Creates every plan with ``concurrency`` calls in flight, at most ``per_second`` a second."""
        pending = iter(plans)
        started = time.monotonic()
        issued = 0

        async def client() -> None:
            nonlocal issued
            for plan in pending:
                if per_second:
                    issued += 1
                    await asyncio.sleep(max(0.0, started + issued / per_second - time.monotonic()))
                answer = await self.create(plan)
                if not answer.acknowledged:
                    await self._wait_ready()

        await asyncio.gather(*(client() for _ in range(concurrency)))
