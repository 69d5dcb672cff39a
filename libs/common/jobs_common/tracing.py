"""OpenTelemetry tracing: optional (TRACING_ENABLED), exported over OTLP/gRPC.

A job's trace, end to end::

    caller's span ─ api: RPC span (CreateJob, RunJob, ReplayExecution, ReplayDeadLetters)
                     └─ execution span (created → terminal)
                         ├─ attempt 1 span (CLIENT) ─ traceparent → the target's spans
                         └─ attempt 2 span (CLIENT) ─ traceparent → the target's spans

The api stores the W3C ``traceparent`` of the RPC span with each execution it creates. An
execution and its attempts may run on different workers hours apart, so the execution span's id is
derived from the execution id (and, for an execution no RPC made — a scheduler tick — so is its
trace id): every worker computes the same parent for its attempt, and the worker that records the
terminal state emits the execution span itself with that id and the execution's create time.

With tracing off, no spans are made, and a caller's ``traceparent`` still reaches the target
unchanged (it is stored the same way), so the caller's own trace continues through the job.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

__all__ = [
    "TRACEPARENT",
    "AttemptSpan",
    "ExecutionTrace",
    "configure_tracing",
    "current_traceparent",
    "extract",
    "tracer",
    "tracing_enabled",
]

TRACEPARENT = "traceparent"
_W3C = TraceContextTextMapPropagator()
_LOW_64 = (1 << 64) - 1
# The ids the next span gets instead of random ones (the execution span: see ExecutionTrace).
_preset_ids: ContextVar[tuple[int, int] | None] = ContextVar("preset_span_ids", default=None)
_enabled = False


class _PresetIds(RandomIdGenerator):
    """Random ids, except for a span started while ``_preset_ids`` is set."""

    def generate_span_id(self) -> int:
        preset = _preset_ids.get()
        return preset[1] if preset is not None else super().generate_span_id()

    def generate_trace_id(self) -> int:
        preset = _preset_ids.get()
        return preset[0] if preset is not None else super().generate_trace_id()


def configure_tracing(enabled: bool, service_name: str, version: str = "") -> Callable[[], None]:
    """Installs the process's tracer provider when ``enabled``; returns what flushes and stops
    it. The exporter, sampler and resource follow the standard ``OTEL_*`` variables
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_SAMPLER``, ``OTEL_SERVICE_NAME``, ...)."""
    global _enabled
    if not enabled:
        return lambda: None
    attributes: dict[str, str] = {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name}
    if version:
        attributes[SERVICE_VERSION] = version
    provider = TracerProvider(resource=Resource.create(attributes), id_generator=_PresetIds())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _enabled = True
    return provider.shutdown


def tracing_enabled() -> bool:
    """Whether configure_tracing installed a tracer provider (else spans are not recorded)."""
    return _enabled


def tracer() -> trace.Tracer:
    return trace.get_tracer("job-scheduler")


def extract(carrier: Mapping[str, str]) -> Context:
    """The context a W3C ``traceparent`` (and ``tracestate``) in ``carrier`` names."""
    return _W3C.extract(dict(carrier))


def current_traceparent(context: Context | None = None) -> str | None:
    """The ``traceparent`` of the current span (or of ``context``'s): what an execution created
    now is stored with."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context)
    return carrier.get(TRACEPARENT)


@dataclass(frozen=True, slots=True)
class ExecutionTrace:
    """Where an execution's spans go: under ``parent`` (the creating RPC's span, or none), with the
    execution span's context derived from the execution id."""

    parent: Context
    span_context: SpanContext
    # The stored traceparent, forwarded as it is when tracing is off.
    stored: str | None

    @classmethod
    def of(cls, execution_id: uuid.UUID, traceparent: str | None) -> ExecutionTrace:
        parent = extract({TRACEPARENT: traceparent}) if traceparent else Context()
        parent_span = trace.get_current_span(parent).get_span_context()
        if parent_span.is_valid:
            trace_id, flags = parent_span.trace_id, parent_span.trace_flags
        else:  # a trace of its own, the same for every worker that runs an attempt
            trace_id, flags = execution_id.int, TraceFlags(TraceFlags.SAMPLED)
        span_id = (execution_id.int >> 64) or (execution_id.int & _LOW_64) or 1
        return cls(parent, SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags), traceparent)

    @contextmanager
    def attempt(self, name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[AttemptSpan]:
        """A CLIENT span for one attempt, current (log lines carry its trace id) until the block
        ends. Its status is the attempt's outcome (:meth:`AttemptSpan.fail`), not the block's
        exceptions: arq's ``Retry`` is how a retried attempt ends."""
        under = trace.set_span_in_context(NonRecordingSpan(self.span_context)) if _enabled else self.parent
        span = tracer().start_span(name, context=under, kind=SpanKind.CLIENT, attributes=attributes)
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            yield AttemptSpan(span, self.stored)

    def end_execution(
        self, created: datetime, attributes: Mapping[str, AttributeValue], error: str | None = None
    ) -> None:
        """Emits the execution span (created → now) once its state is terminal."""
        if not _enabled:
            return
        token = _preset_ids.set((self.span_context.trace_id, self.span_context.span_id))
        try:
            span = tracer().start_span(
                "jobscheduler.execution",
                context=self.parent,
                attributes=attributes,
                start_time=int(created.timestamp() * 1e9),
            )
        finally:
            _preset_ids.reset(token)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


@dataclass(frozen=True, slots=True)
class AttemptSpan:
    span: Span
    stored: str | None

    def traceparent(self) -> str | None:
        """What the request carries: this attempt's span, or (tracing off) the stored parent."""
        if not _enabled:
            return self.stored
        return current_traceparent(trace.set_span_in_context(self.span))

    def fail(self, error_type: str, message: str) -> None:
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR, message))

    def set(self, name: str, value: AttributeValue) -> None:
        self.span.set_attribute(name, value)
