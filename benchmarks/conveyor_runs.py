"""conveyor's side: the engine (`StreamProcessor`) and, as a diagnostic, the bare backend
loop (``read`` + handler + ``ack``, no engine), both through the public API.

Publish and latency measurements come straight from `conveyor.bench` (what ``conveyor
bench`` runs). Consume runs here start the clock at the first handled message rather than
at ``start()`` as `conveyor.bench.measure_consume` does, so that a group join (seconds on
Tansu) is outside the clock for conveyor exactly as for the raw loops and FastStream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import BATCH, BenchResult, Tally, result

from conveyor import StreamProcessor
from conveyor.base import BaseBackend
from conveyor.bench import preload
from conveyor.middleware import Middleware
from conveyor.protocol import StreamBackend

__all__ = ["backend_loop", "consume", "settled"]

_TIMEOUT = 600.0


async def settled(inspector: StreamBackend, stream: str, group: str) -> bool:
    """True when the group has nothing pending and nothing left to deliver.

    `inspector` should be a backend object that is not itself a member of the group
    (Kafka: lag then comes from the committed offsets, not from a member's position).
    """
    info = await inspector.group_info(stream, group)
    return info.pending == 0 and not info.lag


async def consume(
    backend: StreamBackend,
    inspector: StreamBackend,
    label: str,
    stream: str,
    n: int,
    *,
    concurrency: int = 1,
    io_seconds: float = 0.0,
    name: str = "",
    middleware: Sequence[Middleware] = (),
    payload_type: type | None = None,
) -> BenchResult:
    """Preload `n` payloads, drain them with a `StreamProcessor`; stop() flushes the acks.

    `middleware` run around the handler, and around the preload's publishes (a
    `BaseBackend`'s), as an app would have them on both sides. `payload_type`: the
    handler's parameter is annotated with it (a typed handler, `conveyor.typed`)."""
    if isinstance(backend, BaseBackend):
        for item in middleware:
            backend.add_middleware(item)
    try:
        await preload(backend, stream, n)
    finally:
        if isinstance(backend, BaseBackend):
            for item in middleware:
                backend.remove_middleware(item)
    tally = Tally(n)

    if io_seconds:

        async def handler(payload: dict[str, Any]) -> None:
            await asyncio.sleep(io_seconds)
            tally.hit()

    else:

        async def handler(payload: dict[str, Any]) -> None:
            tally.hit()

    if payload_type is not None:
        handler.__annotations__["payload"] = payload_type

    processor = StreamProcessor(
        backend,
        stream,
        "conveyor",
        "bench-1",
        batch_count=BATCH,
        concurrency=concurrency,
        claim_idle=300.0,
        middleware=middleware,
    )
    processor.set_callback(handler)
    async with processor:
        await asyncio.wait_for(tally.done.wait(), _TIMEOUT)
    seconds = time.perf_counter() - tally.first
    ok = await settled(inspector, stream, "conveyor")
    default = f"conveyor c={concurrency}" + (f" io={io_seconds * 1000:g}ms" if io_seconds else "")
    return result(name or default, label, tally, seconds, ok, concurrency=concurrency)


async def backend_loop(
    backend: StreamBackend, inspector: StreamBackend, label: str, stream: str, n: int
) -> BenchResult:
    """Diagnostic: ``read(100)`` + awaited handler + ``ack(batch)`` in a plain loop."""
    await preload(backend, stream, n)
    session = await backend.open_consumer(stream, "loop", "bench-1")
    tally = Tally(n)

    async def handler(payload: dict[str, Any]) -> None:
        pass

    while tally.count < n:
        batch = await session.read(count=BATCH, block=1.0)
        if not batch:
            continue
        if not tally.count:
            tally.hit(0)
        for message in batch:
            await handler(message.data)
        await session.ack(batch)
        tally.hit(len(batch))
    await session.aclose()
    seconds = tally.elapsed()
    ok = await asyncio.wait_for(settled(inspector, stream, "loop"), 60)
    return result("conveyor backend loop (no engine)", label, tally, seconds, ok)
