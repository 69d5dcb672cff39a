"""A worker's JSON logs: one object per line, each line of a delivery carrying its job id,
execution id and attempt, and no credentials from the job's URL or headers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")


async def test_worker_lines_are_json_with_the_delivery_bound_and_no_secrets(settings, stub, target, tmp_path: Path):
    key = uuid.uuid4().hex[:8]
    queue = f"logs-{key}"
    env = settings_env(
        settings.model_copy(update={"worker_queue": queue, "log_format": "json"}),
        WORKER_HEALTH_FILE=str(tmp_path / "w"),
    )
    worker = ChildProcess("jobs_worker", env, tmp_path / "worker.log")
    try:
        await worker.wait_for_log("ready on queue")
        # (Credentials in the URL itself are refused at CreateJob; test_logs covers their masking.)
        job = http_job(target.url(f"/status/500/{key}"), queue=queue, retry_policy=pb.RetryPolicy(max_attempts=2))
        job.http_request.headers["Authorization"] = "Bearer tok-123456"
        job.http_request.headers["X-Api-Key"] = "s3cret-pw"
        created = await create(stub, job)
        done = await wait_terminal(stub, created.last_execution.id, timeout=20)
    finally:
        await worker.stop()

    assert done.state == pb.EXECUTION_STATE_DEAD
    text = worker.log()
    assert "s3cret-pw" not in text
    assert "tok-123456" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    outcomes = [
        line for line in lines if line.get("execution_id") == created.last_execution.id and "→" in line["event"]
    ]
    assert [(line["attempt"], line["job_id"], line["level"]) for line in outcomes] == [
        (1, created.id, "info"),
        (2, created.id, "info"),
    ]
    # arq's own start and end lines of each job are left for DEBUG: the lines above say more
    # (its line for a retry, with the delay, stays).
    arq_lines = [line["event"] for line in lines if line["logger"] == "arq.worker"]
    assert [event for event in arq_lines if created.last_execution.id in event and "↻" in event]
    assert not [event for event in arq_lines if "→" in event or "←" in event]
