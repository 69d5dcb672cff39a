"""``make run``: the api and WORKER_POOL_SIZE workers against the local PostgreSQL and Redis.

Each part is its own process, started exactly as the containers start them. Ctrl-C (SIGINT) or
SIGTERM stops them all cleanly; if one exits on its own, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from jobs_common.settings import Settings

# Development targets usually run on this machine; production allows public addresses only.
DEVELOPMENT_EGRESS = "127.0.0.0/8,::1/128"


def main() -> int:
    os.environ.setdefault("EGRESS_ALLOW_NETWORKS", DEVELOPMENT_EGRESS)
    settings = Settings()
    # Children get their own session: a terminal's Ctrl-C reaches only this supervisor, which
    # then stops each child exactly once with SIGTERM.
    modules = ["jobs_api"] + ["jobs_worker"] * settings.worker_pool_size
    # Each worker on this host serves /metrics on its own port: WORKER_METRICS_PORT, +1, +2, ...
    base_port = settings.worker_metrics_port
    envs = [dict(os.environ)] + [
        {**os.environ, "WORKER_METRICS_PORT": str(base_port + i if base_port else 0)}
        for i in range(settings.worker_pool_size)
    ]
    children = [
        subprocess.Popen([sys.executable, "-m", module], env=env, start_new_session=True)
        for module, env in zip(modules, envs, strict=True)
    ]
    print(
        f"job-scheduler: api on {settings.grpc_host}:{settings.grpc_port} (pid {children[0].pid}), "
        f"{settings.worker_pool_size} worker(s) (pids {', '.join(str(c.pid) for c in children[1:])}); "
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
