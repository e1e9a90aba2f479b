"""A hand-written storage with only the seed's three methods drives StreamProcessor."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor import StreamProcessor, StreamStorageProtocol
from conveyor.testing import wait_until


class ListStorage:
    """The seed contract over a list: no blocking, no claim, no publish."""

    def __init__(self, payloads: list[dict[str, Any]]) -> None:
        self.entries = [(str(i), p) for i, p in enumerate(payloads)]
        self.cursor: dict[str, int] = {}
        self.acked: list[str] = []
        self.groups: list[tuple[str, str]] = []
        self.reads = 0

    async def create_group(self, stream_name: str, group_name: str) -> None:
        if (stream_name, group_name) not in self.groups:
            self.groups.append((stream_name, group_name))
        self.cursor.setdefault(group_name, 0)

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        self.reads += 1
        start = self.cursor[group_name]
        batch = self.entries[start : start + count]
        self.cursor[group_name] = start + len(batch)
        return batch

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        self.acked.append(message_id)


async def test_three_method_storage_is_driven_with_retries_and_batches() -> None:
    storage = ListStorage([{"n": i} for i in range(30)])
    assert isinstance(storage, StreamStorageProtocol)
    attempts: dict[int, int] = {}
    done = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        n = payload["n"]
        attempts[n] = attempts.get(n, 0) + 1
        if n == 5 and attempts[n] == 1:
            raise RuntimeError("once")
        if (len(storage.acked) >= 29 and n != 5) or (len(attempts) == 30 and attempts[5] == 2):
            done.set()

    processor = StreamProcessor(
        storage, "events:bot", "bots", "bot-1", batch_count=10, poll_interval=0.01, retry_delay=0.01
    )
    processor.set_callback(handle)
    async with processor:
        await asyncio.wait_for(done.wait(), 5)
        await wait_until(lambda: len(storage.acked) == 30)
    assert storage.groups == [("events:bot", "bots")]
    assert sorted(storage.acked, key=int) == [str(i) for i in range(30)]
    assert attempts[5] == 2
    assert all(attempts[n] == 1 for n in range(30) if n != 5)
    assert processor.stats.retried == 1


async def test_idle_seed_storage_sleeps_poll_interval_between_reads() -> None:
    storage = ListStorage([])

    async def handle(payload: dict[str, Any]) -> None:
        return None

    processor = StreamProcessor(storage, "s", "g", "c", poll_interval=0.05)
    processor.set_callback(handle)
    async with processor:
        await asyncio.sleep(0.3)
    # about 0.3 / 0.05 = 6 reads; a hot loop would make thousands
    assert 2 <= storage.reads <= 12
