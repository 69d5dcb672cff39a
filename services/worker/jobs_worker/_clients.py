"""The worker's HTTP clients: one pool per CONNECTIONS_PER_POOL calls of its concurrency.

httpcore's connection pool assigns each request by scanning every connection it holds (and every
queued request), under a lock, synchronously; for each idle connection it polls the socket and
counts the whole pool again (httpcore 1.0.9 counts every connection where it means the idle ones),
so a pass costs the square of the pool's size. With one pool of 8,000 open connections, profiled
with py-spy while the worker opened its 10,000 calls, that scan took 78 % of the worker's CPU and
held the event loop long enough for the worker's own lease to lapse. Pools of 256 still spent
more than half the worker's CPU in it when 1,000 calls due in the same second opened and were
answered (``make bench-scale``'s burst: p99 4.3 s late; 2.2 s with pools of 32). Sharding keeps
each scan to a few dozen connections; a call goes to the pool its execution id picks, so its
retries reuse the same pool's keep-alive connections.

Each pool may open as many connections as the worker runs calls: the execution ids spread the
calls about evenly, not exactly, and pools capped at their even share made ~140 calls of 10,000
wait for a connection of theirs to close, with room everywhere else. The worker's concurrency
(arq's max_jobs) is what bounds the connections.
"""

from __future__ import annotations

import math
import zlib

import anyio.lowlevel
import httpx

from jobs_common.egress import EgressPolicy
from jobs_worker._egress import guarded_client

__all__ = ["CONNECTIONS_PER_POOL", "HttpClients", "load_connection_backend"]

CONNECTIONS_PER_POOL = 32


class HttpClients:
    """Pools of about CONNECTIONS_PER_POOL of the ``concurrency`` calls each."""

    def __init__(self, policy: EgressPolicy, concurrency: int, timeout: httpx.Timeout) -> None:
        pools = max(1, math.ceil(concurrency / CONNECTIONS_PER_POOL))
        ssl_context = httpx.create_ssl_context(trust_env=False)  # one CA bundle for all pools
        # Idle connections cost every request of their pool a scan of them all (httpcore checks
        # each idle one against the whole pool), so a pool keeps about its share, for 5 s.
        keepalive = min(concurrency, CONNECTIONS_PER_POOL)
        self._clients = [guarded_client(policy, concurrency, timeout, ssl_context, keepalive) for _ in range(pools)]

    def __len__(self) -> int:
        return len(self._clients)

    def for_call(self, key: str) -> httpx.AsyncClient:
        """The client for the call ``key`` (an execution id): the same one every time."""
        return self._clients[zlib.crc32(key.encode()) % len(self._clients)]

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


async def load_connection_backend() -> None:
    """Loads what httpcore opens connections with: anyio imports its asyncio backend on first use,
    which took 170 ms on our 2-core machine, and the first call of every new worker paid it (a
    KEDA scale-up's first job; a job deleted 0.3 s after it was created was cancelled before its
    call went out). Called at start, the worker pays it before it is ready."""
    await anyio.lowlevel.checkpoint()
