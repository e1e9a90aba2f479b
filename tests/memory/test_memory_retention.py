"""Retention on memory://: ``maxlen`` and ``max_age`` (by the backend's clock)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

import conveyor
from conveyor.errors import ConfigurationError
from conveyor.testing import FakeClock
from conveyor_memory import MemoryBackend
from conveyor_memory.backend import reset


@pytest.fixture
async def aged(clock: FakeClock) -> AsyncIterator[MemoryBackend]:
    name = f"retention-{uuid.uuid4().hex[:8]}"
    backend = await conveyor.connect(f"memory://{name}?max_age=60", clock=clock)
    assert isinstance(backend, MemoryBackend)
    yield backend
    await backend.aclose()
    reset(name)


async def test_max_age_trims_on_the_next_publish(aged: MemoryBackend, clock: FakeClock) -> None:
    await aged.publish_many("s", [{"n": 1}, {"n": 2}])
    await clock.advance(30)
    await aged.publish("s", {"n": 3})
    assert [m.data["n"] for m in await aged.peek("s", count=10)] == [1, 2, 3]
    await clock.advance(31)  # 1 and 2 are 61 s old, 3 is 31 s old
    assert len(await aged.peek("s", count=10)) == 3  # nothing trims between publishes
    await aged.publish("s", {"n": 4})
    assert [m.data["n"] for m in await aged.peek("s", count=10)] == [3, 4]


async def test_trimmed_pending_entries_are_not_delivered(
    aged: MemoryBackend, clock: FakeClock
) -> None:
    async with aged.open_consumer("s", "g", "c") as session:
        await aged.publish("s", {"n": 1})
        assert len(await session.read(count=10, block=None)) == 1  # now pending
        await clock.advance(61)
        await aged.publish("s", {"n": 2})
        fresh = await aged.open_consumer("s", "g", "c")  # re-reads its pending first
        got = await fresh.read(count=10, block=None)
        assert [m.data["n"] for m in got] == [2]
        assert (await aged.group_info("s", "g")).length == 1


async def test_maxlen_and_max_age_together(clock: FakeClock) -> None:
    name = f"retention-{uuid.uuid4().hex[:8]}"
    async with conveyor.connect(f"memory://{name}?maxlen=2&max_age=10", clock=clock) as backend:
        await backend.publish_many("s", [{"n": i} for i in range(5)])
        assert [m.data["n"] for m in await backend.peek("s", count=10)] == [3, 4]
        await clock.advance(11)
        await backend.publish("s", {"n": 5})
        assert [m.data["n"] for m in await backend.peek("s", count=10)] == [5]
    reset(name)


@pytest.mark.parametrize("option", ["max_age=0", "max_age=-1"])
async def test_bad_max_age_is_refused(option: str) -> None:
    with pytest.raises(ConfigurationError, match="must be > 0"):
        await conveyor.connect(f"memory://x?{option}")
