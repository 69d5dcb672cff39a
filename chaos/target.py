"""The HTTP target of the chaos runs: answers ``/c/{n}`` (the n-th job of the run) with 200, or
with ``?status=``, after ``?sleep=`` seconds, and logs every request it receives with the
execution id (Idempotency-Key), the attempt number (X-Job-Attempt), and whether the caller was
still connected when the answer was ready (a call cut short by the caller is ``cut``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["Delivery", "RecordingTarget"]


@dataclass
class Delivery:
    n: int
    execution_id: str
    attempt: int
    start: float
    end: float = 0.0
    status: int = 0
    cut: bool = False


@dataclass
class RecordingTarget:
    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, n: int, *, sleep: float = 0.0, status: int = 200) -> str:
        query = [f"sleep={sleep:g}"] if sleep else []
        if status != 200:
            query.append(f"status={status}")
        return f"http://127.0.0.1:{self.port}/c/{n}" + ("?" + "&".join(query) if query else "")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/c/{n}", self._call)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _call(self, request: web.Request) -> web.Response:
        delivery = Delivery(
            n=int(request.match_info["n"]),
            execution_id=request.headers.get("Idempotency-Key", ""),
            attempt=int(request.headers.get("X-Job-Attempt", "0")),
            start=time.time(),
        )
        self.deliveries.append(delivery)
        await request.read()
        try:
            await asyncio.sleep(float(request.query.get("sleep", "0")))
        finally:
            delivery.end = time.time()
            delivery.cut = request.transport is None or request.transport.is_closing()
        delivery.status = int(request.query.get("status", "200"))
        return web.Response(status=delivery.status, text="chaos")
