"""The system under test, entirely private: a PostgreSQL cluster and a Redis server (or a Redis
primary, replica and three Sentinels) of its own (so a scenario may stop, flush, restart or fail
them over without touching anything else on the machine),
one api process and N worker processes, each started as its container starts it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs_common.settings import Settings
from tests.support.processes import ChildProcess, settings_env
from tests.support.services import free_port, start_private_redis, wait_for_redis

__all__ = ["SENTINEL_MASTER", "Cluster", "PrivatePostgres", "PrivateRedis", "SentinelRedis", "postgres_bin"]


def postgres_bin() -> Path | None:
    """PG_BIN, or the newest server installed the Debian way (/usr/lib/postgresql/N/bin)."""
    if configured := os.environ.get("PG_BIN"):
        return Path(configured)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on its own port. PostgreSQL refuses to run as root, so
    under root it runs as the ``postgres`` user."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        found = postgres_bin()
        if found is None:
            raise RuntimeError("no PostgreSQL server binaries found; set PG_BIN to their directory")
        self._bin = found
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/jobscheduler"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, stdout=subprocess.DEVNULL)

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run(str(self._bin / "initdb"), "-D", str(self.directory / "data"), "-U", "postgres", "--auth=trust")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c max_connections=300"
        self._run(
            str(self._bin / "pg_ctl"), "-D", str(self.directory / "data"), "-o", options,
            "-l", str(self.directory / "postgres.log"), "-w", "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash as far as clients can tell: every connection drops at once."""
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")
        self.running = False

    def init_standby_of(self, primary: PrivatePostgres) -> None:
        """This cluster as a streaming standby of ``primary`` (running): a base backup with
        the WAL it needs, standby.signal and primary_conninfo written (``-R``)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run(
            str(self._bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(self.directory / "data"), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip

    def sql(self, statement: str) -> None:
        """Runs one statement as the superuser (psql, on the cluster's own port)."""
        self._run(
            str(self._bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement,
        )  # fmt: skip

    def promote(self) -> None:
        """Ends recovery: the standby becomes a primary and accepts writes."""
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "promote")


class PrivateRedis:
    """A Redis server of the cluster's own, without persistence: a restart loses everything."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = start_private_redis(self.port, self.directory, "--maxmemory-policy", "noeviction", *extra)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    async def wait_ready(self, timeout: float = 10) -> None:
        client = Redis(host="127.0.0.1", port=self.port)
        try:
            await wait_for_redis(client, timeout)
        finally:
            await client.aclose()

    async def flushall(self) -> None:
        client = Redis(host="127.0.0.1", port=self.port)
        try:
            await client.flushall()
        finally:
            await client.aclose()


SENTINEL_MASTER = "chaos-primary"


class SentinelRedis:
    """A Redis primary, one replica and three Sentinels (quorum 2), all on private ports and
    without persistence, as a Sentinel deployment runs them. Sentinel declares the primary down
    after ``down_after_ms`` and promotes the replica; a killed server that comes back is made a
    replica of whichever is primary then."""

    def __init__(self, directory: Path, down_after_ms: int = 1000) -> None:
        self.directory = directory
        self.servers = [PrivateRedis(directory / "redis-a"), PrivateRedis(directory / "redis-b")]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.down_after_ms = down_after_ms
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start(self) -> None:
        first, second = self.servers
        first.start()
        second.start("--replicaof", "127.0.0.1", str(first.port))
        for index, port in enumerate(self.sentinel_ports):
            directory = self.directory / f"sentinel-{index}"
            directory.mkdir(parents=True, exist_ok=True)
            config = directory / "sentinel.conf"  # Sentinel rewrites it with what it learns
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {first.port} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
                f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
            )
            self._sentinels.append(
                subprocess.Popen(["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL)
            )

    async def primary_port(self) -> int | None:
        """The primary's port as the first Sentinel that answers says it."""
        for port in self.sentinel_ports:
            client = Redis(host="127.0.0.1", port=port, decode_responses=True)
            try:
                found = await client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)  # type: ignore[no-untyped-call]
                return int(found[1]) if found else None
            except (OSError, RedisError):
                continue
            finally:
                await client.aclose()
        return None

    async def wait_ready(self, timeout: float = 30) -> None:
        """Until the replica is in sync and every Sentinel sees the primary, its replica and
        the two other Sentinels."""
        async with asyncio.timeout(timeout):
            for server in self.servers:
                await server.wait_ready()
            while not await self._settled():
                await asyncio.sleep(0.2)

    async def _settled(self) -> bool:
        for port in self.sentinel_ports:
            client = Redis(host="127.0.0.1", port=port, decode_responses=True)
            try:
                fields = await client.sentinel_master(SENTINEL_MASTER)  # type: ignore[no-untyped-call]
                if int(fields["num-slaves"]) < 1 or int(fields["num-other-sentinels"]) < 2:
                    return False
            except (OSError, RedisError, KeyError):
                return False
            finally:
                await client.aclose()
        return True

    async def replica_count(self, timeout: float = 15) -> int:
        """How many replicas the Sentinels see in sync with the primary (waits up to ``timeout``
        for a returning server to be made one)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            client = Redis(host="127.0.0.1", port=self.sentinel_ports[0], decode_responses=True)
            try:
                replicas = await client.sentinel_slaves(SENTINEL_MASTER)  # type: ignore[no-untyped-call]
            finally:
                await client.aclose()
            healthy = [
                r for r in replicas if not {"s_down", "o_down", "disconnected"} & set(r.get("flags", "").split(","))
            ]
            healthy = [r for r in healthy if r.get("master-link-status") == "ok"]
            if len(healthy) >= 1 or asyncio.get_running_loop().time() > deadline:
                return len(healthy)
            await asyncio.sleep(0.2)

    async def kill_primary(self) -> PrivateRedis:
        """SIGKILLs the server the Sentinels call primary; returns it (to start again later)."""
        port = await self.primary_port()
        [primary] = [server for server in self.servers if server.port == port]
        primary.kill()
        return primary

    def stop(self) -> None:
        for sentinel in self._sentinels:
            sentinel.kill()
            sentinel.wait()
        self._sentinels.clear()
        for server in self.servers:
            server.kill()


@dataclass
class Cluster:
    """api + workers on private PostgreSQL and Redis. ``settings`` are what every process reads;
    the cluster fills in the database, Redis and gRPC addresses."""

    workdir: Path
    settings: Settings
    worker_count: int
    api_env: dict[str, str] = field(default_factory=dict)
    # Redis behind Sentinel (a primary, a replica, three Sentinels) instead of one server.
    with_sentinel: bool = False
    # A PostgreSQL streaming standby beside the primary; every process gets both hosts with
    # target_session_attrs=read-write, so it follows a promotion.
    with_standby: bool = False
    postgres: PrivatePostgres = field(init=False)
    standby: PrivatePostgres | None = field(default=None, init=False)
    redis: PrivateRedis = field(init=False)
    sentinel: SentinelRedis | None = field(default=None, init=False)
    api: ChildProcess | None = field(default=None, init=False)
    workers: list[ChildProcess | None] = field(default_factory=list, init=False)
    _starts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.postgres = PrivatePostgres(self.workdir / "postgres")
        self.redis = PrivateRedis(self.workdir / "redis")
        redis: dict[str, object] = {"redis_host": "127.0.0.1", "redis_port": self.redis.port}
        if self.with_sentinel:
            self.sentinel = SentinelRedis(self.workdir / "sentinel")
            redis = {"redis_sentinels": self.sentinel.addresses, "redis_sentinel_master": SENTINEL_MASTER}
        database_url = self.postgres.url
        if self.with_standby:
            self.standby = PrivatePostgres(self.workdir / "postgres-standby")
            hosts = "&".join(f"host=127.0.0.1:{pg.port}" for pg in (self.postgres, self.standby))
            database_url = f"postgresql+asyncpg://postgres@/jobscheduler?{hosts}&target_session_attrs=read-write"
        self.settings = self.settings.model_copy(
            update={
                "database_url": database_url,
                "database_auto_create": True,
                **redis,
                "redis_db": 0,
                "grpc_host": "127.0.0.1",
                "grpc_port": free_port(),
                # Several workers share this host: only the api serves /metrics.
                "metrics_port": free_port(),
                "worker_metrics_port": 0,
            }
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.grpc_port}"

    async def start(self) -> None:
        self.postgres.init()
        self.postgres.start()
        if self.standby is not None:
            self.standby.init_standby_of(self.postgres)
            self.standby.start()
            # Synchronous replication: a commit is acknowledged once the standby has it, so a
            # promotion loses no acknowledged job (with asynchronous replication it may).
            self.postgres.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.postgres.sql("SELECT pg_reload_conf()")
            await self._wait_synchronous()
        if self.sentinel is not None:
            self.sentinel.start()
            await self.sentinel.wait_ready()
        else:
            self.redis.start()
            await self.redis.wait_ready()
        await self.start_api()
        self.workers = [None] * self.worker_count
        await asyncio.gather(*(self.start_worker(i) for i in range(self.worker_count)))

    async def _wait_synchronous(self, timeout: float = 30) -> None:
        engine = create_async_engine(self.postgres.url.rsplit("/", 1)[0] + "/postgres")
        try:
            async with asyncio.timeout(timeout):
                while True:
                    async with engine.connect() as conn:
                        states = (await conn.execute(text("SELECT sync_state FROM pg_stat_replication"))).scalars()
                        if "sync" in list(states):
                            return
                    await asyncio.sleep(0.2)
        finally:
            await engine.dispose()

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop(timeout=120) for w in self.workers if w is not None))
        if self.api is not None:
            await self.api.stop()
        self.redis.kill()
        if self.sentinel is not None:
            self.sentinel.stop()
        for postgres in (self.postgres, self.standby):
            if postgres is not None and postgres.running:
                postgres.stop("fast")

    def _process(self, module: str, name: str, extra: dict[str, str]) -> ChildProcess:
        self._starts += 1
        env = settings_env(self.settings, **extra)
        return ChildProcess(module, env, self.workdir / f"{self._starts:04d}-{name}.log")

    async def start_api(self) -> None:
        """Starts the api; one that is still there (dead or alive) is stopped and reaped first."""
        if self.api is not None:
            await self.api.stop()
        self.api = self._process("jobs_api", "api", self.api_env)
        await self.api.wait_for_log("api listening", timeout=60)

    async def start_worker(self, index: int) -> ChildProcess:
        health = str(self.workdir / f"worker-{index}.health")
        worker = self._process("jobs_worker", f"worker-{index}", {"WORKER_HEALTH_FILE": health})
        self.workers[index] = worker
        await worker.wait_for_log("ready on queue", timeout=60)
        return worker

    def worker(self, index: int) -> ChildProcess:
        worker = self.workers[index]
        assert worker is not None
        return worker

    async def kill_worker(self, index: int) -> int:
        """SIGKILL; returns the dead worker's pid (its worker id is ``host:pid``)."""
        worker = self.worker(index)
        worker.process.send_signal(signal.SIGKILL)
        await worker.wait()
        return worker.pid

    def api_died(self) -> bool:
        return self.api is None or self.api.process.poll() is not None
