"""A faithful small re-implementation of the old Redis-only module's consumer loop.

What it did (docs/migrating.md): ``XREADGROUP COUNT 10`` without blocking,
values decoded with the ``json:``-prefix field codec, the handler called for one message
at a time, one awaited ``XACK`` per message, ``poll_interval`` slept after an empty read,
``"NOGROUP"`` matched in exception text, a fixed 5 s sleep after any other error. Its flaws
are reproduced on purpose: this is the baseline conveyor replaces.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.common import BenchResult, Tally, result
from benchmarks.raw_redis import group_settled, handler
from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["OldStreamConsumer", "OldStreamProcessor", "consume"]

log = logging.getLogger("benchmarks.old")

JSON_PREFIX = "json:"


class OldStreamConsumer:
    """The old storage class: the three seed methods over a decoding redis-py client."""

    def __init__(self, redis_client: Redis) -> None:
        self.redis = redis_client

    async def create_group(self, stream_name: str, group_name: str) -> None:
        try:
            await self.redis.xgroup_create(stream_name, group_name, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                log.error("could not create group: %s", exc)  # and gave up silently

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        reply: Any = await self.redis.xreadgroup(
            group_name, consumer_name, {stream_name: ">"}, count=count
        )
        events: list[tuple[str, dict[str, Any]]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                data: dict[str, Any] = {}
                for key, value in fields.items():
                    if value.startswith(JSON_PREFIX):
                        data[key] = json.loads(value[len(JSON_PREFIX) :])
                    else:
                        data[key] = value
                events.append((entry_id, data))
        return events

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        await self.redis.xack(stream_name, group_name, message_id)


class OldStreamProcessor:
    """The old processing loop: read 10, handle and ack each in turn, sleep when idle."""

    def __init__(
        self,
        storage: OldStreamConsumer,
        stream_name: str,
        consumer_group_name: str,
        consumer_name: str,
        batch_count: int = 10,
        poll_interval: float = 1.0,
    ) -> None:
        self.storage = storage
        self.stream_name = stream_name
        self.group = consumer_group_name
        self.consumer = consumer_name
        self.batch_count = batch_count
        self.poll_interval = poll_interval
        self.callback: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.is_running = False
        self._task: asyncio.Task[None] | None = None

    def set_callback(self, callback: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.callback = callback

    async def start(self) -> None:
        await self.storage.create_group(self.stream_name, self.group)
        self.is_running = True
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.is_running = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        assert self.callback is not None
        while self.is_running:
            try:
                events = await self.storage.read_events(
                    self.stream_name, self.group, self.consumer, self.batch_count
                )
                if not events:
                    await asyncio.sleep(self.poll_interval)
                    continue
                for event_id, data in events:
                    await self.callback(data)
                    await self.storage.ack_event(self.stream_name, self.group, event_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the old module's catch-all, reproduced
                if "NOGROUP" in str(exc):
                    await self.storage.create_group(self.stream_name, self.group)
                else:
                    log.error("error processing stream: %s", exc)
                    await asyncio.sleep(5)


class _CountingStorage(OldStreamConsumer):
    """Counts confirmed acks, so the clock stops at the last XACK's reply."""

    def __init__(self, redis_client: Redis, acked: Tally) -> None:
        super().__init__(redis_client)
        self.acked = acked

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        await super().ack_event(stream_name, group_name, message_id)
        self.acked.hit()


async def consume(client: Redis, key: str, n: int) -> BenchResult:
    """Drain a `json:`-codec backlog of `n` entries at `key` with the old loop.

    `client` must decode responses (the old module's clients did).
    """
    handled = Tally(n)
    acked = Tally(n)

    async def callback(data: dict[str, Any]) -> None:
        handled.hit()
        await handler(data)

    processor = OldStreamProcessor(_CountingStorage(client, acked), key, "old", "c")
    processor.set_callback(callback)
    await processor.start()
    try:
        await asyncio.wait_for(acked.done.wait(), 600)
    finally:
        await processor.stop()
    seconds = acked.last - handled.first
    ok = await group_settled(client, key, "old")
    return result("old module loop (COUNT 10, XACK each)", "redis", handled, seconds, ok)
