from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from jobs_common.arq_extension import redis_settings
from jobs_common.settings import Settings


def test_the_plans_variable_names_are_read(monkeypatch):
    env = {
        "REDIS_HOST": "redis",
        "REDIS_PORT": "6380",
        "REDIS_PASSWORD": "s3cret",
        "REDIS_DB": "2",
        "WORKER_POOL_SIZE": "10",
        "WORKER_MAX_CONCURRENT_JOBS": "5",
        "WORKER_HTTP_TIMEOUT": "90s",
        "QUEUE_BATCH_SIZE": "100",
        "QUEUE_POLL_INTERVAL": "1s",
        "QUEUE_MAX_RETRIES": "3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.redis_dsn == "redis://:s3cret@redis:6380/2"
    assert settings.worker_pool_size == 10
    assert settings.worker_max_concurrent_jobs == 5
    assert settings.worker_http_timeout == timedelta(seconds=90)
    assert settings.queue_poll_interval == timedelta(seconds=1)
    assert settings.default_max_attempts == 4


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("500ms", 0.5), ("2m", 120), ("1h", 3600), ("15", 15)])
def test_durations_accept_units(monkeypatch, text, seconds):
    monkeypatch.setenv("QUEUE_POLL_INTERVAL", text)
    assert Settings().queue_poll_interval.total_seconds() == seconds


def test_redis_url_wins_over_parts(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://cache:7000/3")
    monkeypatch.setenv("REDIS_HOST", "ignored")
    assert Settings().redis_dsn == "redis://cache:7000/3"


def test_sentinels_name_the_primary_and_keep_the_primarys_credentials(monkeypatch):
    monkeypatch.setenv("REDIS_SENTINELS", "sentinel-a:26379, sentinel-b:26380,[::1]:26381")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "jobs")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sentinel-secret")
    monkeypatch.setenv("REDIS_USERNAME", "jobs")
    monkeypatch.setenv("REDIS_PASSWORD", "primary-secret")
    monkeypatch.setenv("REDIS_DB", "2")
    settings = Settings()
    assert settings.sentinel_addresses == [("sentinel-a", 26379), ("sentinel-b", 26380), ("::1", 26381)]
    arq = redis_settings(settings)
    assert arq.sentinel is True
    assert arq.host == [("sentinel-a", 26379), ("sentinel-b", 26380), ("::1", 26381)]
    assert (arq.sentinel_master, arq.sentinel_password) == ("jobs", "sentinel-secret")
    assert (arq.username, arq.password, arq.database) == ("jobs", "primary-secret", 2)
    assert arq.conn_retries == 10  # a failover is a short outage, retried like a restart
    monkeypatch.setenv("REDIS_URL", "redis://cache:7000/3")
    with pytest.raises(ValidationError, match="REDIS_URL and REDIS_SENTINELS exclude each other"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKER_HTTP_TIMEOUT", "soon"),
        ("WORKER_HTTP_TIMEOUT", "400s"),
        ("QUEUE_POLL_INTERVAL", "-1s"),
        # A heartbeat must fit twice in a lease, or one late heartbeat loses it.
        ("WORKER_HEARTBEAT_INTERVAL", "6s"),
        ("WORKER_HEARTBEAT_INTERVAL", "0s"),
        ("SCALING_MIN_WORKERS", "50"),
        ("SCALING_TARGET_UTILIZATION", "0"),
        # Names must match whole: `$` would let a trailing newline through.
        ("API_TOKENS", "orders\n:0123456789abcdef0123"),
        ("SECRETS_KEYS", "k1\n:" + "A" * 43 + "="),
        ("REDIS_SENTINELS", "sentinel-a"),
        ("REDIS_SENTINELS", "sentinel-a:26379,sentinel-b:port"),
        ("REDIS_SENTINELS", "sentinel-a:0"),
    ],
)
def test_bad_values_fail_at_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
