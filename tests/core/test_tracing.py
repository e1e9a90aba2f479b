"""OpenTelemetry tracing: publish and process spans by the messaging semantic conventions,
and W3C trace context in message headers, so that a message's every delivery (retries,
claims) and its dead letter stay in the trace of its publish, on every backend (the
`engine` fixture), recorded with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import conveyor
from conveyor import Message
from conveyor.base import BaseBackend
from conveyor.errors import UnserializablePayloadError
from conveyor.otel import TracingMiddleware, extract_context, inject_context
from conveyor.testing import run_until_idle, wait_until
from conveyor_memory import MemoryBackend

if TYPE_CHECKING:
    from tests.conftest import EngineEnv


class Traced:
    """A tracer provider recording into memory, and the middleware using it."""

    def __init__(self, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.middleware = TracingMiddleware(self.provider, **options)

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def traced() -> Iterator[Traced]:
    recorder = Traced()
    yield recorder
    recorder.provider.shutdown()


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def assert_child_of(span: ReadableSpan, parent: ReadableSpan) -> None:
    assert span.context is not None
    assert parent.context is not None
    assert span.context.trace_id == parent.context.trace_id
    assert span.parent is not None
    assert span.parent.span_id == parent.context.span_id


async def test_every_delivery_and_the_dead_letter_stay_in_the_publish_trace(
    engine: EngineEnv, traced: Traced
) -> None:
    backend, stream = engine.backend, engine.stream
    assert isinstance(backend, BaseBackend)
    backend.add_middleware(traced.middleware)
    good_id = await backend.publish(stream, {"n": 1})
    bad_id = await backend.publish(stream, {"n": 2})

    async def handle(payload: dict[str, Any]) -> None:
        if payload["n"] == 2:
            raise ValueError("bad order")

    processor = engine.processor(max_deliveries=3, retry_delay=0.1, middleware=[traced.middleware])
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, raise_errors=False, timeout=60)

    good_publish, bad_publish = traced.spans(f"publish {stream}")
    assert good_publish.kind == SpanKind.PRODUCER
    assert dict(good_publish.attributes or {}) == {
        "messaging.system": engine.capabilities.name,
        "messaging.destination.name": stream,
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.message.id": good_id,
    }
    processed = traced.spans(f"process {stream}")
    by_id: dict[str, list[ReadableSpan]] = {}
    for span in processed:
        by_id.setdefault(str((span.attributes or {})["messaging.message.id"]), []).append(span)
    (good,) = by_id[good_id]
    assert_child_of(good, good_publish)
    assert good.kind == SpanKind.CONSUMER
    assert dict(good.attributes or {}) == {
        "messaging.system": engine.capabilities.name,
        "messaging.destination.name": stream,
        "messaging.consumer.group.name": "billing",
        "messaging.client.id": "c1",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.message.id": good_id,
        "conveyor.message.delivery_count": 1,
        "conveyor.outcome": "success",
    }
    attempts = by_id[bad_id]  # every delivery, retried ones included, in the same trace
    assert [(a.attributes or {})["conveyor.outcome"] for a in attempts] == [
        *["retry"] * (len(attempts) - 1),
        "dead_letter",
    ]
    assert len(attempts) >= 2
    for attempt in attempts:
        assert_child_of(attempt, bad_publish)
        assert attempt.status.status_code == StatusCode.ERROR
        assert (attempt.attributes or {})["error.type"] == "ValueError"
        assert [e.name for e in attempt.events] == ["exception"]
    if engine.features.exact_delivery_count:
        counts = [(a.attributes or {})["conveyor.message.delivery_count"] for a in attempts]
        assert counts == [1, 2, 3]
    (letter,) = await backend.peek(f"{stream}.dead", count=10)
    assert extract_trace_id(letter.headers) == hex_trace(bad_publish)
    assert letter.data["traceback"].rstrip().endswith("ValueError: bad order")  # on the wire


def extract_trace_id(headers: dict[str, str]) -> str:
    context = extract_context(headers)
    assert context is not None
    return f"{trace.get_current_span(context).get_span_context().trace_id:032x}"


async def test_a_claimed_message_stays_in_its_trace(engine: EngineEnv, traced: Traced) -> None:
    started = asyncio.Event()
    handled: list[Message] = []

    async def stuck(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(3600)

    async def works(msg: Message) -> None:
        handled.append(msg)

    assert isinstance(engine.backend, BaseBackend)
    engine.backend.add_middleware(traced.middleware)
    await engine.backend.publish(engine.stream, {"n": 1})
    dying = engine.processor("dying", shutdown_timeout=0.05, middleware=[traced.middleware])
    dying.set_callback(stuck)
    await dying.start()
    await asyncio.wait_for(started.wait(), 30)
    await dying.stop()  # the handler is cancelled: the message stays pending for "dying"
    rescuer = engine.processor("rescuer", middleware=[traced.middleware])
    rescuer.set_callback(works)
    async with rescuer:
        if engine.capabilities.claim == "engine":
            await engine.elapse(engine.claim_idle * 1.5)
        await wait_until(lambda: bool(handled), timeout=engine.claim_idle + 30)
    (published,) = traced.spans(f"publish {engine.stream}")
    cancelled, rescued = traced.spans(f"process {engine.stream}")
    assert (cancelled.attributes or {})["conveyor.outcome"] == "cancelled"
    assert (cancelled.attributes or {})["messaging.client.id"] == "dying"
    assert (rescued.attributes or {})["conveyor.outcome"] == "success"
    assert (rescued.attributes or {})["messaging.client.id"] == "rescuer"
    assert_child_of(cancelled, published)
    assert_child_of(rescued, published)


async def test_a_message_without_trace_context_starts_a_trace(
    memory: MemoryBackend, traced: Traced
) -> None:
    await memory.publish("orders", {"n": 1})  # no tracing on the publishing side
    outer = traced.provider.get_tracer("test")
    processor = conveyor.StreamProcessor(memory, "orders", "g", "c", middleware=[traced.middleware])
    seen: list[trace.Span] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(trace.get_current_span())

    processor.set_callback(handle)
    with outer.start_as_current_span("starting the worker"):  # must not become a parent
        await processor.start()
    try:
        await run_until_idle(processor)
    finally:
        await processor.stop()
    (span,) = traced.spans("process orders")
    assert span.parent is None
    assert seen[0].get_span_context() == span.context  # the handler runs in the span


async def test_publishing_from_a_handler_continues_the_trace(
    memory: MemoryBackend, traced: Traced
) -> None:
    memory.add_middleware(traced.middleware)
    await memory.publish("orders", {"n": 1})

    async def handle(payload: dict[str, Any]) -> None:
        await memory.publish("invoices", {"order": payload["n"]})

    processor = conveyor.StreamProcessor(memory, "orders", "g", "c", middleware=[traced.middleware])
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor)
    (first,) = traced.spans("publish orders")
    (process,) = traced.spans("process orders")
    (second,) = traced.spans("publish invoices")
    assert_child_of(process, first)
    assert_child_of(second, process)
    (invoice,) = await memory.peek("invoices", count=1)
    assert extract_trace_id(invoice.headers) == hex_trace(first)


async def test_a_batch_publish_is_one_span_whose_context_every_message_carries(
    memory: MemoryBackend, traced: Traced
) -> None:
    memory.add_middleware(traced.middleware)
    await memory.publish_many("orders", [{"n": 1}, {"n": 2}], headers=[{"x-a": "1"}, None])
    (span,) = traced.spans("publish orders")
    assert (span.attributes or {})["messaging.batch.message_count"] == 2
    assert "messaging.message.id" not in (span.attributes or {})
    first, second = await memory.peek("orders", count=2)
    assert first.headers["x-a"] == "1"
    assert first.headers["traceparent"] == second.headers["traceparent"]
    assert extract_trace_id(first.headers) == hex_trace(span)


async def test_a_message_published_again_stays_in_its_trace(
    memory: MemoryBackend, traced: Traced
) -> None:
    """Outside any span, the trace context a message already carries (a dead letter
    published again, with its headers) is the publish span's parent."""
    memory.add_middleware(traced.middleware)
    await memory.publish("orders", {"n": 1})
    (original,) = await memory.peek("orders", count=1)
    await memory.publish("orders", original.data, headers=original.headers)
    first, again = traced.spans("publish orders")
    assert_child_of(again, first)
    outer = traced.provider.get_tracer("test")
    with outer.start_as_current_span("replaying") as current:  # a current span wins
        await memory.publish("orders", original.data, headers=original.headers)
    third = traced.spans("publish orders")[-1]
    assert third.parent is not None
    assert third.parent.span_id == current.get_span_context().span_id


async def test_a_failed_publish_is_an_error_span(memory: MemoryBackend, traced: Traced) -> None:
    memory.add_middleware(traced.middleware)
    with pytest.raises(UnserializablePayloadError):
        await memory.publish("orders", {"bad": {1, 2}})
    (span,) = traced.spans("publish orders")
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "UnserializablePayloadError"


async def test_the_global_propagator_can_carry_baggage(memory: MemoryBackend) -> None:
    from opentelemetry import baggage, context

    recorder = Traced(propagator=get_global_textmap())
    memory.add_middleware(recorder.middleware)
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        await memory.publish("orders", {"n": 1})
    finally:
        context.detach(token)
    seen: list[object] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(baggage.get_baggage("tenant"))

    processor = conveyor.StreamProcessor(
        memory, "orders", "g", "c", middleware=[recorder.middleware]
    )
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor)
    assert seen == ["acme"]
    (published,) = recorder.spans("publish orders")
    (processed,) = recorder.spans("process orders")
    assert_child_of(processed, published)
    recorder.provider.shutdown()


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # three parts
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 has 4 parts
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033_1-01",
    ],
)
def test_invalid_traceparent_headers_are_ignored(header: str) -> None:
    assert extract_context({"traceparent": header}) is None


def test_trace_context_round_trips_through_headers() -> None:
    header = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future"
    context = extract_context({"traceparent": header, "tracestate": "congo=t61rcWkgMzE"})
    assert context is not None  # a later version may add fields
    span = trace.get_current_span(context)
    carrier: dict[str, str] = {}
    inject_context(span, carrier)
    assert carrier == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "congo=t61rcWkgMzE",
    }
    inject_context(trace.INVALID_SPAN, carrier := {})
    assert carrier == {}
