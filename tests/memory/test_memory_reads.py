"""A blocked read on memory:// and its cancellation."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import conveyor
from conveyor_memory.backend import reset


@pytest.mark.parametrize("steps", range(3))
async def test_a_read_cancelled_as_a_publish_wakes_it_is_cancelled(steps: int) -> None:
    """A blocked read cancelled (a processor stopping) in the moment a publish wakes it
    raises CancelledError. It used ``asyncio.wait_for``, which on Python 3.11 returns
    instead of raising when the waiter was resolved just before, and the reader went on
    until the processor cancelled it again a second later."""
    name = f"reads-{uuid.uuid4().hex[:8]}"
    backend = await conveyor.connect(f"memory://{name}")
    try:
        session = await backend.open_consumer("s", "g", "c")
        reading = asyncio.ensure_future(session.read(count=10, block=5.0))
        await asyncio.sleep(0.05)  # blocked on the empty stream
        await backend.publish("s", {"n": 1})  # wakes it
        for _ in range(steps):
            await asyncio.sleep(0)
        if not reading.cancel():  # it had returned the message already
            assert steps > 0
            assert [m.data for m in await reading] == [{"n": 1}]
            return
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(reading, 5)
    finally:
        await backend.aclose()
        reset(name)
