"""Where an execution's spans go: ids every worker derives alike, under the creating RPC's trace."""

from __future__ import annotations

import uuid

from opentelemetry.trace import TraceFlags

from jobs_common.tracing import ExecutionTrace


def test_an_execution_without_a_parent_has_a_trace_of_its_own_that_every_worker_derives_alike():
    execution_id = uuid.uuid4()
    first, again = ExecutionTrace.of(execution_id, None), ExecutionTrace.of(execution_id, None)
    assert first.span_context == again.span_context
    assert first.span_context.trace_id == execution_id.int
    assert first.span_context.span_id == execution_id.int >> 64
    assert first.span_context.trace_flags.sampled
    assert ExecutionTrace.of(uuid.uuid4(), None).span_context.span_id != first.span_context.span_id


def test_an_execution_created_by_an_rpc_joins_its_trace_and_keeps_its_sampling_decision():
    execution_id = uuid.uuid4()
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    sampled = ExecutionTrace.of(execution_id, f"00-{trace_id}-{parent}-01")
    assert sampled.span_context.trace_id == int(trace_id, 16)
    assert sampled.span_context.span_id == execution_id.int >> 64
    assert sampled.span_context.trace_flags.sampled
    unsampled = ExecutionTrace.of(execution_id, f"00-{trace_id}-{parent}-00")
    assert unsampled.span_context.trace_flags == TraceFlags(TraceFlags.DEFAULT)


def test_a_malformed_stored_traceparent_starts_a_trace_of_its_own():
    execution_id = uuid.uuid4()
    assert ExecutionTrace.of(execution_id, "garbage").span_context.trace_id == execution_id.int
