"""Caps on the long-lived streams (WatchJob, KEDA's StreamIsActive): each holds a task, a
subscription and periodic reads for as long as the client keeps it open, so one client could
otherwise open them without end. Past STREAMS_MAX open in the process, STREAMS_MAX_PER_TENANT of
one tenant (so one tenant cannot take them all), or STREAMS_MAX_PER_CONNECTION on one client
connection, a new stream is RESOURCE_EXHAUSTED."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from jobs_common.errors import ResourceExhaustedError

__all__ = ["StreamLimits"]


class StreamLimits:
    def __init__(self, per_process: int, per_connection: int, per_tenant: int | None = None) -> None:
        self._per_process = per_process
        self._per_connection = per_connection
        self._per_tenant = per_process if per_tenant is None else per_tenant
        self._open = 0
        self._by_connection: Counter[str] = Counter()
        self._by_tenant: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, connection: str, tenant: str, method: str) -> Iterator[None]:
        """One stream of ``method`` on ``connection`` (the peer address, one per connection) for
        ``tenant`` while the block runs.

        Raises:
            ResourceExhaustedError: a cap is reached; the stream is not counted.
        """
        if self._open >= self._per_process:
            raise ResourceExhaustedError(
                f"{method}: this api process has {self._open} streams open, its limit (STREAMS_MAX); "
                "close one or retry later",
                reason="TOO_MANY_STREAMS",
            )
        if self._by_tenant[tenant] >= self._per_tenant:
            raise ResourceExhaustedError(
                f"{method}: your tenant has {self._by_tenant[tenant]} streams open in this api process, its limit "
                "(STREAMS_MAX_PER_TENANT); close one first",
                reason="TOO_MANY_STREAMS",
            )
        if self._by_connection[connection] >= self._per_connection:
            raise ResourceExhaustedError(
                f"{method}: this connection has {self._by_connection[connection]} streams open, its limit "
                "(STREAMS_MAX_PER_CONNECTION); close one first",
                reason="TOO_MANY_STREAMS",
            )
        self._open += 1
        self._by_connection[connection] += 1
        self._by_tenant[tenant] += 1
        try:
            yield
        finally:
            self._open -= 1
            for counts, key in ((self._by_connection, connection), (self._by_tenant, tenant)):
                counts[key] -= 1
                if not counts[key]:
                    del counts[key]
