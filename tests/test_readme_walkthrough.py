"""The README's grpcurl walkthrough, run word for word with the real grpcurl binary."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from tests.support.jobs import eventually

ROOT = Path(__file__).resolve().parents[1]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough:begin -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->", readme, re.S)
    assert match, "README has no walkthrough block"
    return match.group(1)


@pytest.mark.usefixtures("worker")
@pytest.mark.skipif(shutil.which("jq") is None, reason="the walkthrough uses jq (.ci/run installs it)")
async def test_readme_walkthrough_runs_verbatim(api, target, key):
    path = f"/sleep/1/{key}"
    env = {**os.environ, "API": f"127.0.0.1:{api.port}", "TARGET": target.url(path)}
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        walkthrough(),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out_bytes, _ = await asyncio.wait_for(process.communicate(), 60)
    out = out_bytes.decode()
    assert process.returncode == 0, out

    assert "jobscheduler.v1.JobService" in out
    assert '"status": "SERVING"' in out
    states = re.findall(r"^EXECUTION_STATE_[A-Z_]+$", out, re.M)
    assert states == ["EXECUTION_STATE_QUEUED", "EXECUTION_STATE_RUNNING", "EXECUTION_STATE_SUCCEEDED"], out
    assert '"response_status_code": 200' in out
    assert '"response_body": "slept"' in out
    assert re.search(r'"duration": "1\.\d+s"', out), out
    first = target.received(path)[0]
    assert first.body == b'{"hello": "world"}'
    assert first.headers["Content-Type"] == "application/json"
    assert '"authorization": "[REDACTED]"' in out
    secret = re.search(r'"signing_secret": "(whsec_[A-Za-z0-9+/=]+)"', out)
    assert secret is not None, out
    # The signed job runs too; the target can verify what it got with the secret shown once.
    await eventually(lambda: len(target.received(path)) == 2, timeout=15)
    signed = target.received(path)[1]
    assert signed.headers["Authorization"] == "Bearer demo-token-0123456789"
    Webhook(secret.group(1)).verify(signed.body, signed.headers, json_parse=False)


@pytest.mark.usefixtures("worker")
@pytest.mark.skipif(shutil.which("jq") is None, reason="the walkthrough uses jq (.ci/run installs it)")
async def test_readme_jobctl_block_runs_verbatim(api, target, key):
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- jobctl:begin -->\n```bash\n(.*?)```\n<!-- jobctl:end -->", readme, re.S)
    assert match, "README has no jobctl block"
    path = f"/ok/{key}"
    env = {**os.environ, "API": f"127.0.0.1:{api.port}", "TARGET": target.url(path), "COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", match.group(1), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out_bytes, _ = await asyncio.wait_for(process.communicate(), 60)
    out = out_bytes.decode()
    assert process.returncode == 0, out
    assert re.search(r"^[0-9a-f-]{36}\s+\S+\s+succeeded\s+1\b", out, re.M), out  # executions list
    assert re.search(r"^1\s+\S+ \S+\s+\S+\s+200\b", out, re.M), out  # the attempt
    assert "cron '0 9 * * MON-FRI' in Europe/Berlin" in out
    assert re.search(r"^queued\s+\d+", out, re.M), out
    assert re.search(r"^ID\s+QUEUE\s+IN FLIGHT\s+LOAD", out, re.M), out
    assert target.received(path)[0].body == b'{"hello": "world"}'
