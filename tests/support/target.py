"""A real local HTTP target that records every request it receives.

Routes (``{key}`` keeps tests apart; every request is recorded under its path):

* ``/ok/{key}``                        200 ``ok``
* ``/cookie/{key}``                    200 with ``Set-Cookie: session={key}; Path=/``
* ``/status/{code}/{key}``             that status; ``?retry_after=N`` adds ``Retry-After: N``
* ``/flaky/{key}?fail=N&code=C``       the first N requests get C (default 500), then 200;
                                       ``&retry_after=N`` adds ``Retry-After: N`` to the failures
* ``/sleep/{seconds}/{key}``           answers 200 after that many seconds
* ``/big/{nbytes}/{key}``              streams that many bytes (stops when the client leaves)
* ``/redirect/{code}/{key}?to=URL``    that 3xx status with ``Location: URL`` (without ``to``: itself)
* ``/encoded/{encoding}/{key}``        ``compressed <key>`` 1000 times, with that Content-Encoding: gzip,
                                       deflate (zlib), raw-deflate (sent as deflate) or corrupt (gzip)

It serves from a thread of its own, with its own event loop: a synchronous test (the fuzz tests
call a blocking gRPC channel) blocks the test session's loop for as long as it runs, and a target
on that loop would answer the session's 85-second call late, past its 90-second timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    time: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class TargetServer:
    host: str = "127.0.0.1"
    port: int = 0
    requests: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    _runner: web.AppRunner | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def received(self, path: str) -> list[Received]:
        return list(self.requests.get(path, []))

    async def start(self) -> None:
        """Starts serving on a thread of its own; returns once the port is bound."""
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._start_app())
            loop.run_forever()
            # Handlers still sleeping for a client that left (a cut 120-second call) end here.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="test-target", daemon=True)
        self._thread.start()
        while self.port == 0 and self._thread.is_alive():
            await asyncio.sleep(0.01)
        if self.port == 0:
            raise RuntimeError("the test target did not start")

    async def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)

    async def _start_app(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_route("*", "/ok/{key}", self._ok)
        app.router.add_route("*", "/cookie/{key}", self._cookie)
        app.router.add_route("*", "/status/{code}/{key}", self._status)
        app.router.add_route("*", "/flaky/{key}", self._flaky)
        app.router.add_route("*", "/sleep/{seconds}/{key}", self._sleep)
        app.router.add_route("*", "/big/{nbytes}/{key}", self._big)
        app.router.add_route("*", "/redirect/{code}/{key}", self._redirect)
        app.router.add_route("*", "/encoded/{encoding}/{key}", self._encoded)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests[request.path].append(
            Received(time.time(), request.method, request.path, dict(request.headers), body)
        )
        return await handler(request)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _cookie(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"Set-Cookie": f"session={request.match_info['key']}; Path=/"})

    async def _status(self, request: web.Request) -> web.Response:
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(status=int(request.match_info["code"]), text="status", headers=headers)

    async def _flaky(self, request: web.Request) -> web.Response:
        fail = int(request.query.get("fail", "1"))
        code = int(request.query.get("code", "500"))
        if len(self.requests[request.path]) <= fail:
            headers = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
            return web.Response(status=code, text="failing", headers=headers)
        return web.Response(text="recovered")

    async def _sleep(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.match_info["seconds"]))
        return web.Response(text="slept")

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(
            status=int(request.match_info["code"]), headers={"Location": request.query.get("to", request.path)}
        )

    async def _encoded(self, request: web.Request) -> web.Response:
        plain = f"compressed {request.match_info['key']} ".encode() * 1000
        wbits = {"gzip": 31, "deflate": 15, "raw-deflate": -15, "corrupt": 31}[request.match_info["encoding"]]
        packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
        body = packer.compress(plain) + packer.flush()
        if request.match_info["encoding"] == "corrupt":
            body = body[:20] + b"\xff" * 40 + body[60:]
        name = "gzip" if wbits == 31 else "deflate"
        return web.Response(body=body, headers={"Content-Encoding": name})

    async def _big(self, request: web.Request) -> web.StreamResponse:
        remaining = int(request.match_info["nbytes"])
        response = web.StreamResponse()
        response.content_length = remaining
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while remaining > 0:
                piece = chunk[: min(remaining, len(chunk))]
                await response.write(piece)
                remaining -= len(piece)
        except (ConnectionResetError, ConnectionError):
            pass
        return response
