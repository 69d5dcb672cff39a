"""Prometheus exposition shared by the api and the worker: ``/metrics`` on its own HTTP port.

Each process defines its metrics in its own module (``jobs_api.metrics``, ``jobs_worker.metrics``)
on prometheus-client's default registry, which also carries the client's process and Python
collectors (CPU, memory, open files, GC).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import start_http_server

__all__ = ["serve_metrics"]

logger = logging.getLogger(__name__)


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """Serves ``/metrics`` on ``host:port`` from a daemon thread; port 0 serves nothing. Returns
    the function that stops serving."""
    if port == 0:
        return lambda: None
    server, thread = start_http_server(port, addr=host)
    logger.info("metrics on http://%s:%d/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
