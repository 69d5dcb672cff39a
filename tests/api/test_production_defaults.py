"""Secure by default (issue 18, finding 11): with ENVIRONMENT=production (the default) the api
process refuses to start while API_TOKENS or SECRETS_KEYS is empty, naming each; development and
ALLOW_INSECURE start it with warnings."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from jobs_common.settings import Settings
from tests.support import services
from tests.support.processes import ChildProcess, settings_env

pytestmark = pytest.mark.usefixtures("api")  # the session's database, migrated

TOKENS = "ci:production-defaults-token-0123456789"
KEYS = f"k1:{base64.b64encode(os.urandom(32)).decode()}"


def _own(settings: Settings, **fields: object) -> Settings:
    """The session's settings for a process of the test's own: free ports, production unless told."""
    defaults: dict[str, object] = {
        "environment": "production",
        "api_tokens": SecretStr(""),
        "secrets_keys": SecretStr(""),
        "grpc_port": services.free_port(),
        "scheduler_enabled": False,
        "reconciler_enabled": False,
    }
    return settings.model_copy(update=defaults | fields)


@pytest.mark.parametrize(
    ("fields", "named", "not_named"),
    [
        ({}, ["API_TOKENS empty", "SECRETS_KEYS empty"], []),
        ({"secrets_keys": SecretStr(KEYS)}, ["API_TOKENS empty"], ["SECRETS_KEYS"]),
        ({"api_tokens": SecretStr(TOKENS)}, ["SECRETS_KEYS empty"], ["API_TOKENS"]),
    ],
)
async def test_production_refuses_to_start_without_tokens_or_keys(
    settings: Settings, tmp_path: Path, fields: dict[str, object], named: list[str], not_named: list[str]
):
    process = ChildProcess("jobs_api", settings_env(_own(settings, **fields)), tmp_path / "api.log")
    code = await process.wait(timeout=30)
    log = process.log()
    assert code != 0, log
    assert "refusing to start with ENVIRONMENT=production" in log
    for name in named:
        assert name in log
    for name in not_named:
        assert name not in log
    assert "ALLOW_INSECURE=true" in log
    assert "Traceback" not in log
    assert "production-defaults-token" not in log


@pytest.mark.parametrize(
    "fields",
    [
        {"secrets_keys": SecretStr(KEYS), "api_tokens": SecretStr(TOKENS)},
        {"allow_insecure": True},
        {"environment": "development"},
    ],
    ids=["production with both", "production, ALLOW_INSECURE", "development"],
)
async def test_the_api_starts_with_both_set_or_when_told_to(settings: Settings, tmp_path: Path, fields):
    process = ChildProcess("jobs_api", settings_env(_own(settings, **fields)), tmp_path / "api.log")
    try:
        await process.wait_for_log("api listening")
        log = process.log()
        if "api_tokens" in fields:
            assert "is empty" not in log
        else:
            assert "API_TOKENS is empty: the api accepts every call without authentication" in log
            assert "SECRETS_KEYS is empty" in log
    finally:
        await process.stop()
