"""The worker's HTTP clients are pools of a few hundred connections (httpcore scans a whole pool
for each request), with ``concurrency`` connections in all and a stable pool per execution."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid

import httpx

from jobs_common.egress import EgressPolicy
from jobs_worker._clients import CONNECTIONS_PER_POOL, HttpClients


def _pool_sizes(clients: HttpClients) -> list[int]:
    return [client._transport._pool._max_connections for client in clients._clients]  # type: ignore[attr-defined]


async def test_ten_thousand_calls_spread_over_pools_of_at_most_256():
    clients = HttpClients(EgressPolicy.from_settings("", ""), 10_000, httpx.Timeout(5))
    try:
        sizes = _pool_sizes(clients)
        assert len(clients) == 40
        assert max(sizes) <= CONNECTIONS_PER_POOL
        assert sum(sizes) >= 10_000
        keys = [str(uuid.uuid4()) for _ in range(2_000)]
        assert all(clients.for_call(key) is clients.for_call(key) for key in keys)
        assert len({id(clients.for_call(key)) for key in keys}) == 40  # every pool takes calls
    finally:
        await clients.aclose()


async def test_a_small_worker_keeps_one_pool():
    clients = HttpClients(EgressPolicy.from_settings("", ""), 50, httpx.Timeout(5))
    try:
        assert _pool_sizes(clients) == [50]
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
