"""The point of the system: calls of up to 90 seconds. Started at session start (``long_calls``)."""

from __future__ import annotations

import pytest

from jobscheduler.v1 import resources_pb2 as pb
from tests.support.jobs import wait_terminal

pytestmark = pytest.mark.finale


async def test_a_call_answering_after_85s_succeeds_with_the_default_timeout(stub, long_calls):
    execution = await wait_terminal(stub, long_calls["answers_after_85s"], timeout=150)
    assert execution.state == pb.EXECUTION_STATE_SUCCEEDED
    attempt = execution.attempts[0]
    assert attempt.response_status_code == 200
    assert 85 <= attempt.duration.ToNanoseconds() / 1e9 < 90


async def test_a_call_answering_after_120s_is_cut_at_90s_and_recorded_as_timeout(stub, long_calls):
    execution = await wait_terminal(stub, long_calls["answers_after_120s"], timeout=150)
    assert execution.state == pb.EXECUTION_STATE_DEAD
    attempt = execution.attempts[0]
    assert attempt.error_kind == pb.ERROR_KIND_TIMEOUT
    assert 88 <= attempt.duration.ToNanoseconds() / 1e9 <= 92
