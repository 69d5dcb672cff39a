"""jobctl as a user runs it: the installed console script against a real api and worker, its
JSON as the API's, tables for people, clear errors with meaningful exit codes and no traceback,
a confirmation before purging, watch following a job to its end, and shell completion."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from jobs_api.server import RunningApi, running_api
from jobs_common.settings import Settings
from tests.support.services import free_port
from tests.support.target import TargetServer

JOBCTL = Path(sys.executable).parent / "jobctl"  # what `make setup` installs into .venv/bin
IDLE = "jobctl-idle"  # no worker serves it


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def jobctl(address: str, *args: str, stdin: bytes = b"", **env: str) -> Run:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("JOBS_API_")}
    environment.update(JOBS_API_ADDRESS=address, COLUMNS="200", **env)
    process = await asyncio.create_subprocess_exec(
        str(JOBCTL),
        *args,
        env=environment,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    run = Run(process.returncode if process.returncode is not None else -1, out.decode(), err.decode())
    assert "Traceback" not in run.err, run.err
    return run


@pytest.fixture
def address(api: RunningApi) -> str:
    return f"127.0.0.1:{api.port}"


@pytest.mark.usefixtures("worker")
async def test_create_wait_get_list_as_json_and_tables(address: str, target: TargetServer, key: str, tmp_path: Path):
    body = tmp_path / "body.json"
    body.write_text('{"hello": "jobctl"}')
    made = await jobctl(
        address,
        "jobs", "create", "--url", target.url(f"/ok/{key}"), "-H", "X-Trace=abc", "--body", f"@{body}",
        "-l", f"cli={key}", "--max-attempts", "2", "--timeout", "20s", "--wait", "-o", "json",
    )  # fmt: skip
    assert made.code == 0, made.err
    job = made.json()
    assert job["state"] == "JOB_STATE_COMPLETED"
    assert job["lastExecution"]["state"] == "EXECUTION_STATE_SUCCEEDED"
    assert job["timeout"] == "20s"
    assert job["retryPolicy"]["maxAttempts"] == 2
    [received] = target.received(f"/ok/{key}")
    assert received.body == b'{"hello": "jobctl"}'
    assert received.headers["X-Trace"] == "abc"

    got = (await jobctl(address, "-o", "yaml", "jobs", "get", job["id"])).out
    assert f"id: {job['id']}" in got
    assert "url: " + target.url(f"/ok/{key}") in got
    listed = await jobctl(address, "jobs", "list", "--label", f"cli={key}", "-o", "json")
    assert [j["id"] for j in listed.json()["jobs"]] == [job["id"]]
    table = (await jobctl(address, "jobs", "list", "--label", f"cli={key}")).out
    assert table.splitlines()[0].split()[:3] == ["ID", "STATE", "QUEUE"]
    assert job["id"] in table
    assert "completed" in table

    execution = job["lastExecution"]["id"]
    attempts = (await jobctl(address, "executions", "get", execution)).out
    assert "succeeded" in attempts
    assert "200" in attempts
    assert [
        e["id"] for e in (await jobctl(address, "executions", "list", job["id"], "-o", "json")).json()["executions"]
    ] == [execution]


async def test_recurring_jobs_are_updated_paused_run_and_deleted(address: str):
    made = await jobctl(
        address, "-o", "json", "jobs", "create", "--url", "https://hooks.example.com/cli", "--queue", IDLE,
        "--cron", "0 9 * * MON-FRI", "--tz", "Europe/Paris", "--max-runs", "10", "--priority", "4",
        "--flow-key", "tenant-7", "--flow-concurrency", "2", "--flow-rate", "0.5",
    )  # fmt: skip
    assert made.code == 0, made.err
    job = made.json()
    assert job["priority"] == 4
    assert job["flowControl"] == {"key": "tenant-7", "maxConcurrent": 2, "maxDispatchesPerSecond": 0.5}
    unkeyed = await jobctl(address, "jobs", "create", "--url", "https://hooks.example.com/cli", "--flow-rate", "1")
    assert unkeyed.code == 2
    assert "limit a --flow-key" in unkeyed.err
    key = f"cli-{uuid.uuid4().hex}"
    once = [
        await jobctl(address, "-o", "json", "jobs", "create", "--url", "https://hooks.example.com/once",
                     "--queue", IDLE, "--dedup-key", key, "--dedup-window", "1m")
        for _ in range(2)
    ]  # fmt: skip
    assert once[0].json()["id"] == once[1].json()["id"]
    debounced = [
        await jobctl(address, "-o", "json", "jobs", "create", "--url", f"https://hooks.example.com/debounce/{i}",
                     "--queue", IDLE, "--dedup-key", f"{key}-d", "--dedup-window", "1m", "--debounce")
        for i in range(2)
    ]  # fmt: skip
    assert debounced[0].json()["id"] == debounced[1].json()["id"]
    assert debounced[1].json()["httpRequest"]["url"] == "https://hooks.example.com/debounce/1"
    assert job["schedule"]["cron"] == {"expression": "0 9 * * MON-FRI", "timeZone": "Europe/Paris"}
    shown = (await jobctl(address, "jobs", "get", job["id"])).out
    assert "upcoming" in shown
    assert "cron '0 9 * * MON-FRI' in Europe/Paris" in shown

    updated = (await jobctl(address, "-o", "json", "jobs", "update", job["id"], "--interval", "1h", "-X", "PUT")).json()
    assert updated["schedule"]["interval"] == "3600s"
    assert updated["httpRequest"]["method"] == "HTTP_METHOD_PUT"
    assert updated["httpRequest"]["url"] == "https://hooks.example.com/cli"  # untouched
    assert (await jobctl(address, "-o", "json", "jobs", "pause", job["id"])).json()["state"] == "JOB_STATE_PAUSED"
    assert (await jobctl(address, "-o", "json", "jobs", "resume", job["id"])).json()["state"] == "JOB_STATE_ACTIVE"
    ran = (await jobctl(address, "-o", "json", "jobs", "run", job["id"])).json()
    assert ran["execution"]["state"] == "EXECUTION_STATE_QUEUED"
    cancelled = await jobctl(address, "-o", "json", "executions", "cancel", ran["execution"]["id"])
    assert cancelled.json()["state"] == "EXECUTION_STATE_CANCELLED"
    assert (await jobctl(address, "-o", "json", "jobs", "delete", job["id"])).json()["state"] == "JOB_STATE_DELETED"


@pytest.mark.usefixtures("worker")
async def test_dead_letters_are_replayed_and_purged_after_a_confirmation(address: str, target: TargetServer, key: str):
    failed = await jobctl(
        address, "-o", "json", "jobs", "create", "--url", target.url(f"/status/503/{key}"), "--max-attempts", "1",
        "--wait",
    )  # fmt: skip
    assert failed.code == 6, failed.err  # the watched execution ended DEAD
    job = failed.json()
    dead = job["lastExecution"]["id"]
    listed = await jobctl(
        address, "-o", "json", "dead-letters", "list", "--job", job["id"], "--error-kind", "http_status"
    )
    assert [e["id"] for e in listed.json()["executions"]] == [dead]

    replayed = await jobctl(address, "-o", "json", "dead-letters", "replay", dead, str(uuid.uuid4()))
    assert [e["replayOf"] for e in replayed.json()["executions"]] == [dead]
    assert "skipped" in replayed.err  # the unknown id, said on stderr: stdout stays JSON
    replay = replayed.json()["executions"][0]["id"]
    for _ in range(200):
        state = (await jobctl(address, "-o", "json", "executions", "get", replay)).json()["state"]
        if state == "EXECUTION_STATE_DEAD":
            break
        await asyncio.sleep(0.05)
    assert state == "EXECUTION_STATE_DEAD"

    declined = await jobctl(address, "dead-letters", "purge", "--job", job["id"], stdin=b"n\n")
    assert declined.code == 1
    assert "Delete up to 1000 dead letters (job_id=" in declined.err
    still = await jobctl(address, "-o", "json", "dead-letters", "list", "--job", job["id"])
    assert len(still.json()["executions"]) == 1
    purged = await jobctl(address, "-o", "json", "dead-letters", "purge", "--job", job["id"], "--yes")
    assert purged.json() == {"purged": "1"}
    assert (await jobctl(address, "-o", "json", "dead-letters", "list", "--job", job["id"])).json() == {
        "executions": []
    }


@pytest.mark.usefixtures("worker")
async def test_watch_follows_a_job_to_its_end(address: str, target: TargetServer, key: str):
    # Due in 4 s: the watch (a new process) starts well before, even on a loaded machine.
    made = await jobctl(address, "-o", "json", "jobs", "create", "--url", target.url(f"/ok/{key}"), "--run-at", "+4s")
    job = made.json()
    watched = await jobctl(address, "jobs", "watch", job["id"], "-o", "json")
    assert watched.code == 0, watched.err
    changes = [json.loads(line) for line in watched.out.splitlines()]
    states = [change["execution"]["state"] for change in changes if "execution" in change]
    assert changes[-1]["job"]["state"] == "JOB_STATE_COMPLETED"
    assert states[0] == "EXECUTION_STATE_SCHEDULED"
    assert states[-1] == "EXECUTION_STATE_SUCCEEDED"
    people = await jobctl(address, "jobs", "watch", job["id"])
    assert "succeeded" in people.out


@pytest.mark.usefixtures("worker")
async def test_queues_and_workers(address: str, key: str):
    queue = f"jobctl-{key[:8]}"
    paused = (await jobctl(address, "-o", "json", "queues", "pause", queue)).json()
    assert paused["paused"] is True
    assert queue in (await jobctl(address, "queues", "list")).out
    stats = (await jobctl(address, "-o", "json", "queues", "stats", queue)).json()
    assert stats["queue"]["paused"] is True
    assert (await jobctl(address, "-o", "json", "queues", "resume", queue)).json().get("paused", False) is False
    kept = await jobctl(
        address, "-o", "json", "queues", "update", queue, "--history-retention", "2d", "--dead-letter-retention", "0"
    )
    assert kept.json()["historyRetention"] == "172800s"
    assert kept.json()["deadLetterRetention"] == "0s"
    assert "forever" in (await jobctl(address, "queues", "list")).out
    limited = await jobctl(
        address, "queues", "update", queue, "--max-dispatches-per-second", "2.5", "--max-concurrent-dispatches", "3"
    )
    assert "2.5/s (burst 3), 3 at once" in limited.out
    shown = (await jobctl(address, "queues", "stats", queue)).out
    assert "2.5/s (burst 3), 3 at once; 0 open, 0 waiting for a slot, 0 for a token" in shown
    unlimited = (await jobctl(address, "-o", "json", "queues", "update", queue, "--reset", "rate_limits")).json()
    assert unlimited.get("rateLimits", {}) == {}
    workers = (await jobctl(address, "-o", "json", "workers", "list", "--queue", "default")).json()["workers"]
    assert workers
    assert all(w["queue"] == "default" for w in workers)
    assert "LOAD" in (await jobctl(address, "workers", "list")).out


async def test_queue_stats_show_the_busiest_flow_keys(address: str, key: str):
    queue = f"jobctl-flow-{key[:8]}"  # no worker serves it: the jobs stay ready
    for _ in range(2):
        made = await jobctl(address, "jobs", "create", "--url", "https://hooks.example.com/flow", "--queue", queue,
                            "--flow-key", "tenant-x", "--flow-concurrency", "1")  # fmt: skip
        assert made.code == 0, made.err
    shown = (await jobctl(address, "queues", "stats", queue)).out
    assert "1 with jobs ready; 0 waiting for their key's slot, 0 for its token" in shown
    assert "default/tenant-x (2 ready, 0 open)" in shown
    assert "rate limits" in shown


async def test_errors_name_the_field_and_exit_meaningfully(address: str, settings: Settings):
    invalid = await jobctl(address, "jobs", "create", "--url", "ftp://example.com/x", "--queue", IDLE)
    assert invalid.code == 1
    assert "job.http_request.url" in invalid.err
    missing = await jobctl(address, "jobs", "get", str(uuid.uuid4()))
    assert missing.code == 3
    assert "not found" in missing.err
    for args, option in (
        (("jobs", "create", "--url", "https://x.example", "--interval", "fortnight"), "--interval"),
        (("jobs", "create", "--url", "https://x.example", "--run-at", "2030-01-01T09:00"), "--run-at"),
        (("jobs", "create", "--url", "https://x.example", "-H", "no-equals"), "--header"),
        (("jobs", "create", "--url", "https://x.example", "--body", "@/nonexistent/body"), "--body"),
        (("jobs", "create", "--url", "https://x.example", "--cron", "@daily", "--interval", "1h"), "--cron"),
        (("jobs", "update", str(uuid.uuid4())), "nothing to change"),
        (("dead-letters", "list", "--error-kind", "sadness"), "--error-kind"),
    ):
        usage = await jobctl(address, *args)
        assert usage.code == 2, (args, usage.err)
        assert option in usage.err, usage.err
    nobody = await jobctl(f"127.0.0.1:{free_port()}", "--timeout", "3", "queues", "list")
    assert nobody.code == 5
    assert "error:" in nobody.err

    tokens = "cli-reader/reader:cli-reader-token-0123456789"
    async with running_api(
        settings.model_copy(update={"api_tokens": SecretStr(tokens)}), run_migrations=False
    ) as secured:
        there = f"127.0.0.1:{secured.port}"
        stranger = await jobctl(there, "queues", "list", JOBS_API_TOKEN="wrong-token-wrong-token")
        assert stranger.code == 4
        reader = await jobctl(
            there, "--token", "cli-reader-token-0123456789", "jobs", "create", "--url", "https://x.example"
        )
        assert reader.code == 4
        assert "ROLE_REQUIRED" in reader.err


async def test_shell_completion(address: str):
    script = await jobctl(address, "completion", "bash")
    assert "_JOBCTL_COMPLETE=bash_complete" in script.out
    completed = await jobctl(
        address, _JOBCTL_COMPLETE="bash_complete", COMP_WORDS="jobctl dead-letters p", COMP_CWORD="2"
    )
    assert completed.out.split() == ["plain,purge"]


async def test_brackets_from_users_and_targets_are_printed_not_read_as_markup(address: str, key: str):
    """Rich reads "[/x]" as a closing tag; jobctl prints what users and targets send as it is."""
    odd = await jobctl(address, "jobs", "watch", "[/x]")  # the spinner names the id before the API refuses it
    assert odd.code == 1
    assert "'[/x]' is not a UUID" in odd.err
    url = "https://hooks.example.com/a[/b]"  # short: the list cuts URLs at 60 characters
    made = await jobctl(address, "-o", "json", "jobs", "create", "--url", url, "--queue", IDLE, "-l", f"odd={key}")
    assert made.code == 0, made.err
    shown = await jobctl(address, "jobs", "get", made.json()["id"])
    assert url in shown.out
    listed = await jobctl(address, "jobs", "list", "-l", f"odd={key}")
    assert url in listed.out
