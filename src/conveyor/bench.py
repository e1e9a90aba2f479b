"""``conveyor bench``: measure conveyor on your own broker, through the public API only.

Every measurement checks its own result afterwards — exactly N messages handled and none
left pending in the group — because a fast wrong answer is not a result. Each works on a
fresh stream, named in its result's ``notes["stream"]``; `run_suite` deletes them at the
end unless asked to keep them.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

from conveyor.cleanup import remove_streams
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.processor import StreamProcessor
from conveyor.protocol import StreamBackend
from conveyor.registry import connect
from conveyor.timeouts import within

__all__ = [
    "BenchResult",
    "make_payload",
    "measure_consume",
    "measure_latency",
    "measure_publish",
    "preload",
    "run_suite",
]

log = logging.getLogger("conveyor.bench")


@dataclass
class BenchResult:
    """One measurement: a rate (msg/s) or latency percentiles, with what was checked."""

    name: str
    backend: str
    messages: int
    seconds: float
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    verified: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_payload(index: int, size: int = 256) -> dict[str, Any]:
    """An order-like payload of about `size` bytes of JSON."""
    base = {
        "type": "order.created",
        "order_id": index,
        "customer": "customer-0042",
        "currency": "EUR",
        "amount": 123.45,
        "items": [{"sku": "SKU-17", "qty": 2}],
    }
    filler = size - 130
    base["note"] = "x" * max(0, filler)
    return base


async def preload(backend: StreamBackend, stream: str, n: int, *, size: int = 256) -> None:
    """Publish `n` payloads in batches of 1,000."""
    for start in range(0, n, 1000):
        await backend.publish_many(
            stream, [make_payload(i, size) for i in range(start, min(n, start + 1000))]
        )


#: The streams `_fresh` named in this context (`run_suite` deletes them at the end).
_CREATED: ContextVar[list[str] | None] = ContextVar("conveyor_bench_created", default=None)


def _fresh(prefix: str) -> str:
    stream = f"bench.{prefix}.{uuid.uuid4().hex[:8]}"
    created = _CREATED.get()
    if created is not None:
        created += [stream, f"{stream}.dead"]
    return stream


async def _verify(backend: StreamBackend, stream: str, group: str, handled: int, n: int) -> bool:
    info = await backend.group_info(stream, group)
    return handled == n and info.pending == 0


async def measure_consume(
    backend: StreamBackend,
    label: str,
    *,
    n: int = 50_000,
    concurrency: int = 1,
    io_seconds: float = 0.0,
    batch_count: int = 100,
    size: int = 256,
    timeout: float = 600.0,
) -> BenchResult:
    """Drain an `n`-message backlog with a processor; handler does `io_seconds` of I/O.

    Raises:
        ConfigurationError: `n` < 1 (there would be nothing to wait for).
    """
    if n < 1:
        raise ConfigurationError(f"n must be >= 1, got {n!r}")
    stream = _fresh("consume")
    await preload(backend, stream, n, size=size)
    handled = 0
    done = asyncio.Event()
    started = 0.0

    async def handler(payload: dict[str, Any]) -> None:
        nonlocal handled, started
        if not started:  # the clock starts at the first message: group joins excluded
            started = time.perf_counter()
        if io_seconds:
            await asyncio.sleep(io_seconds)
        handled += 1
        if handled >= n:
            done.set()

    processor = StreamProcessor(
        backend,
        stream,
        "bench",
        "bench-1",
        batch_count=batch_count,
        concurrency=concurrency,
        claim_idle=300.0,
    )
    processor.set_callback(handler)
    async with processor:
        await within(done.wait(), timeout)
    seconds = time.perf_counter() - started  # includes the final ack flush in stop()
    ok = await _verify(backend, stream, "bench", handled, n)
    name = f"conveyor c={concurrency}" + (f" io={io_seconds * 1000:g}ms" if io_seconds else "")
    return BenchResult(
        name,
        label,
        n,
        seconds,
        rate=n / seconds,
        verified=ok,
        notes={"batch_count": batch_count, "stream": stream},
    )


async def measure_publish(
    backend: StreamBackend,
    label: str,
    *,
    n: int = 20_000,
    batch: int | None = 500,
    size: int = 256,
) -> BenchResult:
    """Publish `n` payloads one awaited call at a time (`batch=None`) or via publish_many."""
    stream = _fresh("publish")
    payloads = [make_payload(i, size) for i in range(n)]
    started = time.perf_counter()
    if batch is None:
        for payload in payloads:
            await backend.publish(stream, payload)
    else:
        for first in range(0, n, batch):
            await backend.publish_many(stream, payloads[first : first + batch])
    seconds = time.perf_counter() - started
    seen = 0
    deadline = time.monotonic() + 120
    async with backend.open_consumer(stream, "verify", "v") as session:
        while seen < n and time.monotonic() < deadline:
            got = await session.read(count=1000, block=0.5)
            seen += len(got)
            await session.ack(got)
    name = "publish one by one" if batch is None else f"publish_many x{batch}"
    return BenchResult(
        name, label, n, seconds, rate=n / seconds, verified=seen == n, notes={"stream": stream}
    )


async def measure_latency(
    backend: StreamBackend,
    label: str,
    *,
    rate: float = 200.0,
    seconds: float = 10.0,
    clock: Callable[[], float] = time.perf_counter,
) -> BenchResult:
    """Publish at `rate` msg/s for `seconds`; p50/p99 of publish→handler latency."""
    stream = _fresh("latency")
    n = max(2, int(rate * seconds))  # two at least: percentiles need two points
    latencies: list[float] = []
    done = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        latencies.append(clock() - payload["sent"])
        if len(latencies) >= n:
            done.set()

    processor = StreamProcessor(
        backend, stream, "bench", "bench-1", batch_count=100, start="earliest", claim_idle=300.0
    )
    processor.set_callback(handler)
    async with processor:
        await asyncio.sleep(0.5)  # let the group join (Kafka) before the clock starts
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for i in range(n):
            await backend.publish(stream, {"i": i, "sent": clock()})
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await within(done.wait(), 60)
    ok = await _verify(backend, stream, "bench", len(latencies), n)
    ordered = sorted(latencies)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return BenchResult(
        "latency",
        label,
        n,
        seconds,
        p50_ms=q[49] * 1000,
        p99_ms=q[98] * 1000,
        verified=ok,
        notes={"rate": rate, "stream": stream},
    )


async def run_suite(
    url: str,
    *,
    n: int = 50_000,
    latency_seconds: float = 10.0,
    progress: Callable[[BenchResult], None] | None = None,
    keep: bool = False,
) -> list[BenchResult]:
    """Every measurement of ``conveyor bench`` against one URL. Unless `keep`, the streams
    the measurements created are deleted at the end (also after a failed measurement).

    Raises:
        ConfigurationError: `n` < 1 or `latency_seconds` < 0.
    """
    if n < 1:
        raise ConfigurationError(f"n must be >= 1, got {n!r}")
    if latency_seconds < 0:
        raise ConfigurationError(f"latency_seconds must be >= 0, got {latency_seconds!r}")
    label = url.split("://", 1)[0]
    results: list[BenchResult] = []

    def record(result: BenchResult) -> None:
        results.append(result)
        if progress is not None:
            progress(result)

    created: list[str] = []
    token = _CREATED.set(created)
    try:
        async with connect(url) as backend:
            try:
                record(await measure_consume(backend, label, n=n))
                record(await measure_consume(backend, label, n=n, concurrency=64, io_seconds=0.001))
                record(await measure_publish(backend, label, n=min(n, 20_000), batch=None))
                record(await measure_publish(backend, label, n=n, batch=500))
                if latency_seconds > 0:
                    record(await measure_latency(backend, label, seconds=latency_seconds))
            except BaseException:
                if not keep:  # the failure is what the caller needs to see, not the cleanup's
                    try:
                        await _remove(backend, created)
                    except ConveyorError as exc:
                        log.debug("could not delete the bench streams after a failure: %s", exc)
                raise
            if not keep:
                await _remove(backend, created)
    finally:
        _CREATED.reset(token)
    return results


async def _remove(backend: StreamBackend, streams: list[str]) -> None:
    try:
        await remove_streams(backend, streams)
    except NotImplementedError as exc:
        log.warning("the bench streams stay on the broker: %s", exc)
