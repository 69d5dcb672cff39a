"""The nine faults of the suite. Each runs on a fresh private cluster, prints its figures and
returns an :class:`Outcome` whose ``failures`` name every pass condition that did not hold.

Two scales: SHORT runs in CI (``tests/test_chaos.py``, a few minutes for all nine), FULL is
``make chaos`` (10,000 jobs, 30-second outages, 90-second calls; tens of minutes)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chaos.checker import Report, check, percentiles, recovery_times, wait_settled
from chaos.cluster import Cluster
from chaos.load import Answer, JobPlan, Load
from chaos.target import RecordingTarget
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["FULL", "SCENARIOS", "SHORT", "Outcome", "Scale"]


@dataclass(frozen=True)
class Scale:
    name: str
    # Process settings. FULL keeps the production defaults that set recovery times.
    lease_ttl: timedelta
    heartbeat: timedelta
    reconcile_interval: timedelta
    reconcile_grace: timedelta
    # 1. SIGKILL workers
    kill_jobs: int
    long_fraction: float
    long_sleep: tuple[float, float]
    kill_every: tuple[float, float]
    kill_window: float
    # 2. api killed between commit and enqueue
    crash_jobs: int
    crash_probability: float
    # 3. Redis flushed, then restarted empty
    redis_jobs: int
    redis_rate: float
    # 4. PostgreSQL stopped
    pg_jobs: int
    pg_rate: float
    pg_outage: float
    # 5. rolling SIGTERM
    rolling_sleep: float
    rolling_drain: timedelta
    rolling_rate: float
    # 6. always 500
    dead_jobs: int
    # 7. SIGKILL workers that hold thousands of long calls each
    held_jobs: int
    held_sleep: tuple[float, float]
    held_kill_every: tuple[float, float]
    held_kill_window: float
    settle_timeout: float = 600.0
    # 8. the Redis primary SIGKILLed, Sentinel promotes the replica
    failover_jobs: int = 300
    failover_rate: float = 30.0
    # 9. the PostgreSQL primary stopped (immediate), the standby promoted after a delay
    pg_failover_jobs: int = 300
    pg_failover_rate: float = 25.0
    pg_failover_delay: float = 2.0


SHORT = Scale(
    name="short",
    lease_ttl=timedelta(seconds=3),
    heartbeat=timedelta(milliseconds=500),
    reconcile_interval=timedelta(seconds=1),
    reconcile_grace=timedelta(seconds=2),
    kill_jobs=300,
    long_fraction=0.05,
    long_sleep=(3, 8),
    kill_every=(2, 3),
    kill_window=10,
    crash_jobs=200,
    crash_probability=0.03,
    redis_jobs=300,
    redis_rate=50,
    pg_jobs=400,
    pg_rate=25,
    pg_outage=6,
    rolling_sleep=4,
    rolling_drain=timedelta(seconds=8),
    rolling_rate=4,
    dead_jobs=30,
    held_jobs=300,
    held_sleep=(4, 8),
    held_kill_every=(2, 3),
    held_kill_window=8,
    settle_timeout=120,
)

FULL = Scale(
    name="full",
    lease_ttl=timedelta(seconds=4),
    heartbeat=timedelta(seconds=1),
    reconcile_interval=timedelta(seconds=10),
    reconcile_grace=timedelta(seconds=10),
    kill_jobs=10_000,
    long_fraction=0.02,
    long_sleep=(30, 90),
    kill_every=(5, 10),
    kill_window=120,
    crash_jobs=2_000,
    crash_probability=0.01,
    redis_jobs=3_000,
    redis_rate=100,
    pg_jobs=2_400,
    pg_rate=40,
    pg_outage=30,
    rolling_sleep=90,
    rolling_drain=timedelta(seconds=95),
    rolling_rate=1,
    dead_jobs=200,
    held_jobs=6_000,
    held_sleep=(20, 40),
    held_kill_every=(8, 12),
    held_kill_window=40,
    failover_jobs=3_000,
    failover_rate=60,
    pg_failover_jobs=2_400,
    pg_failover_rate=40,
    pg_failover_delay=10,
)


@dataclass
class Outcome:
    name: str
    report: Report
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.name, "passed": self.passed, "failures": self.failures, **self.report.as_dict()}


def _require(report: Report, **expected: int) -> list[str]:
    return [
        f"{name} = {got}, expected {want}" for name, want in expected.items() if (got := getattr(report, name)) != want
    ]


# Every scenario demands these: nothing acknowledged is lost or missing, everything settles, and
# fencing holds (one request per attempt, each with its attempt row).
_ALWAYS = {
    "lost": 0,
    "acknowledged_without_row": 0,
    "unexpected": 0,
    "not_terminal": 0,
    "committed_never_delivered": 0,
    "same_attempt_delivered_twice": 0,
    "delivery_without_attempt_row": 0,
}


class Stack:
    """One scenario's cluster, target and client."""

    def __init__(self, cluster: Cluster, target: RecordingTarget, load: Load) -> None:
        self.cluster = cluster
        self.target = target
        self.load = load
        self.settled_at = 0.0

    async def settle_and_check(self, timeout: float) -> Report:
        settle = await wait_settled(self.cluster.settings.database_url, self.load.run, timeout)
        self.settled_at = time.time()
        report = await check(self.cluster.settings.database_url, self.load, self.target.deliveries)
        report.figures["settle_s"] = settle
        return report


@contextlib.asynccontextmanager
async def _stack(
    name: str,
    scale: Scale,
    workdir: Path,
    workers: int,
    api_env: dict[str, str] | None = None,
    *,
    with_sentinel: bool = False,
    with_standby: bool = False,
    **settings: Any,
) -> AsyncIterator[Stack]:
    base = Settings(
        environment="development",  # no tokens: the suite's own processes on loopback
        worker_lease_ttl=scale.lease_ttl,
        worker_heartbeat_interval=scale.heartbeat,
        reconcile_interval=scale.reconcile_interval,
        reconcile_grace=scale.reconcile_grace,
        health_check_interval=timedelta(seconds=1),
        egress_allow_networks="127.0.0.0/8",  # the recording target
        **settings,
    )
    target = RecordingTarget()
    await target.start()
    cluster = Cluster(
        workdir / name, base, workers, api_env or {}, with_sentinel=with_sentinel, with_standby=with_standby
    )
    try:
        await cluster.start()
        load = Load(cluster.address, run=name)
        try:
            yield Stack(cluster, target, load)
        finally:
            await load.close()
    finally:
        await cluster.stop()
        await target.stop()


async def kill_workers(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """3 workers; most jobs answer at once, some take long_sleep; a random worker is SIGKILLed
    every kill_every seconds for kill_window seconds and restarted at once."""
    async with _stack("kill-workers", scale, workdir, workers=3) as stack:
        plans = []
        for n in range(scale.kill_jobs):
            sleep = rng.uniform(*scale.long_sleep) if rng.random() < scale.long_fraction else 0.0
            plans.append(JobPlan(n, stack.target.url(n, sleep=sleep), sleep, timeout=sleep + 15))
        kills: list[tuple[float, int]] = []

        async def killer() -> None:
            stop_at = time.monotonic() + scale.kill_window
            while time.monotonic() < stop_at:
                await asyncio.sleep(rng.uniform(*scale.kill_every))
                index = rng.randrange(3)
                killed_at = time.time()
                kills.append((killed_at, await stack.cluster.kill_worker(index)))
                await stack.cluster.start_worker(index)

        await asyncio.gather(stack.load.create_all(plans, concurrency=16), killer())
        report = await stack.settle_and_check(scale.settle_timeout)
        recoveries = await recovery_times(stack.cluster.settings.database_url, stack.load.run, kills)
        report.figures.update(kills=len(kills), recovery_s=percentiles(recoveries))
    return Outcome("kill-workers", report, _require(report, **_ALWAYS, attempted=report.acknowledged))


async def kill_held_workers(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """3 workers, each holding up to a third of ``held_jobs`` long calls at once (2,000 at full
    scale); a random worker is SIGKILLed every held_kill_every seconds for held_kill_window
    seconds, with all its calls open, and restarted at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the target holds every call open
    try:
        async with _stack(
            "kill-held-workers", scale, workdir, workers=3, worker_max_concurrent_jobs=scale.held_jobs
        ) as stack:
            plans = []
            for n in range(scale.held_jobs):
                sleep = rng.uniform(*scale.held_sleep)
                plans.append(JobPlan(n, stack.target.url(n, sleep=sleep), sleep, timeout=sleep + 15))
            kills: list[tuple[float, int]] = []

            async def killer() -> None:
                await asyncio.sleep(scale.held_sleep[0] / 2)  # the first calls are open
                stop_at = time.monotonic() + scale.held_kill_window
                while time.monotonic() < stop_at:
                    index = rng.randrange(3)
                    kills.append((time.time(), await stack.cluster.kill_worker(index)))
                    await stack.cluster.start_worker(index)
                    await asyncio.sleep(rng.uniform(*scale.held_kill_every))

            await asyncio.gather(stack.load.create_all(plans, concurrency=32), killer())
            report = await stack.settle_and_check(scale.settle_timeout)
            recoveries = await recovery_times(stack.cluster.settings.database_url, stack.load.run, kills)
            report.figures.update(kills=len(kills), recovery_s=percentiles(recoveries))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return Outcome("kill-held-workers", report, _require(report, **_ALWAYS, attempted=report.acknowledged))


async def crash_api(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """The api SIGKILLs itself after a commit and before the enqueue (FAULT_CRASH_AFTER_COMMIT),
    over and over; a supervisor restarts it. Unanswered CreateJobs that did commit must run."""
    api_env = {"FAULT_CRASH_AFTER_COMMIT": str(scale.crash_probability)}
    async with _stack("crash-api", scale, workdir, workers=2, api_env=api_env) as stack:
        crashes = 0
        creating = asyncio.ensure_future(
            stack.load.create_all((JobPlan(n, stack.target.url(n)) for n in range(scale.crash_jobs)), concurrency=4)
        )
        while not creating.done():
            if stack.cluster.api_died():
                crashes += 1
                await stack.cluster.start_api()
            await asyncio.sleep(0.05)
        await creating
        # The last crash may have come with the last job; the restarted api reconciles.
        if stack.cluster.api_died():
            crashes += 1
            await stack.cluster.start_api()
        report = await stack.settle_and_check(scale.settle_timeout)
        report.figures["api_crashes"] = crashes
    failures = _require(report, **_ALWAYS)
    if crashes == 0:
        failures.append("the fault hook never fired")
    return Outcome("crash-api", report, failures)


def _mixed_plans(target: RecordingTarget, count: int, rng: random.Random, max_sleep: float) -> list[JobPlan]:
    plans = []
    for n in range(count):
        sleep = rng.uniform(0, max_sleep) if rng.random() < 0.3 else 0.0
        plans.append(JobPlan(n, target.url(n, sleep=sleep), sleep, timeout=sleep + 15))
    return plans


async def _at(delay: float, action: Callable[[], Awaitable[None]]) -> None:
    await asyncio.sleep(delay)
    await action()


async def lose_redis(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """A stream of jobs; a third of the way in, FLUSHALL; two thirds in, Redis is killed and
    started again empty (no persistence)."""
    async with _stack("lose-redis", scale, workdir, workers=2) as stack:
        duration = scale.redis_jobs / scale.redis_rate
        restart_s = 1.0

        async def restart() -> None:
            stack.cluster.redis.kill()
            await asyncio.sleep(restart_s)
            stack.cluster.redis.start()
            await stack.cluster.redis.wait_ready()

        await asyncio.gather(
            stack.load.create_all(
                _mixed_plans(stack.target, scale.redis_jobs, rng, 2.0), concurrency=8, per_second=scale.redis_rate
            ),
            _at(duration / 3, stack.cluster.redis.flushall),
            _at(duration * 2 / 3, restart),
        )
        report = await stack.settle_and_check(scale.settle_timeout)
        report.figures.update(faults="FLUSHALL, then kill -9 and restart without persistence")
    return Outcome("lose-redis", report, _require(report, **_ALWAYS))


async def stop_postgres(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """A stream of jobs (some calls of up to 3 s, so outcomes come back during the outage);
    PostgreSQL is stopped (immediate mode: every connection drops) for pg_outage seconds."""
    async with _stack("stop-postgres", scale, workdir, workers=2) as stack:
        duration = scale.pg_jobs / scale.pg_rate
        outage: dict[str, float] = {}

        async def outage_window() -> None:
            await asyncio.to_thread(stack.cluster.postgres.stop)
            outage["start"] = time.time()  # stopped: from here no commit can happen
            await asyncio.sleep(scale.pg_outage)
            outage["restarting"] = time.time()
            await asyncio.to_thread(stack.cluster.postgres.start)
            outage["end"] = time.time()

        await asyncio.gather(
            stack.load.create_all(
                _mixed_plans(stack.target, scale.pg_jobs, rng, 3.0), concurrency=8, per_second=scale.pg_rate
            ),
            _at(duration / 4, outage_window),
        )
        report = await stack.settle_and_check(scale.settle_timeout)
        # Calls made and answered entirely while PostgreSQL was down: none of them may be OK.
        in_outage = [
            a for a in stack.load.answers.values() if outage["start"] <= a.sent and a.at <= outage["restarting"]
        ]
        report.figures.update(
            outage_s=round(outage["end"] - outage["start"], 1),
            answers_during_outage=dict(Counter(a.code for a in in_outage)),
            settled_after_restart_s=round(stack.settled_at - outage["end"], 1),
            # Calls whose answer came while PostgreSQL was down: each outcome must have been kept
            # and recorded afterwards, not paid for with a second call (duplicated counts those).
            calls_answered_during_outage=sum(
                1 for d in stack.target.deliveries if outage["start"] <= d.end <= outage["end"]
            ),
        )
    # Outcomes that came back during the outage were kept and recorded later, not called again.
    failures = _require(report, **_ALWAYS, duplicated=0)
    if any(a.acknowledged for a in in_outage):
        failures.append("CreateJob answered OK while PostgreSQL was down")
    if not report.figures["calls_answered_during_outage"]:
        failures.append("no call was answered during the outage: the scenario tested nothing of the kind")
    return Outcome("stop-postgres", report, failures)


async def rolling_restart(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """3 workers with drain deadline rolling_drain; a stream of rolling_sleep-second calls; each
    worker in turn gets SIGTERM, drains, exits and is replaced before the next one is stopped."""
    async with _stack("rolling-restart", scale, workdir, workers=3, worker_drain_timeout=scale.rolling_drain) as stack:
        sleep = scale.rolling_sleep
        exit_codes: list[int] = []
        rolled = asyncio.Event()

        def plans() -> Any:
            n = 0
            while not rolled.is_set():
                yield JobPlan(n, stack.target.url(n, sleep=sleep), sleep, timeout=sleep + 5)
                n += 1

        async def roll() -> None:
            await asyncio.sleep(sleep / 2)  # calls are in flight on every worker
            for index in range(3):
                exit_codes.append(
                    await stack.cluster.worker(index).stop(timeout=scale.rolling_drain.total_seconds() + 30)
                )
                await stack.cluster.start_worker(index)
            rolled.set()

        await asyncio.gather(stack.load.create_all(plans(), concurrency=2, per_second=scale.rolling_rate), roll())
        report = await stack.settle_and_check(scale.settle_timeout)
        report.figures["worker_exit_codes"] = exit_codes
    failures = _require(report, **_ALWAYS, cut=0, duplicated=0, interrupted_attempts=0, succeeded=report.committed)
    if exit_codes != [0, 0, 0]:
        failures.append(f"worker exit codes {exit_codes}, expected [0, 0, 0]")
    return Outcome("rolling-restart", report, failures)


async def always_500(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """Every call answers 500: each job gets exactly max_attempts (3) deliveries, then is DEAD."""
    async with _stack("always-500", scale, workdir, workers=2) as stack:
        plans = [
            JobPlan(n, stack.target.url(n, status=500), status=500, max_attempts=3) for n in range(scale.dead_jobs)
        ]
        await stack.load.create_all(plans, concurrency=8)
        report = await stack.settle_and_check(scale.settle_timeout)
        attempts = sorted(
            {tuple(sorted(d.attempt for d in stack.target.deliveries if d.n == n)) for n in range(scale.dead_jobs)}
        )
        report.figures["attempt_numbers_seen"] = [list(a) for a in attempts]
    failures = _require(report, **_ALWAYS, dead=report.committed, duplicated=0, short_of_attempts=0)
    if attempts != [(1, 2, 3)]:
        failures.append(f"attempt numbers delivered per job: {attempts}, expected only (1, 2, 3)")
    return Outcome("always-500", report, failures)


Scenario = Callable[[Scale, Path, random.Random], Awaitable[Outcome]]


def _refusal_window(refused: list[Answer], fault_at: float) -> float:
    """Seconds from the fault to the answer of the last CreateJob that was not OK (0: none)."""
    return round(max((a.at for a in refused), default=fault_at) - fault_at, 1)


async def redis_failover(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """Redis behind Sentinel (a primary, a replica, three Sentinels) under a stream of jobs (some
    calls of up to 3 s); a third of the way in the primary is SIGKILLed and Sentinel promotes the
    replica, which may lack the primary's last writes (replication is asynchronous); two thirds in
    the old primary comes back (empty) and is made a replica. Every process finds the new primary
    through the Sentinels; what the promoted replica lacks comes back from PostgreSQL."""
    async with _stack("redis-failover", scale, workdir, workers=2, with_sentinel=True) as stack:
        sentinel = stack.cluster.sentinel
        assert sentinel is not None
        duration = scale.failover_jobs / scale.failover_rate
        moments: dict[str, float] = {}

        async def fail_over() -> None:
            old = await sentinel.primary_port()
            killed = await sentinel.kill_primary()
            moments["killed"] = time.time()
            while (await sentinel.primary_port()) in (old, None):
                await asyncio.sleep(0.1)
            moments["promoted"] = time.time()
            await asyncio.sleep(max(0.0, duration / 3 - (moments["promoted"] - moments["killed"])))
            killed.start()  # as it was configured: primary; Sentinel makes it a replica
            moments["returned"] = time.time()

        await asyncio.gather(
            stack.load.create_all(
                _mixed_plans(stack.target, scale.failover_jobs, rng, 3.0),
                concurrency=8,
                per_second=scale.failover_rate,
            ),
            _at(duration / 3, fail_over),
        )
        report = await stack.settle_and_check(scale.settle_timeout)
        replicas = await sentinel.replica_count()
        after_kill = [a for a in stack.load.answers.values() if a.sent >= moments["killed"]]
        # Calls that started after the promotion: workers claimed them from the new primary.
        claimed_from_new = sum(1 for d in stack.target.deliveries if d.start >= moments["promoted"])
        refused = [a for a in after_kill if not a.acknowledged]
        report.figures.update(
            faults="SIGKILL of the Redis primary; Sentinel promotes the replica; the old primary returns",
            promoted_after_s=round(moments["promoted"] - moments["killed"], 1),
            answers_after_kill=dict(Counter(a.code for a in after_kill)),
            unavailable_window_s=_refusal_window(refused, moments["killed"]),
            settled_after_kill_s=round(stack.settled_at - moments["killed"], 1),
            calls_started_after_promotion=claimed_from_new,
            replicas_after_return=replicas,
        )
    failures = _require(report, **_ALWAYS)
    if not any(a.acknowledged for a in after_kill):
        failures.append("no CreateJob answered OK after the failover: the api never found the new primary")
    if not claimed_from_new:
        failures.append("no call started after the promotion: the workers never found the new primary")
    if replicas != 1:
        failures.append(f"the returned primary is not the new primary's replica (Sentinel counts {replicas})")
    return Outcome("redis-failover", report, failures)


async def postgres_failover(scale: Scale, workdir: Path, rng: random.Random) -> Outcome:
    """PostgreSQL as a primary and a synchronous streaming standby (pg_basebackup), every process
    given both hosts with target_session_attrs=read-write. Under a stream of jobs (some calls of
    up to 3 s) the primary is stopped in immediate mode; pg_failover_delay later (a failover
    manager's decision time) the standby is promoted. Processes must follow on their own."""
    async with _stack("postgres-failover", scale, workdir, workers=2, with_standby=True) as stack:
        standby = stack.cluster.standby
        assert standby is not None
        duration = scale.pg_failover_jobs / scale.pg_failover_rate
        moments: dict[str, float] = {}
        # A recurring job (outside the run's label, calling nothing that answers): its ticks after
        # the promotion show the leader-locked scheduler resumed on the new primary.
        ticking = await _create_ticking_job(stack.cluster.address)

        async def fail_over() -> None:
            await asyncio.to_thread(stack.cluster.postgres.stop)
            moments["stopped"] = time.time()  # from here no commit can happen until the promotion
            await asyncio.sleep(scale.pg_failover_delay)
            moments["promoting"] = time.time()
            await asyncio.to_thread(standby.promote)
            moments["promoted"] = time.time()

        await asyncio.gather(
            stack.load.create_all(
                _mixed_plans(stack.target, scale.pg_failover_jobs, rng, 3.0),
                concurrency=8,
                per_second=scale.pg_failover_rate,
            ),
            _at(duration / 4, fail_over),
        )
        report = await stack.settle_and_check(scale.settle_timeout)
        ticks_after = await _ticks_after(stack.cluster.settings.database_url, ticking, moments["promoted"])
        after_stop = [a for a in stack.load.answers.values() if a.sent >= moments["stopped"]]
        in_switch = [a for a in after_stop if a.at <= moments["promoting"]]
        refused = [a for a in after_stop if not a.acknowledged]
        report.figures.update(
            faults="the primary stopped (immediate); the synchronous standby promoted",
            promoted_after_s=round(moments["promoted"] - moments["stopped"], 1),
            answers_during_switch=dict(Counter(a.code for a in in_switch)),
            answers_after_stop=dict(Counter(a.code for a in after_stop)),
            unavailable_window_s=_refusal_window(refused, moments["stopped"]),
            settled_after_promotion_s=round(stack.settled_at - moments["promoted"], 1),
            calls_answered_during_switch=sum(
                1 for d in stack.target.deliveries if moments["stopped"] <= d.end <= moments["promoted"]
            ),
            calls_started_after_promotion=sum(1 for d in stack.target.deliveries if d.start >= moments["promoted"]),
            scheduler_ticks_after_promotion=ticks_after,
        )
    failures = _require(report, **_ALWAYS, duplicated=0)
    if any(a.acknowledged for a in in_switch):
        failures.append("CreateJob answered OK while no primary was up")
    if not any(a.acknowledged and a.sent >= moments["promoted"] for a in after_stop):
        failures.append("no CreateJob answered OK after the promotion: the api never found the new primary")
    if not report.figures["calls_started_after_promotion"]:
        failures.append("no call started after the promotion: the workers never found the new primary")
    if not ticks_after:
        failures.append("no tick of the recurring job after the promotion: the scheduler did not resume")
    return Outcome("postgres-failover", report, failures)


async def _create_ticking_job(address: str) -> str:
    """A job every second, calling a port nothing listens on (its executions are what counts)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        job = pb.Job(
            http_request=pb.HttpRequest(url="http://127.0.0.1:9/ticking"),
            schedule=pb.Schedule(interval=Duration(seconds=1)),
            retry_policy=pb.RetryPolicy(max_attempts=1),
            queue="chaos-ticking",  # no worker serves it: nothing is called
        )
        return (await stub.CreateJob(api.CreateJobRequest(job=job))).job.id


async def _ticks_after(database_url: str, job_id: str, after: float) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT count(*) FROM executions WHERE job_id = :job AND tick_time > to_timestamp(:after)"),
                {"job": job_id, "after": after},
            )
            return int(found or 0)
    finally:
        await engine.dispose()


SCENARIOS: dict[str, Scenario] = {
    "kill-workers": kill_workers,
    "crash-api": crash_api,
    "lose-redis": lose_redis,
    "stop-postgres": stop_postgres,
    "rolling-restart": rolling_restart,
    "always-500": always_500,
    "kill-held-workers": kill_held_workers,
    "redis-failover": redis_failover,
    "postgres-failover": postgres_failover,
}
