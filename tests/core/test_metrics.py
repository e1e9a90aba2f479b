"""Prometheus metrics: counters, histograms and gauges per stream and group, scraped over
HTTP and parsed as the exposition format; pending and lag fetched at scrape time, at most
once per interval."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conveyor import App, StreamProcessor
from conveyor.prometheus import MetricsServer, PrometheusMiddleware
from conveyor.protocol import GroupInfo
from conveyor.testing import FakeClock, run_until_idle, wait_until
from conveyor_memory import MemoryBackend

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics() -> PrometheusMiddleware:
    return PrometheusMiddleware(CollectorRegistry(), group_info_interval=3600.0)


@pytest.fixture
def server(metrics: PrometheusMiddleware) -> Iterator[MetricsServer]:
    with metrics.serve(0, "127.0.0.1") as serving:
        yield serving


async def scrape(server: MetricsServer) -> Samples:
    """GET /metrics (from a thread: the scrape refreshes pending/lag on this loop)."""

    def get() -> str:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body: bytes = response.read()
            return body.decode()

    text = await asyncio.to_thread(get)
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset({"stream": "orders", "group": "g", **labels}.items())))


async def test_a_scrape_shows_what_the_processor_did(
    memory: MemoryBackend, metrics: PrometheusMiddleware, server: MetricsServer
) -> None:
    await memory.publish_many("orders", [{"n": n} for n in range(5)])

    async def handle(payload: dict[str, Any]) -> None:
        if payload["n"] == 3:
            raise ValueError("no 3")

    processor = StreamProcessor(
        memory, "orders", "g", "c", max_deliveries=2, retry_delay=0.0, middleware=[metrics]
    )
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, raise_errors=False)
        metrics.group_info_interval = 0.0
        samples = await scrape(server)
    assert value(samples, "conveyor_messages_handled_total") == 4
    assert value(samples, "conveyor_messages_failed_total") == 2
    assert value(samples, "conveyor_messages_retried_total") == 1
    assert value(samples, "conveyor_messages_dead_lettered_total") == 1
    assert value(samples, "conveyor_messages_claimed_total") == 0
    assert value(samples, "conveyor_messages_acked_total") == 4
    assert value(samples, "conveyor_dead_letter_failures_total") == 0
    assert value(samples, "conveyor_messages_in_flight") == 0
    for outcome, count in [("success", 4), ("retry", 1), ("dead_letter", 1)]:
        name = "conveyor_handler_duration_seconds"
        assert value(samples, f"{name}_count", outcome=outcome) == count
        assert value(samples, f"{name}_bucket", outcome=outcome, le="+Inf") == count
        assert value(samples, f"{name}_bucket", outcome=outcome, le="10.0") == count
    assert value(samples, "conveyor_message_latency_seconds_count") == 4
    assert value(samples, "conveyor_group_pending") == 0
    assert value(samples, "conveyor_group_lag") == 0


async def test_in_flight_and_pending_while_a_handler_runs(
    memory: MemoryBackend, metrics: PrometheusMiddleware, server: MetricsServer
) -> None:
    metrics.group_info_interval = 0.0
    release = asyncio.Event()
    started = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    await memory.publish_many("orders", [{"n": n} for n in range(3)])
    processor = StreamProcessor(memory, "orders", "g", "c", batch_count=1, middleware=[metrics])
    processor.set_callback(handle)
    async with processor:
        await asyncio.wait_for(started.wait(), 10)
        samples = await scrape(server)
        release.set()
    assert value(samples, "conveyor_messages_in_flight") == 1
    pending = value(samples, "conveyor_group_pending")
    lag = value(samples, "conveyor_group_lag")
    assert pending is not None
    assert lag is not None
    assert pending >= 1
    assert pending + lag == 3


async def test_pending_and_lag_cost_one_call_per_group_per_interval(
    memory: MemoryBackend, metrics: PrometheusMiddleware, server: MetricsServer
) -> None:
    calls: list[tuple[str, str]] = []
    real = memory.group_info

    async def counted(stream: str, group: str) -> GroupInfo:
        calls.append((stream, group))
        return await real(stream, group)

    memory.group_info = counted  # type: ignore[method-assign]
    app = App("shop", middleware=[metrics])
    for stream in ("orders", "refunds"):
        app.add_handler(stream, _noop)
    processors = app.processors(memory, consumer="c")
    await memory.publish_many("orders", [{"n": n} for n in range(50)])
    for processor in processors:
        await processor.start()
    try:
        await run_until_idle(processors[0])
        metrics.group_info_interval = 3600.0
        await metrics.refresh_groups()
        calls.clear()
        for _ in range(5):  # within the interval: no broker call at all
            samples = await scrape(server)
        assert calls == []
        metrics.group_info_interval = 0.0
        samples = await scrape(server)
        assert sorted(calls) == [("orders", "shop"), ("refunds", "shop")]
    finally:
        for processor in processors:
            await processor.stop()
    labels = frozenset({"stream": "orders", "group": "shop"}.items())
    assert samples[("conveyor_messages_handled_total", labels)] == 50


async def _noop(payload: dict[str, Any]) -> None:
    pass


async def test_latency_is_measured_on_the_processor_clock(
    memory: MemoryBackend, clock: FakeClock, metrics: PrometheusMiddleware, server: MetricsServer
) -> None:
    """memory:// stamps messages with its clock: 2.5 fake seconds after publishing, the
    handled message waited 2.5 s."""
    await memory.publish("orders", {"n": 1})
    await clock.advance(2.5)
    processor = StreamProcessor(memory, "orders", "g", "c", clock=clock, middleware=[metrics])
    processor.set_callback(_noop)
    async with processor:
        await run_until_idle(processor)
    samples = await scrape(server)
    name = "conveyor_message_latency_seconds"
    assert value(samples, f"{name}_sum") == pytest.approx(2.5)
    assert value(samples, f"{name}_bucket", le="1.0") == 0
    assert value(samples, f"{name}_bucket", le="2.5") == 1


async def test_several_processors_of_a_group_add_up(
    memory: MemoryBackend, metrics: PrometheusMiddleware, server: MetricsServer
) -> None:
    await memory.publish_many("orders", [{"n": n} for n in range(20)])
    processors = [
        StreamProcessor(memory, "orders", "g", name, batch_count=2, middleware=[metrics])
        for name in ("a", "b")
    ]
    for processor in processors:
        processor.set_callback(_noop)
        await processor.start()
    try:
        await wait_until(lambda: sum(p.stats.handled for p in processors) == 20)
        for processor in processors:
            await run_until_idle(processor)
    finally:
        for processor in processors:
            await processor.stop()
    for processor in processors:  # restarted: its counters are not counted twice
        await processor.start()
        await processor.stop()
    samples = await scrape(server)
    assert value(samples, "conveyor_messages_handled_total") == 20
    assert value(samples, "conveyor_handler_duration_seconds_count", outcome="success") == 20


def test_the_app_gets_one_prometheus_middleware() -> None:
    app = App("shop")
    registry = CollectorRegistry()
    own = PrometheusMiddleware(registry)
    app.add_middleware(own)
    assert PrometheusMiddleware.of(app) is own
    assert app.middleware == (own,)


async def test_a_scrape_on_the_loop_thread_shows_the_last_values(
    memory: MemoryBackend, metrics: PrometheusMiddleware
) -> None:
    """Rendering on the processors' own loop cannot wait for group_info: it shows what
    the last refresh found (none yet: no gauges)."""
    from prometheus_client import generate_latest

    metrics.group_info_interval = 0.0
    processor = StreamProcessor(memory, "orders", "g", "c", middleware=[metrics])
    processor.set_callback(_noop)
    async with processor:
        text = generate_latest(metrics.registry).decode()
        assert "conveyor_group_pending{" not in text
        await metrics.refresh_groups()
        text = generate_latest(metrics.registry).decode()
    assert 'conveyor_group_pending{group="g",stream="orders"} 0.0' in text
