"""Hostile targets against a real worker process: a 10 GB body, a 1 byte/s trickle, a 100 MB
header, a TLS handshake that never completes and a gzip bomb (256 MiB of zeros). Every attempt
ends within its timeout, the worker's memory stays flat, and ordinary calls made meanwhile are
not slowed down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobscheduler.v1 import resources_pb2 as pb
from tests.support.hostile import HostileTargets
from tests.support.jobs import create, http_job, seconds, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.target import TargetServer

pytestmark = pytest.mark.usefixtures("api")

TIMEOUT_S = 3
ROUNDS = 3
EACH = 5  # of every hostile kind per round
MEMORY_BUDGET_KB = 50 * 1024


@pytest.fixture
async def hostile() -> AsyncIterator[HostileTargets]:
    targets = HostileTargets()
    await targets.start()
    yield targets
    await targets.stop()


def _memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _seconds(attempt: pb.Attempt) -> float:
    return attempt.duration.seconds + attempt.duration.nanos / 1e9


async def test_hostile_targets_end_within_their_timeout_and_leave_memory_flat(
    settings, stub, target: TargetServer, hostile: HostileTargets, tmp_path: Path, capsys
):
    queue = f"hostile-{uuid.uuid4().hex[:8]}"
    env = settings_env(settings.model_copy(update={"worker_queue": queue}))
    worker = ChildProcess("jobs_worker", {**env, "WORKER_HEALTH_FILE": str(tmp_path / "w")}, tmp_path / "w.log")
    try:
        await worker.wait_for_log("ready on queue")
        # Warm up (imports, pools, one TLS context), then measure from here.
        await _run(stub, [http_job(target.url(f"/ok/warm-{queue}"), queue=queue)])
        baseline = _memory_kb(worker.pid, "VmRSS")
        for round_ in range(ROUNDS):
            kinds = [name for name in hostile.ports for _ in range(EACH)] + ["ordinary"] * EACH
            jobs = [
                http_job(
                    hostile.url(kind),
                    queue=queue,
                    timeout=seconds(TIMEOUT_S),
                    retry_policy=pb.RetryPolicy(max_attempts=1),
                )
                if kind != "ordinary"
                else http_job(target.url(f"/ok/{queue}-{round_}-{i}"), queue=queue)
                for i, kind in enumerate(kinds)
            ]
            by_kind: dict[str, list[pb.Execution]] = {}
            for kind, execution in zip(kinds, await _run(stub, jobs), strict=True):
                by_kind.setdefault(kind, []).append(execution)
            for execution in by_kind["ten_gb_body"]:
                [attempt] = execution.attempts
                assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
                assert attempt.response_body_truncated
                assert len(attempt.response_body) == settings.response_body_capture_bytes
            for execution in by_kind["gzip_bomb"]:
                [attempt] = execution.attempts
                assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
                assert attempt.response_body_truncated
                assert attempt.response_body == bytes(settings.response_body_capture_bytes)  # decoded, capped
            for kind, error_kind in (
                ("trickle", pb.ERROR_KIND_TIMEOUT),
                ("stuck_tls", pb.ERROR_KIND_TIMEOUT),
                ("huge_header", pb.ERROR_KIND_PROTOCOL),
            ):
                assert [e.attempts[0].error_kind for e in by_kind[kind]] == [error_kind] * EACH, kind
            for execution in (e for kind in hostile.ports for e in by_kind[kind]):
                assert _seconds(execution.attempts[0]) < TIMEOUT_S + 1.0
            assert all(e.state == pb.EXECUTION_STATE_SUCCEEDED for e in by_kind["ordinary"])
            slowest_ordinary = max(_seconds(e.attempts[0]) for e in by_kind["ordinary"])
            assert slowest_ordinary < 1.0
            rss, peak = _memory_kb(worker.pid, "VmRSS"), _memory_kb(worker.pid, "VmHWM")
            with capsys.disabled():
                print(
                    f"\nhostile round {round_ + 1}: RSS {baseline / 1024:.1f} → {rss / 1024:.1f} MiB "
                    f"(peak {peak / 1024:.1f} MiB); slowest ordinary call {slowest_ordinary * 1000:.0f} ms; "
                    f"sent by the targets: {', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in hostile.sent.items())}"
                )
            assert peak - baseline < MEMORY_BUDGET_KB
    finally:
        await worker.stop()


async def _run(stub, jobs: list[pb.Job]) -> list[pb.Execution]:
    created = await asyncio.gather(*(create(stub, job) for job in jobs))
    return list(await asyncio.gather(*(wait_terminal(stub, job.last_execution.id, timeout=60) for job in created)))
