"""OpenTelemetry tracing (``pip install 'conveyor[otel]'``: opentelemetry-api only).

`TracingMiddleware` makes, by the OpenTelemetry messaging semantic conventions:

* a ``publish <stream>`` span (kind PRODUCER, ``messaging.operation.type`` ``send``)
  around every `publish`/`publish_many` through a backend it is added to, and writes its
  W3C trace context (``traceparent``, ``tracestate``) into each message's headers (the
  span is a child of the current span or, outside any, of the trace context the messages
  already carry: a dead letter published again stays in its trace);
* a ``process <stream>`` span (kind CONSUMER) around every handler call, continuing the
  trace of the message's headers: retries, claims and dead letters carry the same
  headers, so every delivery of a message, and its dead letter, stay in its trace. A
  message without trace context starts a new trace.

Attributes: ``messaging.system`` (the backend's name), ``messaging.destination.name``,
``messaging.operation.name`` / ``.type``, ``messaging.message.id``,
``messaging.batch.message_count`` (a batch publish); on process spans also
``messaging.consumer.group.name``, ``messaging.client.id`` (the consumer),
``conveyor.message.delivery_count`` and ``conveyor.outcome`` (``success``, ``retry``,
``dead_letter``, or ``cancelled`` when a stop cancelled the handler: the message stays
pending); a failure adds ``error.type``, the exception event and an ERROR status.

Spans go to the global tracer provider unless one is given; without an SDK they cost
next to nothing. Trace context is written and read as W3C Trace Context by default; pass
``propagator=opentelemetry.propagate.get_global_textmap()`` to use the configured
propagators (B3, baggage...) instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from conveyor import __version__
from conveyor.message import Message
from conveyor.middleware import (
    CallNext,
    HandlerContext,
    Middleware,
    PublishNext,
    PublishRequest,
)

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        TraceState,
    )
except ImportError as exc:  # pragma: no cover - exercised by the no-extras import test
    raise ImportError(
        "conveyor.otel needs the OpenTelemetry API: pip install 'conveyor[otel]'"
    ) from exc

__all__ = ["TracingMiddleware", "extract_context", "inject_context"]

_SCOPE = "conveyor"
_SAMPLED, _NOT_SAMPLED = TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.DEFAULT)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
GROUP = "messaging.consumer.group.name"
CLIENT = "messaging.client.id"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
DELIVERY_COUNT = "conveyor.message.delivery_count"
OUTCOME = "conveyor.outcome"
ERROR_TYPE = "error.type"


def extract_context(headers: Mapping[str, str]) -> otel_context.Context | None:
    """The remote span context in W3C ``traceparent``/``tracestate`` headers, as an
    OpenTelemetry `Context`; None when absent or invalid."""
    value = headers.get("traceparent")
    if value is None:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_hex == "0" * 32:
        return None
    if span_hex == "0" * 16:
        return None
    state = headers.get("tracestate")
    span_context = SpanContext(
        int(trace_hex, 16),
        int(span_hex, 16),
        is_remote=True,
        trace_flags=_SAMPLED if int(flags, 16) & 1 else _NOT_SAMPLED,
        trace_state=TraceState.from_header([state]) if state else None,
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def inject_context(span: trace.Span, headers: dict[str, str]) -> None:
    """Write `span`'s context into `headers` as W3C ``traceparent``/``tracestate``."""
    context = span.get_span_context()
    if not context.is_valid:
        return
    headers["traceparent"] = (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    )
    if context.trace_state:
        headers["tracestate"] = context.trace_state.to_header()


class TracingMiddleware(Middleware):
    """Publish and process spans, and trace context in message headers (see the module
    docstring).

    Args:
        tracer_provider: Where spans go; None: the global provider.
        propagator: How trace context is written to and read from headers; None: W3C
            Trace Context (``traceparent``, ``tracestate``).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        self.propagator = propagator

    def __repr__(self) -> str:
        return f"<TracingMiddleware propagator={self.propagator!r}>"

    def bind(self, context: HandlerContext) -> None:
        context.state[self] = (
            f"process {context.stream}",
            {
                SYSTEM: context.system,
                DESTINATION: context.stream,
                GROUP: context.group,
                CLIENT: context.consumer,
                OPERATION_NAME: "process",
                OPERATION_TYPE: "process",
                OUTCOME: "success",  # replaced when the handler raises: one write fewer
            },
        )

    def _parent(self, headers: Mapping[str, str]) -> otel_context.Context:
        if self.propagator is not None:
            return self.propagator.extract(headers, context=otel_context.Context())
        return extract_context(headers) or otel_context.Context()  # none: a new trace

    def _given_parent(self, request: PublishRequest) -> otel_context.Context | None:
        """Outside any span, the trace context the messages already carry (one for all:
        a dead letter published again, a message forwarded) is the publish span's
        parent; else None: the current context."""
        if not request.headers or trace.get_current_span().get_span_context().is_valid:
            return None
        given = {headers.get("traceparent") for headers in request.headers}
        if len(given) != 1 or None in given:
            return None
        return self._parent(request.headers[0])

    def _inject(self, span: trace.Span, request: PublishRequest) -> None:
        carrier: dict[str, str] = {}
        if self.propagator is None:
            inject_context(span, carrier)
        else:
            self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        for name, value in carrier.items():
            request.set_header(name, value)

    async def handle(self, message: Message, call_next: CallNext, context: HandlerContext) -> None:
        name, static = context.state[self]
        parent = self._parent(message.headers)
        attributes = {**static, MESSAGE_ID: message.id, DELIVERY_COUNT: message.delivery_count}
        span = self.tracer.start_span(name, parent, SpanKind.CONSUMER, attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await call_next(message)
        except Exception as exc:
            _failed(span, exc, context.failure_outcome(message, exc))
            raise
        except BaseException:  # cancelled (a stop): the message stays pending
            span.set_attribute(OUTCOME, "cancelled")
            raise
        finally:
            otel_context.detach(token)
            span.end()

    async def publish(self, request: PublishRequest, call_next: PublishNext) -> list[str]:
        attributes: dict[str, Any] = {
            SYSTEM: request.system,
            DESTINATION: request.stream,
            OPERATION_NAME: "publish",
            OPERATION_TYPE: "send",
        }
        if len(request.items) != 1:
            attributes[BATCH_COUNT] = len(request.items)
        span = self.tracer.start_span(
            f"publish {request.stream}",
            self._given_parent(request),
            SpanKind.PRODUCER,
            attributes,
        )
        self._inject(span, request)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            ids = await call_next(request)
            if len(ids) == 1:
                span.set_attribute(MESSAGE_ID, ids[0])
        except Exception as exc:
            _failed(span, exc, None)
            raise
        finally:
            otel_context.detach(token)
            span.end()
        return ids


def _failed(span: trace.Span, exc: Exception, outcome: str | None) -> None:
    if outcome is not None:
        span.set_attribute(OUTCOME, outcome)
    span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
