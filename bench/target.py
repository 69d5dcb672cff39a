"""The benchmark's target: answers 200 at once and remembers when each execution arrived.

``POST /hit`` records (Idempotency-Key → arrival time) and answers (after ``?delay=`` seconds, if
given); ``GET /receipts`` returns and clears them; ``GET /stats`` says how many hits are open now
and at most since the last ``POST /reset``, in all and per ``?tag=`` of the hits; ``GET
/arrivals``, every hit's arrival time since then (repeats too; ``?tag=``: that tag's);
``POST /hold`` answers at the next ``POST /release`` (the long calls held in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

receipts: dict[str, float] = {}
arrivals: list[float] = []
held_open = 0
hits_open = 0
hits_open_max = 0
# Per ?tag= of the hits: open now, most open at once, arrival times.
tag_open: dict[str, int] = {}
tag_open_max: dict[str, int] = {}
tag_arrivals: dict[str, list[float]] = {}
released = asyncio.Event()


async def hit(request: web.Request) -> web.Response:
    global hits_open, hits_open_max
    now = time.time()
    receipts.setdefault(request.headers.get("Idempotency-Key", ""), now)
    arrivals.append(now)
    tag = request.query.get("tag", "")
    tag_arrivals.setdefault(tag, []).append(now)
    hits_open += 1
    hits_open_max = max(hits_open_max, hits_open)
    tag_open[tag] = tag_open.get(tag, 0) + 1
    tag_open_max[tag] = max(tag_open_max.get(tag, 0), tag_open[tag])
    try:
        delay = float(request.query.get("delay", 0))
        if delay:
            await asyncio.sleep(delay)
    finally:
        hits_open -= 1
        tag_open[tag] -= 1
    return web.Response(text="ok")


async def reset(request: web.Request) -> web.Response:
    global hits_open_max
    hits_open_max = hits_open
    arrivals.clear()
    tag_arrivals.clear()
    tag_open_max.clear()
    tag_open_max.update(tag_open)
    return web.Response(text="ok")


async def hold(request: web.Request) -> web.Response:
    global held_open
    held_open += 1
    waiting_for = released
    try:
        await waiting_for.wait()
    finally:
        held_open -= 1
    return web.Response(text="released")


async def release(request: web.Request) -> web.Response:
    """Answers every call held so far; later ones are held until the next release."""
    global released
    released.set()
    released = asyncio.Event()
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    tags = {tag: {"open": tag_open.get(tag, 0), "open_max": most} for tag, most in tag_open_max.items()}
    return web.json_response(
        {"held_open": held_open, "hits_open": hits_open, "hits_open_max": hits_open_max, "tags": tags}
    )


async def take_arrivals(request: web.Request) -> web.Response:
    if "tag" in request.query:
        return web.json_response(tag_arrivals.get(request.query["tag"], []))
    return web.json_response(arrivals)


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
    app.router.add_post("/hold", hold)
    app.router.add_post("/release", release)
    app.router.add_get("/receipts", take_receipts)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_get("/arrivals", take_arrivals)
    # A call whose client went away (a worker SIGKILLed) ends here too, and stops counting as open.
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=lambda _: None, handler_cancellation=True)


if __name__ == "__main__":
    main()
