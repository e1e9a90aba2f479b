"""Tracing, metrics and JSON logs for an app, on memory://.

Spans go to an in-memory exporter here so the example can print them; in production
give the `TracerProvider` an OTLP exporter (or run under `opentelemetry-instrument`).
Needs `pip install 'conveyor[otel,prometheus]' opentelemetry-sdk`.

Run it: `.venv/bin/python docs/examples/observability.py`
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

import conveyor
from conveyor.logs import JsonFormatter, MessageLogContext
from conveyor.otel import TracingMiddleware
from conveyor.prometheus import PrometheusMiddleware
from conveyor.testing import run_until_idle

spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
tracing = TracingMiddleware(provider)  # no provider given: the global one
metrics = PrometheusMiddleware(CollectorRegistry())  # no registry: the default one

app = conveyor.App("billing", middleware=[tracing, metrics, MessageLogContext()])

logs = io.StringIO()  # `conveyor run --log-format json` logs every logger like this
to_logs = logging.StreamHandler(logs)
to_logs.setFormatter(JsonFormatter())
log = logging.getLogger("billing")
log.addHandler(to_logs)
log.setLevel(logging.INFO)


@app.handler("orders", max_deliveries=2, retry_delay=0.05)
async def charge(payload: dict[str, Any]) -> None:
    if payload["order_id"] == 13:
        raise ValueError("card declined")
    log.info("charged order %s", payload["order_id"])


async def main() -> None:
    # publish spans, and trace context in the message headers
    async with conveyor.connect("memory://observability", middleware=[tracing]) as backend:
        for order_id in (13, 2):
            await backend.publish("orders", {"order_id": order_id})
        (processor,) = app.processors(backend, consumer="worker-1")
        async with processor:  # in production: `conveyor run` (app.run)
            await run_until_idle(processor, raise_errors=False)  # 13 is dead-lettered

    trace_of: dict[str, list[str]] = {}  # one trace per message, through every delivery
    for span in spans.get_finished_spans():
        trace_id = f"{span.context.trace_id:032x}"[:8] if span.context else "?"
        trace_of.setdefault(trace_id, []).append(
            f"{span.name} ({span.attributes.get('conveyor.outcome', 'sent')})"
            if span.attributes
            else span.name
        )
    for chain in trace_of.values():
        print(" -> ".join(chain))

    exposition = generate_latest(metrics.registry).decode()
    for line in exposition.splitlines():
        if line.startswith(("conveyor_messages_handled_total", "conveyor_messages_dead_lettered")):
            print(line)

    for line in logs.getvalue().splitlines():
        record = json.loads(line)
        if record["logger"] == "billing":
            print(record["message"], record["stream"], record["delivery_count"])


if __name__ == "__main__":
    asyncio.run(main())
