"""The worker's HTTP clients are pools of a few hundred connections (httpcore scans a whole pool
for each request), with ``concurrency`` connections in all and a stable pool per execution."""

from __future__ import annotations

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
