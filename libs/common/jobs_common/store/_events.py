"""Job events: what migration 0004's triggers NOTIFY on channel ``job_events`` as each execution
or job state change commits, received over one LISTEN connection per process and handed to the
subscribers of each job.

Only watched jobs are notified (migration 0013): a job with a subscriber here has a row in
``watched_jobs`` naming this process, written before :meth:`JobEvents.subscribe` yields and
renewed with the connection's ping; the triggers send nothing for a job without an unexpired
row, so the change feed costs the hot path a primary-key probe, not a payload and a NOTIFY.

Notifications are not durable: one sent while the connection is down is gone. Subscribers are
therefore told to resync (re-read from the tables) whenever the connection is (re)made, and are
expected to resync on a timer as well, so a lost notification delays an update but never loses
the final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url

from jobs_common.domain import Execution, ExecutionState, JobState
from jobs_common.errors import LISTENER_ERRORS

__all__ = ["CHANNEL", "RESYNC", "ExecutionChanged", "JobChanged", "JobEvent", "JobEvents"]

logger = logging.getLogger(__name__)

CHANNEL = "job_events"
# The listening connection's application_name (visible in pg_stat_activity).
LISTENER_NAME = "job-scheduler-listen"


@dataclass(frozen=True, slots=True)
class ExecutionChanged:
    execution: Execution
    update_time: datetime


@dataclass(frozen=True, slots=True)
class JobChanged:
    state: JobState


class _Resync:
    """Sent to every subscriber when notifications may have been missed."""


RESYNC = _Resync()
JobEvent = ExecutionChanged | JobChanged | _Resync


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _required_time(value: Any) -> datetime:
    if not value:
        raise ValueError("a required timestamp is missing")
    return datetime.fromisoformat(value)


def parse_event(payload: str) -> tuple[str, ExecutionChanged | JobChanged]:
    """(job id, event) from a notification payload."""
    data = json.loads(payload)
    job_id = str(data["job_id"])
    if data["kind"] == "job":
        return job_id, JobChanged(JobState(data["state"]))
    execution = Execution(
        id=str(data["id"]),
        job_id=job_id,
        state=ExecutionState(data["state"]),
        attempt_count=int(data["attempt_count"]),
        schedule_time=_required_time(data["schedule_time"]),
        start_time=_time(data["start_time"]),
        end_time=_time(data["end_time"]),
        last_error=data["last_error"] or "",
        replay_of=str(data["replay_of"]) if data["replay_of"] else None,
        create_time=_required_time(data["create_time"]),
        tick_time=_time(data["tick_time"]),
    )
    return job_id, ExecutionChanged(execution, _required_time(data["update_time"]))


# A watched row outlives its process by at most this long; the ping renews it every 5 s.
WATCH_TTL_S = 30.0
_WATCH = """
INSERT INTO watched_jobs (job_id, watcher, expires_at)
SELECT job_id, $2, now() + make_interval(secs => $3) FROM unnest($1::uuid[]) AS job_id
ON CONFLICT (job_id, watcher) DO UPDATE SET expires_at = EXCLUDED.expires_at
"""
_UNWATCH = "DELETE FROM watched_jobs WHERE job_id = $1 AND watcher = $2"
_FORGET_WATCHER = "DELETE FROM watched_jobs WHERE watcher = $1"
_RENEW_WATCHES = "UPDATE watched_jobs SET expires_at = now() + make_interval(secs => $2) WHERE watcher = $1"
_DROP_EXPIRED_WATCHES = "DELETE FROM watched_jobs WHERE expires_at < now()"


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


def asyncpg_connect_args(database_url: str) -> dict[str, Any]:
    """asyncpg.connect's arguments for ``database_url``, as SQLAlchemy's asyncpg dialect reads
    it: several hosts (``?host=a:5432&host=b:5432``) become asyncpg's host and port lists, and
    ``target_session_attrs=read-write`` passes through, so this raw connection follows a
    failover as the engine's connections do."""
    url = make_url(database_url).set(drivername="postgresql+asyncpg")
    _, kwargs = PGDialect_asyncpg().create_connect_args(url)  # type: ignore[no-untyped-call]
    return dict(kwargs)


class JobEvents:
    """One LISTEN connection, kept open by :meth:`run`; :meth:`subscribe` per watcher."""

    def __init__(self, database_url: str, reconnect_delay: float = 1.0) -> None:
        self._connect_args = asyncpg_connect_args(database_url)
        self._reconnect_delay = reconnect_delay
        self._subscribers: dict[str, set[asyncio.Queue[JobEvent]]] = defaultdict(set)
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        # This process's name in watched_jobs, and the listening connection its rows are
        # written on (one statement at a time: asyncpg runs one per connection).
        self.watcher = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._conn: asyncpg.Connection | None = None
        self._writing = asyncio.Lock()
        self._unwatching: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: uuid.UUID) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        """A queue of the job's events, from when this returns: the job is marked watched (and
        so notified) before it does. Without a listening connection nothing can be marked; the
        connection, once made, marks every subscribed job and has every subscriber resync."""
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        key = str(job_id)
        self._subscribers[key].add(queue)
        try:
            await self._watch([key])
            yield queue
        finally:
            self._subscribers[key].discard(queue)
            if not self._subscribers[key]:
                del self._subscribers[key]
                unwatch = asyncio.get_running_loop().create_task(self._unwatch(key))
                self._unwatching.add(unwatch)
                unwatch.add_done_callback(self._unwatching.discard)

    async def _watch(self, job_ids: list[str]) -> None:
        await self._write(_WATCH, [uuid.UUID(job_id) for job_id in job_ids], self.watcher, WATCH_TTL_S)

    async def _unwatch(self, job_id: str) -> None:
        if job_id not in self._subscribers:  # not watched again meanwhile
            await self._write(_UNWATCH, uuid.UUID(job_id), self.watcher)

    async def _write(self, statement: str, *arguments: object) -> None:
        """Runs a watched_jobs statement on the listening connection, if there is one; a
        failure is logged (the connection's loss makes every subscriber resync)."""
        async with self._writing:
            if self._conn is None or self._conn.is_closed():
                return
            try:
                await self._conn.execute(statement, *arguments, timeout=5)
            except LISTENER_ERRORS as exc:
                logger.warning("job events: could not mark watched jobs (%s)", exc)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Listens until :meth:`stop`, reconnecting after any loss of the connection."""
        while not self._stopping.is_set():
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(
                    **self._connect_args, timeout=5, server_settings={"application_name": LISTENER_NAME}
                )
            except LISTENER_ERRORS as exc:
                logger.warning("job events: cannot listen (%s); retrying in %.0fs", exc, self._reconnect_delay)
                await self._pause(self._reconnect_delay)
                continue
            try:
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._on_notification)
                self._conn = conn
                await self._watch(list(self._subscribers))  # their rows may have expired meanwhile
                self.connected.set()
                self._broadcast(RESYNC)  # whatever happened while not listening
                await self._until_lost(conn, lost)
            except LISTENER_ERRORS as exc:
                logger.warning("job events: listening failed (%s)", exc)
            finally:
                self.connected.clear()
                if self._stopping.is_set():
                    await self._write(_FORGET_WATCHER, self.watcher)
                async with self._writing:
                    self._conn = None
                if not conn.is_closed():
                    try:
                        await conn.close(timeout=2)
                    except LISTENER_ERRORS:
                        conn.terminate()
            if not self._stopping.is_set():
                logger.warning("job events: listening connection lost; reconnecting")
                self._broadcast(RESYNC)

    async def _until_lost(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Waits for stop or loss; a ping every few seconds finds a connection that died silently."""
        while not self._stopping.is_set() and not lost.is_set():
            await self._pause(5.0, lost)
            if self._stopping.is_set() or lost.is_set():
                return
            try:  # the ping renews this process's watched rows, and drops any expired ones
                async with self._writing:
                    await conn.execute(_RENEW_WATCHES, self.watcher, WATCH_TTL_S, timeout=5)
                    await conn.execute(_DROP_EXPIRED_WATCHES, timeout=5)
            except LISTENER_ERRORS:
                return

    async def _pause(self, seconds: float, also: asyncio.Event | None = None) -> None:
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if also is not None:
            waits.append(asyncio.ensure_future(also.wait()))
        _, pending = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in waits:
            if task.done() and not task.cancelled():
                task.result()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            job_id, event = parse_event(str(payload))
        except (ValueError, KeyError, TypeError):
            logger.exception("job events: unreadable notification %r", payload)
            return
        for queue in self._subscribers.get(job_id, ()):
            queue.put_nowait(event)

    def _broadcast(self, event: JobEvent) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(event)
