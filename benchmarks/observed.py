"""conveyor and FastStream with their observability on: metrics (conveyor's
`PrometheusMiddleware`, FastStream's ``<Broker>PrometheusMiddleware``) and tracing
(conveyor's `TracingMiddleware`, FastStream's ``<Broker>TelemetryMiddleware``), both on
the OpenTelemetry SDK with a no-op exporter behind the SDK's batch span processor, each
on its own registry or tracer provider per measurement.

Each row is a ratio to plain ``conveyor c=1`` of the same run (targets: metrics cost at
most 10 %, tracing at most 35 %) and faces the FastStream row doing the same work
(target: conveyor ahead). Every message of a traced backlog carries W3C trace context
(conveyor publishes through the tracing middleware; FastStream's backlog gets a
``traceparent`` header), so both sides continue a trace rather than start one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from importlib import import_module
from typing import Any, Literal

from benchmarks import conveyor_runs
from benchmarks.common import BenchResult
from benchmarks.report import Row, Target
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from conveyor.middleware import Middleware
from conveyor.otel import TracingMiddleware, extract_context
from conveyor.prometheus import PrometheusMiddleware
from conveyor.protocol import StreamBackend

__all__ = [
    "KINDS",
    "SPAN_ROW",
    "TRACEPARENT",
    "Kind",
    "conveyor_middleware",
    "conveyor_name",
    "conveyor_row",
    "faststream_middleware",
    "faststream_name",
    "faststream_row",
    "sdk_spans",
    "targets",
]

Kind = Literal["metrics", "tracing"]
KINDS: tuple[Kind, ...] = ("metrics", "tracing")

#: The trace context written into FastStream's traced backlogs.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

#: Most a kind may cost against plain c=1 (rate ratio at least 1 - cost).
COST = {"metrics": 0.10, "tracing": 0.35}
_FASTSTREAM = {"metrics": "prometheus", "tracing": "otel"}


def conveyor_name(kind: Kind) -> str:
    return f"conveyor c=1 +{kind}"


def faststream_name(kind: Kind) -> str:
    return f"FastStream per-message handler +{_FASTSTREAM[kind]}"


class _NoExport(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@contextlib.contextmanager
def tracer_provider() -> Iterator[TracerProvider]:
    """The OpenTelemetry SDK with a no-op exporter, shut down afterwards: behind the
    batch span processor (what production uses), or the simple one when
    ``CONVEYOR_BENCH_SPAN_PROCESSOR=simple`` (the SDK's cost alone)."""
    provider = TracerProvider()
    simple = os.environ.get("CONVEYOR_BENCH_SPAN_PROCESSOR") == "simple"
    processor = SimpleSpanProcessor if simple else BatchSpanProcessor
    provider.add_span_processor(processor(_NoExport()))
    try:
        yield provider
    finally:
        provider.shutdown()


@contextlib.contextmanager
def conveyor_middleware(kind: Kind) -> Iterator[list[Middleware]]:
    """conveyor's middleware for `kind`, on a fresh registry or tracer provider."""
    if kind == "metrics":
        yield [PrometheusMiddleware(CollectorRegistry())]
        return
    with tracer_provider() as provider:
        yield [TracingMiddleware(provider)]


@contextlib.contextmanager
def faststream_middleware(broker: str, kind: Kind) -> Iterator[Any]:
    """FastStream's own middleware for `kind` on `broker` (redis, nats or kafka)."""
    module = {"redis": "faststream.redis", "nats": "faststream.nats", "kafka": "faststream.kafka"}
    prefix = broker.capitalize()
    if kind == "metrics":
        prometheus = import_module(f"{module[broker]}.prometheus")
        yield getattr(prometheus, f"{prefix}PrometheusMiddleware")(registry=CollectorRegistry())
        return
    telemetry = import_module(f"{module[broker]}.opentelemetry")
    with tracer_provider() as provider:
        yield getattr(telemetry, f"{prefix}TelemetryMiddleware")(tracer_provider=provider)


#: The anchor row: what one SDK span per message costs by itself.
SPAN_ROW = "bare OpenTelemetry SDK, one process span per message"


def sdk_spans(label: str, n: int) -> BenchResult:
    """`n` process spans, each started and ended on the OpenTelemetry SDK (the same
    provider setup, name, kind, remote parent and attributes as `TracingMiddleware`'s),
    and nothing else: no broker, no handler. Its rate bounds any traced row: at best
    a traced message costs a plain one plus one such span."""
    with tracer_provider() as provider:
        tracer = provider.get_tracer("bench")
        parent = extract_context({"traceparent": TRACEPARENT})
        static: dict[str, str | int] = {
            "messaging.system": label,
            "messaging.destination.name": "orders",
            "messaging.consumer.group.name": "conveyor",
            "messaging.client.id": "bench-1",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "conveyor.outcome": "success",
        }
        started = time.perf_counter()
        for number in range(n):
            attributes: dict[str, str | int] = {
                **static,
                "messaging.message.id": str(number),
                "conveyor.message.delivery_count": 1,
            }
            tracer.start_span("process orders", parent, SpanKind.CONSUMER, attributes).end()
        elapsed = time.perf_counter() - started
    return BenchResult(SPAN_ROW, label, n, elapsed, rate=n / elapsed, verified=True)


async def conveyor_row(
    kind: Kind, backend: StreamBackend, inspector: StreamBackend, label: str, stream: str, n: int
) -> BenchResult:
    """``conveyor c=1`` with `kind` on (the preload published through it too)."""
    with conveyor_middleware(kind) as middleware:
        return await conveyor_runs.consume(
            backend, inspector, label, stream, n, name=conveyor_name(kind), middleware=middleware
        )


async def faststream_row(
    kind: Kind, broker: str, run: Callable[..., Awaitable[BenchResult]]
) -> BenchResult:
    """FastStream's per-message handler with its own middleware for `kind`: `run` is a
    ``faststream_runs.consume_*`` with its broker, names and count already given."""
    headers = {"traceparent": TRACEPARENT} if kind == "tracing" else None
    with faststream_middleware(broker, kind) as middleware:
        return await run(
            batch=False, middlewares=[middleware], headers=headers, row=faststream_name(kind)
        )


def targets(rows: list[Row], plain: dict[str, list[str]]) -> list[Target]:
    """Each observed row against its plain c=1 row and against FastStream's.

    `plain` names each broker's plain c=1 rows (Redis: one per payload format, whose
    suffix the observed rows share)."""
    out: list[Target] = []
    by_key = {(r.backend, r.name): r for r in rows}
    for backend, names in plain.items():
        for base_name in names:
            base = by_key.get((backend, base_name))
            suffix = base_name.removeprefix("conveyor c=1")
            for kind in KINDS:
                row = by_key.get((backend, conveyor_name(kind) + suffix))
                if row is None or base is None or not row.median or not base.median:
                    continue
                ratio = row.median / base.median
                goal = 1.0 - COST[kind]
                ok = ratio >= goal and row.verified and base.verified
                what = f"{backend}: {row.name} vs {base_name}"
                out.append(Target(what, ratio, f">= {goal:g}x", ok))
                span = by_key.get((backend, SPAN_ROW))
                if kind == "tracing" and span is not None and span.median:
                    # plain c=1 plus one SDK span per message: the most a traced row can do
                    ceiling = 1 / (1 / base.median + 1 / span.median)
                    what = f"{backend}: {row.name} vs its ceiling ({base_name} + one SDK span)"
                    out.append(Target(what, row.median / ceiling, "reported", row.verified))
                peer = by_key.get((backend, faststream_name(kind)))
                if peer is not None and peer.median:
                    ahead = row.median / peer.median
                    ok = ahead > 1.0 and row.verified and peer.verified
                    what = f"{backend}: {row.name} vs {peer.name}"
                    out.append(Target(what, ahead, "> 1x", ok))
    return out
