"""``make run``: API_PROCESSES api processes, WORKER_POOL_SIZE workers and the web console
(on CONSOLE_PORT, 8080; 0 leaves it out) against the local PostgreSQL and Redis.

Each part is its own process, started exactly as the containers start them. Several api
processes share GRPC_PORT (GRPC_REUSE_PORT: the kernel spreads connections over them), each with
its own /metrics port. Ctrl-C (SIGINT) or SIGTERM stops them all cleanly; if one exits on its
own, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

from jobs_common.settings import Settings

# Development targets usually run on this machine; production allows public addresses only.
DEVELOPMENT_EGRESS = "127.0.0.0/8,::1/128"


def _listed(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values)


def metrics_ports(settings: Settings) -> tuple[list[int], list[int]]:
    """The /metrics port of each api and each worker process: the workers' WORKER_METRICS_PORT,
    +1, +2, ...; the first api's METRICS_PORT, the others' the next ports above all of those.
    0 (off) stays 0 for every process of its kind."""
    workers = [
        settings.worker_metrics_port + i if settings.worker_metrics_port else 0
        for i in range(settings.worker_pool_size)
    ]
    if not settings.metrics_port:
        return [0] * settings.api_processes, workers
    after = max([settings.metrics_port, *workers]) + 1
    apis = [settings.metrics_port] + [after + i for i in range(settings.api_processes - 1)]
    if settings.metrics_port in workers:
        raise SystemExit(f"METRICS_PORT {settings.metrics_port} is one of the workers' metrics ports; change either")
    return apis, workers


def main() -> int:
    os.environ.setdefault("EGRESS_ALLOW_NETWORKS", DEVELOPMENT_EGRESS)
    # A machine of the developer's own: no tokens or sealing keys needed (set them to try them).
    os.environ.setdefault("ENVIRONMENT", "development")
    settings = Settings()
    # Children get their own session: a terminal's Ctrl-C reaches only this supervisor, which
    # then stops each child exactly once with SIGTERM.
    apis, workers = settings.api_processes, settings.worker_pool_size
    api_ports, worker_ports = metrics_ports(settings)
    api_env = {**os.environ, "GRPC_REUSE_PORT": "true"} if apis > 1 else dict(os.environ)
    envs = [{**api_env, "METRICS_PORT": str(port)} for port in api_ports] + [
        {**os.environ, "WORKER_METRICS_PORT": str(port)} for port in worker_ports
    ]
    modules = ["jobs_api"] * apis + ["jobs_worker"] * workers
    console_port = os.environ.get("CONSOLE_PORT", "8080")
    if console_port != "0":
        host = "127.0.0.1" if settings.grpc_host in ("0.0.0.0", "::", "") else settings.grpc_host
        envs.append(
            {**os.environ, "JOBS_API_ADDRESS": os.environ.get("JOBS_API_ADDRESS", f"{host}:{settings.grpc_port}")}
        )
        modules.append("jobs_console")
    children = [
        subprocess.Popen([sys.executable, "-m", module], env=env, start_new_session=True)
        for module, env in zip(modules, envs, strict=True)
    ]
    parts = [
        f"{apis} api process(es) on {settings.grpc_host}:{settings.grpc_port} "
        f"(pids {_listed(c.pid for c in children[:apis])}; metrics on ports {_listed(api_ports)})",
        f"{workers} worker(s) (pids {_listed(c.pid for c in children[apis : apis + workers])}; "
        f"metrics on ports {_listed(worker_ports)})",
    ]
    if console_port != "0":
        parts.append(f"console on http://127.0.0.1:{console_port}/ (pid {children[-1].pid})")
    print(
        f"job-scheduler: {', '.join(parts)}; "
        f"jobs may call public addresses and {settings.egress_allow_networks or 'nothing else'}; "
        "Ctrl-C stops everything",
        flush=True,
    )
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    if not stopping:
        print("job-scheduler: a process exited; stopping the others", file=sys.stderr, flush=True)
        stop(signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    return 0 if stopping and all(code in (0, -signal.SIGTERM) for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
