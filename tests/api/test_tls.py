"""TLS and mutual TLS on the gRPC port, with Python clients and the real grpcurl; probes use the
plaintext health-only port."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobs_api.server import RunningApi, running_api
from jobs_common.settings import Settings
from jobscheduler.v1 import job_service_pb2 as api
from jobscheduler.v1 import job_service_pb2_grpc
from tests.support.certs import Pki, make_pki
from tests.support.processes import settings_env
from tests.support.services import free_port

pytestmark = pytest.mark.usefixtures("api")  # the session's database, migrated

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls(settings: Settings, pki: Pki, *, mutual: bool) -> Settings:
    return settings.model_copy(
        update={
            "grpc_tls_cert_file": str(pki.server_cert),
            "grpc_tls_key_file": str(pki.server_key),
            "grpc_tls_client_ca_file": str(pki.ca) if mutual else "",
            "grpc_health_port": free_port(),
        }
    )


@pytest.fixture
async def tls_api(settings: Settings, pki: Pki) -> AsyncIterator[RunningApi]:
    async with running_api(_tls(settings, pki, mutual=False), run_migrations=False) as running:
        yield running


@pytest.fixture
async def mtls_api(settings: Settings, pki: Pki) -> AsyncIterator[RunningApi]:
    async with running_api(_tls(settings, pki, mutual=True), run_migrations=False) as running:
        yield running


async def _list_jobs(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await job_service_pb2_grpc.JobServiceStub(channel).ListJobs(api.ListJobsRequest(page_size=1), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _credentials(pki: Pki, client: tuple[Path, Path] | None = None) -> grpc.ChannelCredentials:
    key, cert = (client[1].read_bytes(), client[0].read_bytes()) if client else (None, None)
    return grpc.ssl_channel_credentials(pki.ca.read_bytes(), private_key=key, certificate_chain=cert)


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRPCURL, "-max-time", "10", *args], capture_output=True, text=True, check=False)


async def test_tls_serves_clients_that_trust_the_ca_and_refuses_plaintext(tls_api: RunningApi, pki: Pki):
    address = f"127.0.0.1:{tls_api.port}"
    async with grpc.aio.secure_channel(address, _credentials(pki)) as channel:
        assert await _list_jobs(channel) == grpc.StatusCode.OK
    async with grpc.aio.insecure_channel(address) as channel:
        assert await _list_jobs(channel) == grpc.StatusCode.UNAVAILABLE

    listed = await asyncio.to_thread(_grpcurl, "-cacert", str(pki.ca), address, "list")
    assert listed.returncode == 0, listed.stderr
    assert "jobscheduler.v1.JobService" in listed.stdout.split()
    # Without the CA the server's certificate is not trusted; plaintext gets no answer.
    assert (await asyncio.to_thread(_grpcurl, address, "list")).returncode != 0
    assert (await asyncio.to_thread(_grpcurl, "-plaintext", address, "list")).returncode != 0


async def test_mutual_tls_needs_a_client_certificate_from_the_client_ca(mtls_api: RunningApi, pki: Pki):
    address = f"127.0.0.1:{mtls_api.port}"
    async with grpc.aio.secure_channel(address, _credentials(pki, (pki.client_cert, pki.client_key))) as channel:
        assert await _list_jobs(channel) == grpc.StatusCode.OK
    for refused in (_credentials(pki), _credentials(pki, (pki.stranger_cert, pki.stranger_key))):
        async with grpc.aio.secure_channel(address, refused) as channel:
            assert await _list_jobs(channel) == grpc.StatusCode.UNAVAILABLE

    mutual = ["-cacert", str(pki.ca), "-cert", str(pki.client_cert), "-key", str(pki.client_key)]
    called = await asyncio.to_thread(
        _grpcurl, *mutual, "-d", '{"page_size": 1}', address, "jobscheduler.v1.JobService/ListJobs"
    )
    assert called.returncode == 0, called.stderr
    assert (await asyncio.to_thread(_grpcurl, "-cacert", str(pki.ca), address, "list")).returncode != 0


async def test_probes_use_the_plaintext_health_only_port(mtls_api: RunningApi, settings: Settings, pki: Pki):
    assert mtls_api.health_port is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mtls_api.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as only_health:
            await job_service_pb2_grpc.JobServiceStub(channel).ListJobs(api.ListJobsRequest(), timeout=5)
        assert only_health.value.code() == grpc.StatusCode.UNIMPLEMENTED

    # The container HEALTHCHECK reads the same settings as the api.
    configured = _tls(settings, pki, mutual=True).model_copy(update={"grpc_health_port": mtls_api.health_port})
    probe = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "jobs_api.healthcheck"],
        env=settings_env(configured),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (probe.returncode, probe.stdout.strip()) == (0, "SERVING")
    without = settings_env(configured, GRPC_HEALTH_PORT="0", GRPC_PORT=str(mtls_api.port))
    probe = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "jobs_api.healthcheck"], env=without, capture_output=True, text=True
    )
    assert probe.returncode == 1
    assert "set GRPC_HEALTH_PORT" in probe.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [("GRPC_TLS_CERT_FILE", "server.pem"), ("GRPC_TLS_KEY_FILE", "server.key"), ("GRPC_TLS_CLIENT_CA_FILE", "ca.pem")],
)
def test_tls_settings_must_be_complete(monkeypatch: pytest.MonkeyPatch, name: str, value: str):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="GRPC_TLS_"):
        Settings()
