"""Every grpcurl example in the README and in docs/ runs as written, with the real grpcurl
binary. Each ```bash block that calls grpcurl is tagged ``<!-- example:NAME -->`` (the walkthrough has its own
markers and test) and run here under the server it needs: plain, with tokens, with mutual TLS, or
as KEDA's scaler."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from pydantic import SecretStr

from jobs_api.server import running_api
from jobs_common.settings import Settings
from tests.support import services
from tests.support.certs import make_pki
from tests.support.grpcurl import grpcurl
from tests.support.jobs import eventually
from tests.support.processes import ChildProcess, settings_env
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[1]
# Where the examples live: the README and every page of the docs.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(?:<!-- (example:\w+|walkthrough:begin) -->\n)?```bash\n(.*?)```", re.S)

pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="the examples use jq (.ci/run installs it)")


def _examples() -> tuple[dict[str, str], list[str]]:
    """The tagged blocks by name, and the first line of every untagged block calling grpcurl."""
    tagged, untagged = {}, []
    for tag, body in _BLOCK.findall("\n".join(page.read_text() for page in PAGES)):
        if tag.startswith("example:"):
            tagged[tag.removeprefix("example:")] = body
        elif not tag and re.search(r"^\s*[^#\n]*\bgrpcurl ", body, re.M):
            untagged.append(body.splitlines()[0])
    return tagged, untagged


def test_every_grpcurl_example_is_run_by_a_test():
    tagged, untagged = _examples()
    assert untagged == [], "a block calls grpcurl but no test runs it: tag it <!-- example:NAME -->"
    assert set(tagged) == {
        "calls", "tokens", "tls", "mtls", "scaler", "limits", "priority", "dedup", "flow", "debounce"
    }  # fmt: skip


async def _run(name: str, env: dict[str, str], cwd: Path = ROOT, epilogue: str = "") -> str:
    script = _examples()[0][name] + epilogue
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        f'export PATH="{ROOT}/.venv/bin:$PATH"\n{script}',
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, out.decode()
    return out.decode()


async def test_more_calls_run_as_written(settings, target, key, tmp_path: Path):
    """On a database and Redis index of their own: the block pauses the default queue."""
    database = await services.create_database()
    redis_db = await services.claim_redis_db(f"readme-examples-{key}")
    own = settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}", "redis_db": redis_db}
    )
    path = f"/ok/{key}"
    try:
        async with running_api(own) as running:
            worker = ChildProcess("jobs_worker", settings_env(own), tmp_path / "worker.log")
            try:
                await worker.wait_for_log("ready on queue")
                env = {"API": f"127.0.0.1:{running.port}", "TARGET": target.url(path)}
                out = await _run("calls", env)
                # A reader may paste the block again: it runs again.
                await _run("calls", env)
                # The replay and RunJob each call the target once, each time.
                await eventually(lambda: len(target.received(path)) >= 4, timeout=15)
            finally:
                await worker.stop()
    finally:
        await services.release_redis_db(redis_db)
        await services.drop_database(database)
    assert '"state": "EXECUTION_STATE_CANCELLED"' in out
    assert re.search(r'"replay_of": "[0-9a-f-]{36}"', out), out
    # GetJob | jq: the next 5 fire times, 09:00 Berlin (CET or CEST).
    assert re.search(r'\[\n(  "\d{4}-\d\d-\d\dT0[78]:00:00Z",?\n){5}\]', out), out
    assert '"update_mask"' not in out
    assert '"url": "' + target.url(path) + '?v=2"' in out
    assert '"purged": "0"' in out  # -emit-defaults shows the zero (an int64: a JSON string)
    assert {r.headers["Idempotency-Key"] for r in target.received(path)}, "no call reached the target"


async def test_the_flow_control_examples_run_as_written(settings, key):
    """Rate limits, a priority, a flow key, a de-duplicated and a debounced create, on a database
    of their own (the blocks name the queue "emails" and keys a second run would find)."""
    database = await services.create_database()
    redis_db = await services.claim_redis_db(f"readme-flow-{key}")
    own = settings.model_copy(
        update={"database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}", "redis_db": redis_db}
    )
    try:
        async with running_api(own) as running:
            env = {"API": f"127.0.0.1:{running.port}"}
            names = ("limits", "priority", "dedup", "flow", "debounce")
            limits, priority, dedup, flow, debounce = [await _run(name, env) for name in names]
    finally:
        await services.release_redis_db(redis_db)
        await services.drop_database(database)
    assert '"max_concurrent_dispatches": 10' in limits, limits
    assert '"max_dispatches_per_second": 20' in limits, limits
    assert '"waiting_for_concurrency": "0"' in limits, limits
    assert priority.strip() == "9"
    first, second = dedup.split()
    assert first == second
    shown, stats = flow.splitlines()
    assert json.loads(shown) == {"key": "customer-acme", "max_concurrent": 2, "max_dispatches_per_second": 5}
    assert json.loads(stats) == {
        "flow_keys": "1",
        "waiting_for_key_concurrency": "0",
        "waiting_for_key_rate": "0",
        "busiest_flow_keys": [{"key": "default/customer-acme", "ready": "1", "open": "0"}],
    }
    answers = [line.split() for line in debounce.splitlines()]
    assert len({job_id for job_id, _ in answers}) == 1  # one job
    assert [url for _, url in answers] == [f"https://hooks.example.com/docs/7?rev={r}" for r in (1, 2, 3)]


@pytest.mark.usefixtures("api")  # the session's database, migrated
async def test_the_token_example_runs_as_written(settings):
    orders, billing = "orders-token-0123456789", "billing-token-0123456789"
    digest = hashlib.sha256(billing.encode()).hexdigest()
    configured = f"orders:{orders},billing:sha256:{digest}"
    secured = settings.model_copy(update={"api_tokens": SecretStr(configured)})
    async with running_api(secured, run_migrations=False) as running:
        env = {"API": f"127.0.0.1:{running.port}", "ORDERS_TOKEN": orders, "BILLING_TOKEN": billing}
        out = await _run("tokens", env, epilogue='echo "API_TOKENS=$API_TOKENS"\n')
    assert f"API_TOKENS={configured}" in out  # the block's recipe makes what the server was given
    assert "ERROR" not in out


@pytest.mark.usefixtures("api")  # the session's database, migrated
async def test_the_tls_examples_run_as_written(settings, tmp_path: Path):
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    for source, name in ((pki.ca, "ca.pem"), (pki.client_cert, "client.pem"), (pki.client_key, "client.key")):
        shutil.copy(source, tmp_path / name)
    token = "docs-token-0123456789"
    tls = settings.model_copy(
        update={
            "grpc_tls_cert_file": str(pki.server_cert),
            "grpc_tls_key_file": str(pki.server_key),
            "grpc_health_port": free_port(),
            "api_tokens": SecretStr(f"docs:{token}"),
        }
    )
    async with running_api(tls, run_migrations=False) as running:
        out = await _run("tls", {"API": f"localhost:{running.port}"}, cwd=tmp_path)
    assert "jobscheduler.v1.JobService" in out
    mutual = tls.model_copy(update={"grpc_tls_client_ca_file": str(pki.ca), "grpc_health_port": free_port()})
    async with running_api(mutual, run_migrations=False) as running:
        env = {"API": f"localhost:{running.port}", "HEALTH_API": f"127.0.0.1:{running.health_port}", "TOKEN": token}
        out = await _run("mtls", env, cwd=tmp_path)
        code, listed = await grpcurl("-plaintext", env["HEALTH_API"], "list")
    assert '"status": "SERVING"' in out
    # The health-only port describes health alone: nothing of the API is reachable there.
    assert code == 0, listed
    assert listed.split() == ["grpc.health.v1.Health"]


async def test_the_scaler_example_runs_as_written(api):
    out = await _run("scaler", {"API": f"127.0.0.1:{api.port}"})
    assert '"metricName": "jobscheduler-default-backlog"' in out, out
    assert re.search(r'"result": (true|false)', out), out  # -emit-defaults: false is shown


def _recipe() -> list[tuple[dict[str, str], str]]:
    """The by-hand recipe's commands: (environment, module) per line."""
    page = (ROOT / "docs" / "development.md").read_text()
    match = re.search(r"<!-- recipe:by-hand -->\n```bash\n(.*?)```", page, re.S)
    assert match, "docs/development.md has no by-hand recipe"
    commands = []
    for line in match.group(1).strip().splitlines():
        *assignments, python, dash_m, module = line.split()
        assert (python, dash_m) == (".venv/bin/python", "-m"), line
        commands.append((dict(a.split("=", 1) for a in assignments), module))
    return commands


@pytest.mark.usefixtures("api")  # the session's database, migrated
async def test_the_by_hand_recipe_starts_an_api_and_a_worker(settings, tmp_path: Path):
    """Run as written, except where this machine's other users must not be disturbed: the test's
    own database, Redis index and free ports stand in for the recipe's."""
    (api_env, api_module), (worker_env, worker_module) = _recipe()
    names = {name.upper() for name in Settings.model_fields}
    assert set(api_env) | set(worker_env) <= names
    assert api_env["DATABASE_URL"] == worker_env["DATABASE_URL"]
    assert api_env["REDIS_DB"] == worker_env["REDIS_DB"]
    assert api_env["GRPC_PORT"] != "50051"
    assert api_env["METRICS_PORT"] != worker_env["WORKER_METRICS_PORT"]
    port = free_port()
    own = {
        "DATABASE_URL": settings.database_url,
        "REDIS_DB": str(settings.redis_db),
        "GRPC_PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "WORKER_METRICS_PORT": str(free_port()),
        "WORKER_HEALTH_FILE": str(tmp_path / "worker.health"),
    }
    base = {k: v for k, v in os.environ.items() if k.upper() not in names}  # no settings leak in
    api_process = ChildProcess(
        api_module, {**base, **api_env, **{k: own[k] for k in api_env if k in own}}, tmp_path / "a.log"
    )
    worker = ChildProcess(
        worker_module, {**base, **worker_env, **{k: own[k] for k in worker_env if k in own}}, tmp_path / "w.log"
    )
    try:
        await api_process.wait_for_log("api listening")
        await worker.wait_for_log("ready on queue")
        code, out = await grpcurl("-plaintext", f"127.0.0.1:{port}", "grpc.health.v1.Health/Check")
        assert code == 0, out
        assert '"status": "SERVING"' in out
    finally:
        await worker.stop()
        await api_process.stop()
