"""The console process itself: what production refuses (plain HTTP on a reachable address, half
a TLS pair), HTTPS from CONSOLE_TLS_*, the container health check, a client pool that made-up
tokens cannot grow, and live streams that end when the browser leaves."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from jobs_api.server import RunningApi, running_api
from jobs_client import AsyncJobsClient, Connection, every, http_job
from jobs_common.settings import Settings
from jobs_console._clients import ClientPool
from jobs_console._settings import ConsoleSettings, InsecureConsoleError
from tests.console.conftest import start_console
from tests.support.certs import make_pki


def test_production_refuses_plain_http_where_others_can_reach_it():
    with pytest.raises(InsecureConsoleError, match=r"plain HTTP on 0\.0\.0\.0"):
        ConsoleSettings(host="0.0.0.0").check()
    ConsoleSettings(host="127.0.0.1").check()  # only this machine reaches it
    ConsoleSettings(host="0.0.0.0", allow_insecure=True).check()  # e.g. behind a TLS proxy
    ConsoleSettings(host="0.0.0.0", environment="development").check()
    ConsoleSettings(host="0.0.0.0", tls_cert_file="c.pem", tls_key_file="k.pem").check()
    with pytest.raises(ValueError, match="both CONSOLE_TLS_CERT_FILE and CONSOLE_TLS_KEY_FILE"):
        ConsoleSettings(tls_cert_file="c.pem").check()


def test_bad_port_and_the_environments_token_are_refused_or_ignored(monkeypatch):
    monkeypatch.setenv("CONSOLE_PORT", "eighty")
    with pytest.raises(ValueError, match="CONSOLE_PORT must be a port number"):
        ConsoleSettings.from_env()
    monkeypatch.setenv("CONSOLE_PORT", "8081")
    monkeypatch.setenv("JOBS_API_TOKEN", "the-operators-own-token-0123456789")
    # Each user signs in with their own token; the process's would act for every visitor.
    assert ConsoleSettings.from_env().api.token is None


async def test_https_from_console_tls_files_and_the_health_check(api: RunningApi, tmp_path: Path):
    pki = make_pki(tmp_path)
    console = await start_console(
        api.port,
        tmp_path / "console.log",
        ENVIRONMENT="production",
        CONSOLE_TLS_CERT_FILE=str(pki.server_cert),
        CONSOLE_TLS_KEY_FILE=str(pki.server_key),
    )
    try:
        assert "console on https://" in console.process.log()
        url = console.url.replace("http://", "https://").replace("127.0.0.1", "localhost")
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(pki.ca))) as http:
            assert (await http.get(f"{url}/healthz")).text == "ok"
            assert (await http.get(f"{url}/")).status_code == 200
        port = console.url.rsplit(":", 1)[1]
        env = {**os.environ, "CONSOLE_PORT": port, "CONSOLE_TLS_CERT_FILE": str(pki.server_cert)}
        check = await asyncio.create_subprocess_exec(sys.executable, "-m", "jobs_console.healthcheck", env=env)
        assert await check.wait() == 0
    finally:
        await console.process.stop()


async def test_made_up_tokens_cannot_grow_the_client_pool():
    pool = ClientPool(Connection("127.0.0.1:1"), size=4)
    first = pool.get("token-0")
    for n in range(50):
        pool.get(f"made-up-{n}")
    assert len(pool) == 4
    assert pool.get("made-up-49") is pool.get("made-up-49")
    assert pool.get("token-0") is not first  # evicted and closed, made again when used again
    await pool.close()
    assert len(pool) == 0


@pytest.mark.usefixtures("api")
async def test_a_browser_that_leaves_ends_its_watch(settings: Settings, tmp_path: Path):
    """With room for one stream in the api, a second live page works only once the console has
    ended the first page's WatchJob (its keep-alive write finds the browser gone)."""
    async with running_api(settings.model_copy(update={"streams_max": 1}), run_migrations=False) as small:
        console = await start_console(small.port, tmp_path / "console.log")
        try:
            async with AsyncJobsClient(Connection(f"127.0.0.1:{small.port}")) as sdk:
                job = await sdk.create_job(
                    http_job(
                        "https://hooks.example.com/leave", queue="console-idle", schedule=every(timedelta(hours=1))
                    )
                )
            async with httpx.AsyncClient(base_url=console.url, timeout=30) as http:
                assert await _first_event(http, job.id) != "error"  # holds the api's one stream, then leaves
                assert await _first_event(http, job.id) == "error"  # the first one has not ended yet
                for _ in range(40):  # the keep-alive comes within 10 s
                    await asyncio.sleep(0.5)
                    if await _first_event(http, job.id) != "error":
                        break
                else:
                    raise AssertionError("the first page's WatchJob never ended")
        finally:
            await console.process.stop()


async def _first_event(http: httpx.AsyncClient, job_id: str) -> str:
    """Opens the job's live stream, reads its first event and goes away (closing the socket)."""
    async with http.stream("GET", f"/events/jobs/{job_id}") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                return "error" if '"error"' in line else "change"
    return "none"
