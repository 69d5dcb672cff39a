"""Compose files, Dockerfiles and health checks. No Docker engine runs here, so the files are
parsed and their wiring checked; the health-check commands themselves run for real."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import make_url

from jobs_common._durations import parse_duration
from jobs_common.secrets import parse_secret_keys
from jobs_common.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose"
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / name).read_text())


def test_compose_has_every_service_wired_to_healthy_dependencies():
    services = _load("docker-compose.yml")["services"]
    assert set(services) == {"redis", "postgres", "migrate", "api", "worker", "console"}

    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "healthcheck" in redis
    assert "healthcheck" in services["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])

    assert services["migrate"]["command"] == ["python", "-m", "jobs_common.migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"

    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 3
    assert set(worker["deploy"]["resources"]["limits"]) == {"cpus", "memory"}
    drain = parse_duration(worker["environment"]["WORKER_DRAIN_TIMEOUT"])
    assert parse_duration(worker["stop_grace_period"]) > drain
    # /metrics: the api's port is published, each worker's is exposed on the compose network.
    api_metrics = services["api"]["environment"]["METRICS_PORT"]
    assert f"{api_metrics}:{api_metrics}" in services["api"]["ports"]
    assert worker["environment"]["WORKER_METRICS_PORT"] in worker["expose"]


def test_compose_environment_names_are_settings_the_services_read():
    services = _load("docker-compose.yml")["services"]
    for name in ("migrate", "api", "worker"):
        # OTEL_*: read by the OpenTelemetry SDK itself.
        unknown = {n for n in services[name]["environment"] if not n.startswith("OTEL_")} - SETTING_NAMES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_compose_console_reaches_the_api_and_reads_only_its_own_settings():
    services = _load("docker-compose.yml")["services"]
    console = services["console"]
    environment = console["environment"]
    api_port = services["api"]["environment"]["GRPC_PORT"]
    assert environment["JOBS_API_ADDRESS"] == f"api:{api_port}"
    assert f"{environment['CONSOLE_PORT']}:{environment['CONSOLE_PORT']}" in console["ports"]
    readable = {"ENVIRONMENT", "ALLOW_INSECURE"}
    unknown = {n for n in environment if not n.startswith(("CONSOLE_", "JOBS_API_"))} - readable
    assert not unknown, f"console sets variables it does not read: {unknown}"
    source = (ROOT / "services/console/jobs_console/_settings.py").read_text()
    source += (ROOT / "libs/client/jobs_client/_connection.py").read_text()
    for name in environment:
        assert f'"{name}"' in source, f"console sets {name}, which nothing reads"


def test_compose_builds_from_dockerfiles_that_exist():
    services = _load("docker-compose.yml")["services"]
    for name, dockerfile in (
        ("api", "Dockerfile"),
        ("migrate", "Dockerfile"),
        ("worker", "Dockerfile.worker"),
        ("console", "Dockerfile.console"),
    ):
        build = services[name]["build"]
        context = (COMPOSE / build["context"]).resolve()
        assert context == ROOT
        assert build["dockerfile"] == dockerfile
        assert (context / dockerfile).is_file()


def test_dev_compose_runs_only_the_dependencies():
    services = _load("docker-compose.dev.yml")["services"]
    assert set(services) == {"redis", "postgres"}
    assert all("healthcheck" in s for s in services.values())


@pytest.mark.parametrize(
    ("dockerfile", "member", "script"),
    [
        ("Dockerfile", "services/api", "jobs-api"),
        ("Dockerfile.worker", "services/worker", "jobs-worker"),
        ("Dockerfile.console", "services/console", "jobs-console"),
    ],
)
def test_dockerfiles_install_only_their_member_as_non_root_with_a_health_check(dockerfile, member, script):
    text = (ROOT / dockerfile).read_text()
    scripts = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]["scripts"]
    assert script in scripts
    package = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]["name"]
    assert f"--package {package}" in text
    assert "--frozen" in text
    assert "--no-dev" in text
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert re.search(r"^HEALTHCHECK .*CMD", text, re.M)
    assert f'CMD ["{script}"]' in text
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / source).exists(), f"{dockerfile} copies missing {source}"


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_api_health_check_command(api):
    env = {**os.environ, "GRPC_PORT": str(api.port)}
    code, out = await _run(sys.executable, "-m", "jobs_api.healthcheck", env=env)
    assert (code, out.strip()) == (0, "SERVING")
    closed = {**os.environ, "GRPC_PORT": "9"}
    code, out = await _run(sys.executable, "-m", "jobs_api.healthcheck", env=closed)
    assert code == 1


async def test_worker_health_check_command_follows_the_heartbeat(tmp_path):
    health_file = tmp_path / "worker.health"
    env = {**os.environ, "WORKER_HEALTH_FILE": str(health_file), "WORKER_HEALTH_MAX_AGE": "30s"}
    assert (await _run(sys.executable, "-m", "jobs_worker.healthcheck", env=env))[0] == 1
    health_file.touch()
    assert (await _run(sys.executable, "-m", "jobs_worker.healthcheck", env=env))[0] == 0
    os.utime(health_file, (0, 0))
    code, out = await _run(sys.executable, "-m", "jobs_worker.healthcheck", env=env)
    assert code == 1
    assert "last heartbeat" in out


async def test_the_session_worker_keeps_its_heartbeat_fresh(worker, settings):
    path = Path(settings.worker_health_file)
    first = path.stat().st_mtime
    await asyncio.sleep(1.5)
    assert path.stat().st_mtime > first


def test_compose_redis_has_no_default_user_and_the_services_use_the_restricted_one():
    services = _load("docker-compose.yml")["services"]
    command = services["redis"]["command"]
    users = " ".join(command).split("--user")[1:]
    assert [u.split()[:2] for u in users] == [["default", "off"], ["jobs", "on"]]
    # The same ACL docs/security.md documents and tests/test_redis_acl.py runs the services under.
    assert users[1].split()[3:] == ["~*", "&*", "+@all", "-@dangerous", "+info"]
    environment = services["api"]["environment"]
    assert environment["REDIS_USERNAME"] == "jobs"
    assert environment["REDIS_PASSWORD"] in users[1].split()[2].lstrip(">")
    assert environment["REDIS_PASSWORD"] in services["redis"]["healthcheck"]["test"]


def test_every_setting_is_in_the_configuration_table():
    section = (ROOT / "docs" / "configuration.md").read_text()
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])}
    assert SETTING_NAMES - documented == set()
    assert documented - SETTING_NAMES == set()


def test_compose_default_secrets_key_is_a_valid_key():
    default = _load("docker-compose.yml")["x-app-environment"]["SECRETS_KEYS"]
    value = re.fullmatch(r"\$\{SECRETS_KEYS:-(.+)\}", default)
    assert value is not None
    assert [key_id for key_id, _ in parse_secret_keys(value.group(1))] == ["dev"]


# Defaults the table describes in words rather than as the literal value.
_DESCRIBED_DEFAULTS = {"AUTH_OPEN_SERVICES"}
_NO_VALUE = {"unset", "(none)", "empty"}


def test_the_configuration_table_gives_every_default_the_code_has():
    section = (ROOT / "docs" / "configuration.md").read_text()
    defaults = Settings.model_construct()  # the class defaults, no environment
    checked = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        names_cell, default_cell = row.split(" | ")[:2]
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", names_cell)
        if set(names) & _DESCRIBED_DEFAULTS:
            continue
        values = re.findall(r"`([^`]*)`", default_cell) or [default_cell.strip()] * len(names)
        assert len(values) == len(names), row
        for name, documented in zip(names, values, strict=True):
            actual = getattr(defaults, name.lower())
            if isinstance(actual, SecretStr):
                actual = actual.get_secret_value()
            if documented in _NO_VALUE:
                assert actual in (None, ""), f"{name}: docs/configuration.md says {documented}, the code has {actual!r}"
            elif isinstance(actual, timedelta):
                assert parse_duration(documented) == actual, f"{name}: docs {documented}, code {actual}"
            elif isinstance(actual, bool):
                assert documented == str(actual).lower(), f"{name}: docs {documented}, code {actual}"
            elif isinstance(actual, int | float):
                assert float(documented) == actual, f"{name}: docs {documented}, code {actual}"
            else:
                assert documented == str(actual), f"{name}: docs {documented}, code {actual}"
            checked.add(name)
    assert SETTING_NAMES - checked == _DESCRIBED_DEFAULTS


def test_ha_compose_wires_the_app_to_sentinels_and_both_postgres_hosts():
    """compose/docker-compose.ha.yml: what the app is given names the services that exist, the
    Sentinels monitor the primary under the app's master name, and the scripts it mounts exist
    and parse."""
    compose = _load("docker-compose.ha.yml")
    services = compose["services"]
    assert {"redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"} <= set(services)
    assert {"postgres-primary", "postgres-standby", "migrate", "api", "worker"} <= set(services)
    for name in ("migrate", "api", "worker"):
        environment = services[name]["environment"]
        unknown = set(environment) - SETTING_NAMES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"
        # The values as Compose gives them with no variables set: ${NAME:-default} is the default.
        given = {k.lower(): re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in environment.items()}
        settings = Settings.model_validate(given)
        sentinel_hosts = {host for host, _ in settings.sentinel_addresses}
        assert sentinel_hosts == {"sentinel-1", "sentinel-2", "sentinel-3"}
        url = make_url(settings.database_url)
        assert url.query["target_session_attrs"] == "read-write"
        assert [h.split(":")[0] for h in url.query["host"]] == ["postgres-primary", "postgres-standby"]
    assert services["redis-replica"]["command"][-2:] == ["redis-primary", "6379"]
    sentinel_script = (COMPOSE / "ha" / "sentinel.sh").read_text()
    assert "sentinel monitor ${SENTINEL_MASTER} redis-primary 6379 2" in sentinel_script
    assert (
        services["sentinel-1"]["environment"]["SENTINEL_MASTER"]
        == services["api"]["environment"]["REDIS_SENTINEL_MASTER"]
    )
    # The primary commits only with the standby in sync, so the app waits for both.
    assert set(services["migrate"]["depends_on"]) == {"postgres-primary", "postgres-standby"}
    assert "synchronous_standby_names = '*'" in (COMPOSE / "ha" / "postgres-primary-init.sh").read_text()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                path = COMPOSE / source
                assert path.is_file(), f"mounts missing {source}"
                assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0, f"{source} does not parse"
    assert set(compose["volumes"]) == {
        v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith("./")
    }
