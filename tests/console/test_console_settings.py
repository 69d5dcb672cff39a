"""The console's own settings: what production refuses (plain HTTP on a reachable address, half
a TLS pair), HTTPS from CONSOLE_TLS_*, and the container health check against it."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from jobs_api.server import RunningApi
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
