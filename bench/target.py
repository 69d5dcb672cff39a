"""The benchmark's target: answers 200 at once and remembers when each execution arrived.

``POST /hit`` records (Idempotency-Key → arrival time); ``GET /receipts`` returns and clears them.
"""

from __future__ import annotations

import argparse
import time

from aiohttp import web

receipts: dict[str, float] = {}


async def hit(request: web.Request) -> web.Response:
    receipts.setdefault(request.headers.get("Idempotency-Key", ""), time.time())
    return web.Response(text="ok")


async def take_receipts(request: web.Request) -> web.Response:
    taken = dict(receipts)
    receipts.clear()
    return web.json_response(taken)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/hit", hit)
    app.router.add_get("/receipts", take_receipts)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=lambda _: None)


if __name__ == "__main__":
    main()
