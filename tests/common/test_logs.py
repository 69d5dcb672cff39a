"""Structured logs: JSON lines carrying what the task bound, and no secrets whoever logs them."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from jobs_common.logs import bind, configure_logging, redact, redact_url_queries


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("INFO", "json", stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_each_line_is_a_json_object_with_what_the_task_bound(json_lines):
    async def task(n: int) -> None:
        bind(execution_id=f"exec-{n}", attempt=n)
        logging.getLogger("jobs_worker.test").info("attempt %d done", n)

    async def both() -> None:
        await asyncio.gather(task(1), task(2))

    asyncio.run(both())
    lines = sorted(json_lines(), key=lambda line: line["attempt"])
    assert [(line["execution_id"], line["attempt"], line["event"]) for line in lines] == [
        ("exec-1", 1, "attempt 1 done"),
        ("exec-2", 2, "attempt 2 done"),
    ]
    assert {line["level"] for line in lines} == {"info"}
    assert {line["logger"] for line in lines} == {"jobs_worker.test"}
    assert all(line["timestamp"].endswith("Z") for line in lines)


def test_secrets_are_masked_in_messages_and_exceptions(json_lines):
    log = logging.getLogger("jobs_api.test")
    log.warning("cannot reach postgresql+asyncpg://jobs:hunter2@db:5432/jobs")
    log.warning("calling with headers %s", {"Authorization": "Bearer abc.def.ghi", "Accept": "*/*"})
    try:
        raise ConnectionError("refused: http://user:s3cret@internal:8080/hook")
    except ConnectionError:
        log.exception("call failed")
    text = json.dumps(json_lines())
    for secret in ("hunter2", "abc.def.ghi", "s3cret"):
        assert secret not in text
    assert "postgresql+asyncpg://jobs:***@db:5432/jobs" in text
    assert "http://user:***@internal:8080/hook" in text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("Cookie: session=abc; other=1", "Cookie: ***"),
        ("x-api-key=abcdef", "x-api-key=***"),
        ("Basic dXNlcjpwYXNz", "Basic ***"),
        ("nothing to hide at http://example.com/path", "nothing to hide at http://example.com/path"),
        # Query values: pre-signed URLs, tokens in the query, a bare token; the names stay.
        (
            "HTTP 302 Found (Location: https://s3.example.com/b/k?X-Amz-Signature=abc123&X-Amz-Expires=60; x)",
            "HTTP 302 Found (Location: https://s3.example.com/b/k?X-Amz-Signature=REDACTED&X-Amz-Expires=REDACTED; x)",
        ),
        (
            "calling 'https://api.example.com/hook?token=sk_live_1#frag'",
            "calling 'https://api.example.com/hook?token=REDACTED#frag'",
        ),
        ("https://h.example.com/p?sk_live_2&&a=", "https://h.example.com/p?REDACTED&&a=REDACTED"),
        ("what? no URL here?a=1", "what? no URL here?a=1"),
        ("http://h.example.com/?a=1;b=2; then", "http://h.example.com/?a=REDACTED&b=REDACTED; then"),
    ],
)
def test_redact(text, masked):
    assert redact(text) == masked


def test_url_queries_are_kept_when_asked(json_lines):
    url = "https://api.example.com/hook?token=kept-on-purpose"
    assert redact_url_queries(url) == "https://api.example.com/hook?token=REDACTED"
    stream = io.StringIO()
    configure_logging("INFO", "json", stream, keep_url_queries=True)
    try:
        logging.getLogger("jobs_worker.test").info("calling %s", url)
        assert redact_url_queries(url) == url
        assert json.loads(stream.getvalue())["event"] == f"calling {url}"
    finally:
        configure_logging("INFO", "json", io.StringIO())
    assert redact_url_queries(url) != url
