"""Connecting through Redis Sentinel with real servers: the primary found by name, its own
password and database applied, the Sentinels' own password used, and a wrong one refused."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from jobs_common.arq_extension import connect, redis_settings
from jobs_common.settings import Settings
from tests.support.services import free_port, start_private_redis

MASTER = "sentinel-test"


@dataclasses.dataclass
class Deployment:
    primary_port: int
    sentinel_port: int


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    primary_port, sentinel_port = free_port(), free_port()
    primary = start_private_redis(primary_port, tmp_path, "--requirepass", "primary-secret")
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\nrequirepass sentinel-secret\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 1\n"
        f"sentinel auth-pass {MASTER} primary-secret\n"
    )
    sentinel = subprocess.Popen(["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL)
    try:
        yield Deployment(primary_port, sentinel_port)
    finally:
        for process in (sentinel, primary):
            process.kill()
            process.wait()


def _settings(deployment: Deployment, sentinel_password: str | None) -> Settings:
    return Settings(
        redis_sentinels=f"127.0.0.1:{deployment.sentinel_port}",
        redis_sentinel_master=MASTER,
        redis_sentinel_password=sentinel_password,
        redis_password="primary-secret",
        redis_db=3,
    )


async def test_the_primary_is_found_through_the_sentinels(deployment: Deployment):
    redis = await connect(redis_settings(_settings(deployment, "sentinel-secret")))
    try:
        await redis.set("through-sentinel", "yes")
        assert await redis.get("through-sentinel") == b"yes"
        info = await redis.info("server")
        assert info["tcp_port"] == deployment.primary_port  # the primary itself, not the Sentinel
        assert (await redis.client_info())["db"] == 3
    finally:
        await redis.aclose()


@pytest.mark.parametrize("password", [None, "wrong-password"])
async def test_the_sentinels_password_is_required(deployment: Deployment, password: str | None):
    settings = dataclasses.replace(redis_settings(_settings(deployment, password)), conn_retries=0)
    await asyncio.sleep(0.3)  # the Sentinel is up (else the refusal below is a connection error)
    with pytest.raises((AuthenticationError, ConnectionError, ResponseError)) as refused:
        await connect(settings)
    assert "auth" in str(refused.value).lower() or "password" in str(refused.value).lower()
