"""This session's own PostgreSQL database and Redis DB index; nothing else is touched."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import uuid
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
_LOCK_KEY = "job-scheduler:test-session"


async def create_database() -> str:
    name = f"jobs_test_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return name


async def drop_database(name: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


async def claim_redis_db(session_id: str) -> int:
    """The first empty DB index (1-15) whose lock this session can take."""
    for index in range(1, 16):
        client = aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index)
        try:
            if await client.dbsize() == 0 and await client.set(_LOCK_KEY, session_id, nx=True, ex=6 * 3600):
                return index
        finally:
            await client.aclose()
    raise RuntimeError("no free Redis DB index (1-15) for this test session")


async def release_redis_db(index: int) -> None:
    client = aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of `count` consecutive ports that are all free now, for a process that numbers
    its ports from a base. They are taken below the kernel's ephemeral range (32768 and up), where
    no outgoing connection of a parallel test can land on one between this check and the bind."""
    for _ in range(200):
        base = random.randrange(20000, 32768 - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("0.0.0.0", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError(f"no {count} consecutive free ports between 20000 and 32768")


def start_private_redis(port: int, directory: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A Redis server of the test's own, on its own port: the one to stop or misconfigure."""
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
    )


async def wait_for_redis(client: aioredis.Redis, timeout: float = 10) -> None:
    """Waits until ``client``'s server answers a PING (a Redis just started)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                if await client.ping():
                    return
            except (RedisError, OSError):
                await asyncio.sleep(0.05)
