"""The console's web application: pages, live fragments, server-sent events and the actions
(pause, resume, replay, cancel, purge), each a call of the API made with the signed-in user's
token, so the API's roles decide what each user may do."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from jobs_client import (
    AsyncJobsClient,
    InvalidArgumentError,
    JobsError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from jobs_console import _html as html
from jobs_console._clients import ClientPool
from jobs_console._settings import ConsoleSettings
from jobscheduler.v1 import resources_pb2 as pb

__all__ = ["TOKEN_COOKIE", "make_app"]

TOKEN_COOKIE = "jobs_console_token"
STATIC = Path(__file__).parent / "static"
_POOL: web.AppKey[ClientPool] = web.AppKey("pool", ClientPool)
_SETTINGS: web.AppKey[ConsoleSettings] = web.AppKey("settings", ConsoleSettings)
_QUEUES_EVERY = 2.0  # seconds between two queue figures pushed to an open overview
_TICK_EVERY = 3.0
_KEEP_ALIVE_EVERY = 10.0  # seconds between comments that find a browser gone
_T = TypeVar("_T")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _client(request: web.Request) -> AsyncJobsClient:
    return request.app[_POOL].get(request.cookies.get(TOKEN_COOKIE))


async def _first(items: AsyncIterator[_T], limit: int) -> list[_T]:
    """Up to ``limit`` items of a listing, its pages fetched as needed."""
    found: list[_T] = []
    async for item in items:
        found.append(item)
        if len(found) == limit:
            break
    return found


def _page(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, content_type="text/html", status=status, headers={"Cache-Control": "no-store"})


def _is_fragment(request: web.Request) -> bool:
    return request.path.startswith(("/fragments/", "/events/"))


@web.middleware
async def _api_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """An API error is a page saying what went wrong (or, for a fragment, its status)."""
    try:
        return await handler(request)
    except UnauthenticatedError:
        if _is_fragment(request):
            raise web.HTTPUnauthorized(text="sign in again") from None
        raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs})) from None
    except JobsError as error:
        status = 502
        if isinstance(error, NotFoundError):
            status = 404
        elif isinstance(error, InvalidArgumentError):
            status = 400
        elif isinstance(error, PermissionDeniedError):
            status = 403
        elif isinstance(error, UnavailableError):
            status = 503
        if _is_fragment(request):
            return web.Response(status=status, text=error.message)
        message = error.message if not isinstance(error, UnavailableError) else f"cannot reach the API: {error.message}"
        return _page(html.error_page(_ERROR_TITLES.get(status, "Error"), message, dict(error.field_violations)), status)


_ERROR_TITLES = {400: "Invalid request", 403: "Not allowed", 404: "Not found", 503: "API unavailable"}


@web.middleware
async def _same_origin_posts(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """A form post must come from the console's own pages (with the SameSite=Strict cookie, the
    second guard against cross-site requests)."""
    if request.method == "POST":
        origin = request.headers.get("Origin") or request.headers.get("Referer") or ""
        if urlsplit(origin).netloc != request.host:
            return _page(html.error_page("Not allowed", "a form of another site posted here"), 403)
    return await handler(request)


async def healthz(_request: web.Request) -> web.Response:
    """The process answers (the API's own health is grpc.health.v1's business)."""
    return web.Response(text="ok")


# Sign in and out.


async def login_form(request: web.Request) -> web.Response:
    return _page(html.login_page(request.query.get("next", "/")))


def _safe_next(path: str) -> str:
    return path if path.startswith("/") and not path.startswith("//") else "/"


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    token, next_path = str(form.get("token", "")).strip(), _safe_next(str(form.get("next", "/")))
    try:
        await request.app[_POOL].get(token).get_queue_stats("default")
    except UnauthenticatedError:
        return _page(html.login_page(next_path, "That token is not one the API accepts."), 401)
    response = web.HTTPSeeOther(next_path)
    response.set_cookie(
        TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.app[_SETTINGS].https, path="/"
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(TOKEN_COOKIE, path="/")
    raise response


# Queues.


async def _queue_stats(client: AsyncJobsClient) -> list[Any]:
    names = [queue.name async for queue in client.list_queues()]
    return list(await asyncio.gather(*(client.get_queue_stats(name) for name in names)))


async def queues(request: web.Request) -> web.Response:
    return _page(html.queues_page(await _queue_stats(_client(request)), request.query.get("notice", "")))


async def queues_fragment(request: web.Request) -> web.Response:
    return _page(html.queues_fragment(await _queue_stats(_client(request))))


async def _queue_action(request: web.Request, paused: bool) -> web.Response:
    name = str((await request.post()).get("name", ""))
    client = _client(request)
    await (client.pause_queue(name) if paused else client.resume_queue(name))
    notice = f"Queue {name} {'paused: no new claims' if paused else 'resumed'}."
    raise web.HTTPSeeOther("/?" + urlencode({"notice": notice}))


async def pause_queue(request: web.Request) -> web.Response:
    return await _queue_action(request, paused=True)


async def resume_queue(request: web.Request) -> web.Response:
    return await _queue_action(request, paused=False)


# Jobs and executions.


async def jobs(request: web.Request) -> web.Response:
    queue = request.query.get("queue", "")
    found = await _first(_client(request).list_jobs(queue=queue, page_size=100), 100)
    return _page(html.jobs_page(found, queue))


async def _job_parts(request: web.Request) -> tuple[pb.Job, list[pb.Execution]]:
    client, job_id = _client(request), request.match_info["job_id"]
    job = await client.get_job(job_id)
    return job, await _first(client.list_executions(job_id, page_size=50), 50)


async def job(request: web.Request) -> web.Response:
    return _page(html.job_page(*await _job_parts(request)))


async def job_fragment(request: web.Request) -> web.Response:
    return _page(html.job_fragment(*await _job_parts(request)))


async def execution(request: web.Request) -> web.Response:
    found = await _client(request).get_execution(request.match_info["execution_id"])
    return _page(html.execution_page(found, request.query.get("notice", "")))


async def execution_fragment(request: web.Request) -> web.Response:
    return _page(html.execution_fragment(await _client(request).get_execution(request.match_info["execution_id"])))


async def replay_execution(request: web.Request) -> web.Response:
    replay = await _client(request).replay_execution(request.match_info["execution_id"])
    raise web.HTTPSeeOther(f"/executions/{replay.id}?" + urlencode({"notice": "Replayed: this is the new execution."}))


async def cancel_execution(request: web.Request) -> web.Response:
    cancelled = await _client(request).cancel_execution(request.match_info["execution_id"])
    raise web.HTTPSeeOther(f"/executions/{cancelled.id}?" + urlencode({"notice": "Cancelled."}))


# Dead letters.

_ERROR_KINDS = {html.error_kind(number): number for _, number in pb.ErrorKind.items() if number}


def _filters(values: Any, prefix: str = "") -> dict[str, str]:
    return {name: str(values.get(prefix + name, "")).strip() for name in html.DEAD_LETTER_FILTERS}


def _criteria(filters: dict[str, str]) -> dict[str, Any]:
    kind = filters.get("error_kind", "")
    if kind and kind not in _ERROR_KINDS:
        raise web.HTTPBadRequest(text=f"unknown error kind {kind!r}")
    return {"queue": filters["queue"], "job_id": filters["job"], "error_kind": _ERROR_KINDS.get(kind, 0)}


async def dead_letters(request: web.Request) -> web.Response:
    filters = _filters(request.query)
    found = await _first(_client(request).list_dead_letters(**_criteria(filters), page_size=100), 100)
    return _page(html.dead_letters_page(found, filters, request.query.get("notice", "")))


async def replay_dead_letters(request: web.Request) -> web.Response:
    form = await request.post()
    ids = [str(value) for value in form.getall("ids", [])]
    back = _filters(form, "back_")
    if not ids:
        notice = "Select the dead letters to replay first."
    else:
        answer = await _client(request).replay_dead_letters(ids)
        notice = f"Replayed {len(answer.executions)}" + (
            f"; {len(answer.skipped_ids)} were no longer dead letters." if answer.skipped_ids else "."
        )
        if len(answer.executions) == 1:
            raise web.HTTPSeeOther(f"/executions/{answer.executions[0].id}?" + urlencode({"notice": notice}))
    raise web.HTTPSeeOther("/dead-letters?" + urlencode({**{k: v for k, v in back.items() if v}, "notice": notice}))


async def purge_confirmation(request: web.Request) -> web.Response:
    filters = _filters(request.query)
    # One more than a purge takes, to say whether there are more.
    count = len(await _first(_client(request).list_dead_letters(**_criteria(filters), page_size=1000), 1001))
    return _page(html.purge_confirmation_page(min(count, 1000), count > 1000, filters))


async def purge(request: web.Request) -> web.Response:
    form = await request.post()
    filters = _filters(form)
    if form.get("confirm") != "yes":
        raise web.HTTPSeeOther("/dead-letters/purge?" + urlencode({k: v for k, v in filters.items() if v}))
    purged = await _client(request).purge_dead_letters(**_criteria(filters), limit=1000)
    notice = f"Purged {purged} dead letters."
    raise web.HTTPSeeOther("/dead-letters?" + urlencode({**{k: v for k, v in filters.items() if v}, "notice": notice}))


# Workers.


async def workers(request: web.Request) -> web.Response:
    return _page(html.workers_page(await _client(request).list_workers()))


async def workers_fragment(request: web.Request) -> web.Response:
    return _page(html.workers_fragment(await _client(request).list_workers()))


# Live: server-sent events.


async def _event_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, data: object) -> None:
    await response.write(f"data: {json.dumps(data)}\n\n".encode())


async def _serve_events(request: web.Request, events: AsyncGenerator[dict[str, object], None]) -> web.StreamResponse:
    """Writes each event of ``events`` as it comes, and a comment every few seconds: a write to a
    browser that has gone fails, which ends the stream (and closes ``events``, so a WatchJob
    under it ends too) even while no event comes."""
    response = await _event_stream(request)

    async def forward() -> None:
        async with contextlib.aclosing(events):
            async for event in events:
                await _send(response, event)

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(_KEEP_ALIVE_EVERY)
            await response.write(b": keep-alive\n\n")

    tasks = [asyncio.create_task(forward()), asyncio.create_task(keep_alive())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    error = next(iter(done)).exception()
    if isinstance(error, JobsError):
        with contextlib.suppress(ConnectionResetError):
            await _send(response, {"error": error.message})
    elif error is not None and not isinstance(error, ConnectionResetError):
        raise error
    return response


async def _job_changes(client: AsyncJobsClient, job_id: str) -> AsyncGenerator[dict[str, object], None]:
    async with contextlib.aclosing(client.watch(job_id)) as changes:
        async for change in changes:
            state = pb.ExecutionState.Name(change.execution.state) if change.HasField("execution") else ""
            yield {"execution": change.execution.id, "state": state}
    yield {"end": True}


async def job_events(request: web.Request) -> web.StreamResponse:
    """WatchJob, one event per change (the page then fetches its fragment); the first event is
    the job as it is now."""
    return await _serve_events(request, _job_changes(_client(request), request.match_info["job_id"]))


async def _queue_figures(client: AsyncJobsClient) -> AsyncGenerator[dict[str, object], None]:
    while True:
        stats = await _queue_stats(client)
        yield {
            "queues": [
                {
                    "name": s.queue.name,
                    "paused": s.queue.paused,
                    "waiting": s.scheduled + s.queued + s.running + s.retry_scheduled,
                    "succeeded_last_minute": s.succeeded_last_minute,
                }
                for s in stats
            ]
        }
        await asyncio.sleep(_QUEUES_EVERY)


async def queue_events(request: web.Request) -> web.StreamResponse:
    """Every queue's figures every two seconds (the overview's chart and table)."""
    return await _serve_events(request, _queue_figures(_client(request)))


async def _ticks() -> AsyncGenerator[dict[str, object], None]:
    while True:
        await asyncio.sleep(_TICK_EVERY)
        yield {"tick": True}


async def tick_events(request: web.Request) -> web.StreamResponse:
    """A tick every few seconds, for pages that refresh a fragment on a clock (workers)."""
    return await _serve_events(request, _ticks())


async def _close_pool(app: web.Application) -> None:
    await app[_POOL].close()


def make_app(settings: ConsoleSettings) -> web.Application:
    app = web.Application(middlewares=[_same_origin_posts, _api_errors])
    app[_SETTINGS] = settings
    app[_POOL] = ClientPool(settings.api)
    app.on_cleanup.append(_close_pool)
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/login", login_form),
            web.post("/login", login),
            web.post("/logout", logout),
            web.get("/", queues),
            web.get("/fragments/queues", queues_fragment),
            web.get("/events/queues", queue_events),
            web.post("/queues/pause", pause_queue),
            web.post("/queues/resume", resume_queue),
            web.get("/jobs", jobs),
            web.get("/jobs/{job_id}", job),
            web.get("/fragments/jobs/{job_id}", job_fragment),
            web.get("/events/jobs/{job_id}", job_events),
            web.get("/executions/{execution_id}", execution),
            web.get("/fragments/executions/{execution_id}", execution_fragment),
            web.post("/executions/{execution_id}/replay", replay_execution),
            web.post("/executions/{execution_id}/cancel", cancel_execution),
            web.get("/dead-letters", dead_letters),
            web.post("/dead-letters/replay", replay_dead_letters),
            web.get("/dead-letters/purge", purge_confirmation),
            web.post("/dead-letters/purge", purge),
            web.get("/workers", workers),
            web.get("/fragments/workers", workers_fragment),
            web.get("/events/tick", tick_events),
            web.static("/static", STATIC),
        ]
    )
    return app
