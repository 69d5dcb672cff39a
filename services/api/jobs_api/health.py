"""grpc.health.v1: SERVING only while PostgreSQL and Redis answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from grpc_health.v1 import health, health_pb2

__all__ = ["DependencyProbe"]

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]


class DependencyProbe:
    """Checks each dependency every ``interval`` and sets the status of ``services``."""

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        services: Sequence[str],
        checks: dict[str, Check],
        interval: float,
        on_check: Callable[[str, bool], None] = lambda _name, _ok: None,
    ) -> None:
        self._on_check = on_check
        self._servicer = servicer
        self._services = services
        self._checks = checks
        self._interval = interval
        self._failing: set[str] = set()
        self._stopping = asyncio.Event()

    async def check_once(self) -> bool:
        failing: set[str] = set()
        for name, check in self._checks.items():
            try:
                await asyncio.wait_for(check(), timeout=max(self._interval, 1.0))
            except Exception as exc:  # any failure of the probe means "not serving"
                failing.add(name)
                if name not in self._failing:
                    logger.warning("health: %s is not answering: %s", name, exc or type(exc).__name__)
        for name in self._checks:
            self._on_check(name, name not in failing)
        for name in self._failing - failing:
            logger.info("health: %s answers again", name)
        self._failing = failing
        status = health_pb2.HealthCheckResponse.NOT_SERVING if failing else health_pb2.HealthCheckResponse.SERVING
        for service in self._services:
            await self._servicer.set(service, status)
        return not failing

    async def run(self) -> None:
        """Checks until :meth:`stop`; a check under way always completes (each is bounded by its
        own timeout), so no PostgreSQL or Redis call is ever cancelled halfway."""
        while not self._stopping.is_set():
            await self.check_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
