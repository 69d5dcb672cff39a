"""The worker's HTTP connections: a keep-alive connection the server closed while it was idle is
seen as closed before the next request would go out on it (httpcore asks its stream whether the
socket is readable), over plain TCP and over TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from jobs_common.egress import EgressPolicy
from jobs_worker._egress import guarded_client
from tests.support.certs import make_pki

LOOPBACK = EgressPolicy.from_settings("127.0.0.0/8", "")
IDLE_CLOSE_S = 0.1


@dataclass
class ClosingServer:
    """Answers each request with 200 and keep-alive, then closes the connection once it has been
    idle IDLE_CLOSE_S (as servers with a short keep-alive timeout do), without saying so."""

    tls: ssl.SSLContext | None = None
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_CLOSE_S)
                except (TimeoutError, asyncio.IncompleteReadError):
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def plain_server() -> AsyncIterator[ClosingServer]:
    server = ClosingServer()
    await server.start()
    yield server
    await server.stop()


async def _two_calls_apart(client: httpx.AsyncClient, url: str) -> list[int]:
    first = await client.get(url)
    await asyncio.sleep(IDLE_CLOSE_S * 4)  # the server has closed the idle connection by now
    second = await client.get(url)
    return [first.status_code, second.status_code]


async def test_a_connection_the_server_closed_while_idle_is_not_reused(plain_server: ClosingServer):
    client = guarded_client(LOOPBACK, 4, httpx.Timeout(5))
    try:
        assert await _two_calls_apart(client, f"http://127.0.0.1:{plain_server.port}/") == [200, 200]
    finally:
        await client.aclose()
    assert plain_server.connections == 2


async def test_the_same_over_tls(tmp_path: Path):
    pki = make_pki(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki.server_cert, pki.server_key)
    server = ClosingServer(tls=server_tls)
    await server.start()
    client = guarded_client(LOOPBACK, 4, httpx.Timeout(5), ssl.create_default_context(cafile=pki.ca))
    try:
        assert await _two_calls_apart(client, f"https://127.0.0.1:{server.port}/") == [200, 200]
    finally:
        await client.aclose()
        await server.stop()
    assert server.connections == 2
