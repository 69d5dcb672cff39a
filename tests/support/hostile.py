"""Hostile HTTP targets on raw sockets, one port per behaviour: an endless 10 GB body, a body
trickled at one byte per second, a 100 MB header, a TLS port that never answers the handshake,
and a gzip bomb (256 MiB of zeros in about 250 KB). Each counts the bytes it managed to send."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

_Behaviour = Callable[[asyncio.StreamWriter], Awaitable[None]]
_MEGABYTE = b"x" * (1024 * 1024)
BOMB_DECODED_BYTES = 256 * 1024 * 1024


@functools.cache
def _gzip_bomb() -> bytes:
    """BOMB_DECODED_BYTES of zeros, gzipped."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    packed = b"".join(packer.compress(zeros) for _ in range(BOMB_DECODED_BYTES // len(zeros)))
    return packed + packer.flush()


@dataclass
class HostileTargets:
    ports: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    _servers: list[asyncio.Server] = field(default_factory=list)

    def url(self, name: str) -> str:
        scheme = "https" if name == "stuck_tls" else "http"
        return f"{scheme}://127.0.0.1:{self.ports[name]}/{name}"

    async def start(self) -> None:
        _gzip_bomb()  # made now (0.8 s of CPU), not inside a handler while other calls wait
        behaviours: dict[str, _Behaviour] = {
            "ten_gb_body": self._ten_gb_body,
            "trickle": self._trickle,
            "huge_header": self._huge_header,
            "stuck_tls": self._stuck,
            "gzip_bomb": self._gzip_bomb,
        }
        for name, behaviour in behaviours.items():
            self.sent[name] = 0
            server = await asyncio.start_server(self._handler(name, behaviour), "127.0.0.1", 0)
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    def _handler(
        self, name: str, behaviour: _Behaviour
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                if name != "stuck_tls":
                    await reader.readuntil(b"\r\n\r\n")
                await behaviour(writer)
            writer.close()

        return handle

    async def _send(self, name: str, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.sent[name] += len(data)

    async def _ten_gb_body(self, writer: asyncio.StreamWriter) -> None:
        await self._send("ten_gb_body", writer, b"HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n")
        for _ in range(10 * 1024):
            await self._send("ten_gb_body", writer, _MEGABYTE)

    async def _trickle(self, writer: asyncio.StreamWriter) -> None:
        await self._send("trickle", writer, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        while True:
            await self._send("trickle", writer, b"x")
            await asyncio.sleep(1)

    async def _huge_header(self, writer: asyncio.StreamWriter) -> None:
        await self._send("huge_header", writer, b"HTTP/1.1 200 OK\r\nX-Huge: ")
        for _ in range(100):
            await self._send("huge_header", writer, _MEGABYTE)
        await self._send("huge_header", writer, b"\r\nContent-Length: 0\r\n\r\n")

    async def _gzip_bomb(self, writer: asyncio.StreamWriter) -> None:
        bomb = _gzip_bomb()
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
        await self._send("gzip_bomb", writer, head.encode() + bomb)

    async def _stuck(self, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)  # accepts the connection, never answers the ClientHello
