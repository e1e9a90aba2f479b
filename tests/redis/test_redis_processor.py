"""StreamProcessor on Redis through outages: a deleted stream, killed connections."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from conveyor import StreamProcessor
from conveyor_redis import RedisBackend


class Seen:
    """What a handler saw, with a way to wait until it saw something."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self._changed = asyncio.Event()

    async def handler(self, payload: dict[str, Any]) -> None:
        self.items.append(payload["i"])
        self._changed.set()

    async def until(self, condition: Callable[[list[int]], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not condition(self.items):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


async def test_processor_recreates_a_deleted_stream_group(
    backend: RedisBackend, raw: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    processor = StreamProcessor(backend, stream, "g", "w", poll_interval=0.2)
    processor.set_callback(seen.handler)
    async with processor:
        await backend.publish(stream, {"i": 0})
        await seen.until(lambda items: items == [0])
        await raw.delete(backend.settings.key(stream))  # stream and group gone
        await backend.publish(stream, {"i": 1})  # a new stream, without the group
        await seen.until(lambda items: items == [0, 1])
    assert "disappeared" in caplog.text
    assert await raw.xinfo_groups(backend.settings.key(stream))


async def test_processor_survives_killed_connections(
    backend: RedisBackend, kill: Callable[..., Awaitable[int]], stream: str
) -> None:
    seen = Seen()
    processor = StreamProcessor(backend, stream, "g", "w", poll_interval=0.5)
    processor.set_callback(seen.handler)
    async with processor:
        await backend.publish(stream, {"i": 0})
        await seen.until(lambda items: items == [0])
        killed = 0
        for _ in range(3):  # the reader's and the command connections, as they come back
            killed += await kill()
            await asyncio.sleep(0.3)
        assert killed >= 3
        await backend.publish(stream, {"i": 1})
        await seen.until(lambda items: 1 in items)
    assert sorted(set(seen.items)) == [0, 1]
    info = await backend.group_info(stream, "g")
    assert info.pending == 0


async def test_processors_sharing_a_backend_start_without_disturbing_each_other(
    backend: RedisBackend, stream: str
) -> None:
    """Each processor has its own session: starting one re-reads only its own consumer's
    pending entries, and the others that share the backend keep reading."""
    from conveyor import StreamProcessor
    from conveyor.testing import wait_until

    seen: list[int] = []

    async def handle(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])

    await backend.publish_many(stream, [{"n": i} for i in range(300)])
    processors = []
    for index in range(3):
        processor = StreamProcessor(
            backend, stream, "g", f"w{index}", batch_count=10, concurrency=4
        )
        processor.set_callback(handle)
        await processor.start()
        processors.append(processor)
    try:
        await wait_until(lambda: len(seen) >= 300, timeout=20)
    finally:
        for processor in processors:
            await processor.stop()
    assert sorted(seen) == list(range(300))
    assert all(p.error is None for p in processors)
    assert (await backend.group_info(stream, "g")).pending == 0
