"""The worker's HTTP clients are pools of a few dozen connections (httpcore scans a whole pool
for each request), with ``concurrency`` connections in all and a stable pool per execution."""

from __future__ import annotations

import asyncio
import collections
import math
import ssl
import sys
import textwrap
import uuid
from typing import Any

import httpx

from jobs_common.egress import EgressPolicy
from jobs_worker._clients import CONNECTIONS_PER_POOL, HttpClients
from jobs_worker._egress import KEEPALIVE_EXPIRY
from tests.support.jobs import eventually


def _pool_sizes(clients: HttpClients) -> list[int]:
    return [client._transport._pool._max_connections for client in clients._clients]  # type: ignore[attr-defined]


async def test_ten_thousand_calls_spread_over_pools_of_about_32():
    clients = HttpClients(EgressPolicy.from_settings("", ""), 10_000, httpx.Timeout(5))
    try:
        assert len(clients) == math.ceil(10_000 / CONNECTIONS_PER_POOL) == 313
        keys = [str(uuid.uuid4()) for _ in range(10_000)]
        assert all(clients.for_call(key) is clients.for_call(key) for key in keys)
        load = collections.Counter(id(clients.for_call(key)) for key in keys)
        assert len(load) == 313  # every pool takes calls
        assert max(load.values()) < 2 * CONNECTIONS_PER_POOL
        # Each may open more than its share, but keeps about its share idle, and not for ever
        # (httpcore scans every idle connection against the whole pool on each request).
        pools = [client._transport._pool for client in clients._clients]  # type: ignore[attr-defined]
        assert {pool._max_connections for pool in pools} == {10_000}
        assert {pool._max_keepalive_connections for pool in pools} == {CONNECTIONS_PER_POOL}
        assert {pool._keepalive_expiry for pool in pools} == {KEEPALIVE_EXPIRY} == {5.0}
    finally:
        await clients.aclose()


async def test_a_pool_that_draws_more_than_its_share_lets_them_all_through(target, key):
    """300 calls make ten pools; 60 whose ids pick the first one (twice its even share of 30)
    all reach the target at once."""
    clients = HttpClients(EgressPolicy.from_settings("127.0.0.0/8", ""), 300, httpx.Timeout(30))
    assert len(clients) == 10
    first = clients.for_call("0")
    ids = [str(n) for n in range(2_000) if clients.for_call(str(n)) is first][:60]
    path = f"/sleep/4/{key}"
    try:
        calls = [asyncio.create_task(clients.for_call(i).post(target.url(path))) for i in ids]
        await eventually(lambda: len(target.received(path)) == 60, timeout=3.5)  # none waits
        assert [response.status_code for response in await asyncio.gather(*calls)] == [200] * 60
    finally:
        await clients.aclose()


async def test_a_small_worker_keeps_one_pool():
    clients = HttpClients(EgressPolicy.from_settings("", ""), 30, httpx.Timeout(5))
    try:
        assert _pool_sizes(clients) == [30]
    finally:
        await clients.aclose()


async def test_a_new_workers_first_call_loads_no_connection_code(target):
    """anyio imports its asyncio backend on first use (170 ms here): a worker loads it at start,
    so its first call does not pay it. Run in a fresh interpreter, where nothing is loaded yet."""
    url = target.url("/ok/first-call")
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        import httpx
        from jobs_common.egress import EgressPolicy
        from jobs_worker._clients import HttpClients, load_connection_backend

        async def main():
            clients = HttpClients(EgressPolicy.from_settings("127.0.0.0/8", ""), 10, httpx.Timeout(5))
            await load_connection_backend()
            before = set(sys.modules)
            response = await clients.for_call("first").post({url!r})
            loaded = {{name.split(".")[0] for name in set(sys.modules) - before}}
            print(response.status_code, sorted(loaded & {{"anyio", "httpcore", "httpx", "h11", "sniffio"}}))
            await clients.aclose()

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode()
    assert out.decode().strip() == "200 []"


def test_all_pools_share_one_tls_context(monkeypatch):
    """Loading the CA bundle takes ~10 ms: 313 pools that each made one (httpx's transport makes
    its own unless given one) delayed a 10,000-call worker's start by seconds."""
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    clients = HttpClients(EgressPolicy.from_settings("", ""), 10_000, httpx.Timeout(5))
    pools = [client._transport._pool for client in clients._clients]  # type: ignore[attr-defined]
    assert len(made) == 1
    assert {id(pool._ssl_context) for pool in pools} == {id(made[0])}


async def test_a_cookie_one_call_was_set_goes_out_with_no_later_call(target, key):
    """A pool's client serves every job whose execution picks it: a cookie it kept from one
    target's answer would go out with other jobs' (other tenants') calls to that domain."""
    clients = HttpClients(EgressPolicy.from_settings("127.0.0.0/8", ""), 1, httpx.Timeout(5))
    try:
        client = clients.for_call(str(uuid.uuid4()))
        setting = await client.post(target.url(f"/cookie/{key}"))
        assert setting.headers["set-cookie"] == f"session={key}; Path=/"  # the attempt still shows it
        await client.post(target.url(f"/ok/{key}"))
        await client.post(target.url(f"/ok/{key}"), headers={"Cookie": "own=1"})
    finally:
        await clients.aclose()
    plain, own = target.received(f"/ok/{key}")
    assert "Cookie" not in plain.headers
    assert own.headers["Cookie"] == "own=1"  # a job's own header goes as it asked
