"""The worker's egress guard against the real local target: a refused address is a POLICY
failure made without connecting; redirects are followed only when the job asks, each hop
checked again, credentials kept from other origins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from jobs_common.domain import ErrorKind, ExecutionState, HttpMethod, HttpOutcome, HttpRequestSpec, RetryPolicy, decide
from jobs_common.egress import EgressPolicy
from jobs_worker._egress import guarded_client
from jobs_worker._http import perform
from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import create, http_job, wait_terminal
from tests.support.processes import ChildProcess, settings_env
from tests.support.target import TargetServer

LOOPBACK = EgressPolicy.from_settings("127.0.0.0/8", "")
POLICY = RetryPolicy(max_attempts=5, min_backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=5), multiplier=2)


@pytest.fixture
async def client_for() -> AsyncIterator[object]:
    clients: list[httpx.AsyncClient] = []

    def make(policy: EgressPolicy) -> httpx.AsyncClient:
        clients.append(guarded_client(policy, 4, httpx.Timeout(5)))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


async def _call(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: HttpMethod = HttpMethod.GET,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    follow: bool = False,
) -> HttpOutcome:
    request = HttpRequestSpec(method, url, headers or {}, body, follow_redirects=follow)
    return await perform(client, request, "exec-1", 1, timedelta(seconds=5), 1024, max_redirects=3)


async def test_loopback_is_refused_by_default_without_a_connection(client_for, target: TargetServer, key: str):
    client = client_for(EgressPolicy())
    for url, refusal in [
        (target.url(f"/ok/{key}"), "egress policy refuses 127.0.0.1 (loopback)"),
        (
            f"http://localhost:{target.port}/ok/{key}",
            "egress policy refuses localhost: it resolves to 127.0.0.1 (loopback)",
        ),
        # Not an address as written (only a.b.c.d is taken as one without asking the resolver),
        # but the resolver reads it as 127.0.0.1.
        (f"http://127.1:{target.port}/ok/{key}", "egress policy refuses 127.1: it resolves to 127.0.0.1 (loopback)"),
    ]:
        outcome = await _call(client, url)
        assert (outcome.error_kind, outcome.error_message, outcome.status_code) == (ErrorKind.POLICY, refusal, None)
        assert decide(outcome, POLICY, counted_attempts=1).state is ExecutionState.DEAD  # never retried
    assert target.received(f"/ok/{key}") == []


async def test_the_ipv4_mapped_spelling_of_an_allowed_address_is_still_refused(client_for, target, key):
    outcome = await _call(client_for(LOOPBACK), f"http://[::ffff:127.0.0.1]:{target.port}/ok/{key}")
    assert outcome.error_kind is ErrorKind.POLICY
    assert "IPv4-mapped IPv6" in outcome.error_message


async def test_allowed_networks_and_hosts_connect_to_the_checked_address_keeping_the_host(
    client_for, target: TargetServer, key: str
):
    assert (await _call(client_for(LOOPBACK), target.url(f"/ok/{key}"))).status_code == 200
    trusted = client_for(EgressPolicy.from_settings("", "localhost"))
    assert (await _call(trusted, f"http://localhost:{target.port}/ok/{key}")).status_code == 200
    assert [r.headers["Host"] for r in target.received(f"/ok/{key}")] == [
        f"127.0.0.1:{target.port}",
        f"localhost:{target.port}",
    ]


async def test_a_redirect_is_a_final_failure_with_its_location_unless_the_job_follows(
    client_for, target: TargetServer, key: str
):
    destination = target.url(f"/ok/{key}")
    outcome = await _call(client_for(LOOPBACK), target.url(f"/redirect/302/{key}?to={quote(destination)}"))
    assert (outcome.status_code, outcome.error_kind) == (302, ErrorKind.HTTP_STATUS)
    assert outcome.error_message == f"HTTP 302 Found (Location: {destination}; redirects are not followed)"
    assert decide(outcome, POLICY, counted_attempts=1).state is ExecutionState.DEAD
    assert target.received(f"/ok/{key}") == []


async def test_followed_redirects_change_post_to_get_and_keep_credentials_on_their_origin(
    client_for, target: TargetServer, key: str
):
    # 127.0.0.1 → (307, same origin, POST kept) → localhost (302: another origin, POST → GET).
    final = f"http://localhost:{target.port}/ok/{key}"
    second = target.url(f"/redirect/302/{key}-2?to={quote(final)}")
    first = target.url(f"/redirect/307/{key}-1?to={quote(second)}")
    headers = {"Authorization": "Bearer s3cret-token", "X-Api-Key": "k3y", "X-Trace": "kept"}
    client = client_for(EgressPolicy.from_settings("127.0.0.0/8", "localhost"))
    outcome = await _call(client, first, method=HttpMethod.POST, headers=headers, body=b"payload", follow=True)
    assert (outcome.status_code, outcome.body, outcome.error_kind) == (200, b"ok", None)
    [hop1], [hop2], [hop3] = (
        target.received(p) for p in (f"/redirect/307/{key}-1", f"/redirect/302/{key}-2", f"/ok/{key}")
    )
    assert (hop2.method, hop2.body, hop2.headers["Authorization"]) == ("POST", b"payload", "Bearer s3cret-token")
    assert (hop3.method, hop3.body, hop3.headers["X-Trace"]) == ("GET", b"", "kept")
    assert "Authorization" not in hop3.headers
    assert "X-Api-Key" not in hop3.headers
    assert hop1.headers["Idempotency-Key"] == hop3.headers["Idempotency-Key"] == "exec-1"


async def test_every_hop_passes_the_policy_and_the_hop_count_is_capped(client_for, target: TargetServer, key: str):
    client = client_for(LOOPBACK)
    metadata = "http://169.254.169.254/latest/meta-data/"
    refused = await _call(client, target.url(f"/redirect/302/{key}?to={quote(metadata)}"), follow=True)
    assert refused.error_kind is ErrorKind.POLICY
    assert refused.error_message == "egress policy refuses 169.254.169.254 (link-local, the cloud metadata service)"

    looped = await _call(client, target.url(f"/redirect/301/{key}-loop"), follow=True)
    assert looped.status_code == 301
    assert "after 3 redirects, the limit" in looped.error_message
    assert len(target.received(f"/redirect/301/{key}-loop")) == 4

    elsewhere = await _call(client, target.url(f"/redirect/302/{key}?to={quote('file:///etc/passwd')}"), follow=True)
    assert (elsewhere.error_kind, elsewhere.retryable) == (ErrorKind.PROTOCOL, False)
    assert "redirect to a file: URL is not followed" in elsewhere.error_message


@pytest.mark.usefixtures("api")
async def test_a_worker_refuses_what_its_policy_refuses_and_records_policy(settings, stub, target, key, tmp_path: Path):
    """The api here accepts loopback (the tests' allow-list); a worker without one refuses it at
    send time: one POLICY attempt, then DEAD, although three attempts were allowed."""
    queue = f"egress-{key[:8]}"
    env = settings_env(settings.model_copy(update={"worker_queue": queue, "egress_allow_networks": ""}))
    worker = ChildProcess("jobs_worker", {**env, "WORKER_HEALTH_FILE": str(tmp_path / "w")}, tmp_path / "w.log")
    try:
        await worker.wait_for_log("ready on queue")
        job = await create(
            stub, http_job(target.url(f"/ok/{key}"), queue=queue, retry_policy=pb.RetryPolicy(max_attempts=3))
        )
        done = await wait_terminal(stub, job.last_execution.id, timeout=20)
    finally:
        await worker.stop()
    assert done.state == pb.EXECUTION_STATE_DEAD
    assert [(a.error_kind, a.error_message) for a in done.attempts] == [
        (pb.ERROR_KIND_POLICY, "egress policy refuses 127.0.0.1 (loopback)")
    ]
    assert target.received(f"/ok/{key}") == []
