"""One SDK client per token in use (each its own channel with the token on every call), the
least recently used closed beyond a bound, so that requests with made-up cookies cannot grow it."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import replace

from jobs_client import AsyncJobsClient, Connection

__all__ = ["ClientPool"]


class ClientPool:
    def __init__(self, connection: Connection, *, size: int = 64) -> None:
        self._connection = connection
        self._size = size
        self._clients: OrderedDict[str, AsyncJobsClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, token: str | None) -> AsyncJobsClient:
        key = hashlib.sha256((token or "").encode()).hexdigest()
        client = self._clients.get(key)
        if client is None:
            client = AsyncJobsClient(replace(self._connection, token=token or None), timeout=15.0)
            self._clients[key] = client
            while len(self._clients) > self._size:
                _, oldest = self._clients.popitem(last=False)
                closing = asyncio.get_running_loop().create_task(oldest.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        self._clients.move_to_end(key)
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        await asyncio.gather(*self._closing)
