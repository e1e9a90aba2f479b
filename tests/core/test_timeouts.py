"""`conveyor.timeouts.within`: a time limit that never loses the caller's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.timeouts import within


async def _slow(ended: list[str]) -> None:
    """Sleeps 10 s; notes its cancellation in `ended`."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        ended.append("cancelled")
        raise


async def test_returns_the_result_within_the_time() -> None:
    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    assert await within(answer(), 1.0) == 42
    assert await within(answer(), None) == 42


async def test_past_the_time_the_awaited_is_cancelled_and_timeout_raised() -> None:
    ended: list[str] = []

    with pytest.raises(asyncio.TimeoutError):
        await within(_slow(ended), 0.05)
    assert ended == ["cancelled"]  # ended before within() raised


@pytest.mark.parametrize("steps", range(4))
async def test_a_cancellation_as_the_awaited_finishes_is_never_lost(steps: int) -> None:
    """The caller is cancelled in the loop step where what it awaits finishes: it must get
    the cancellation (asyncio.wait_for on Python 3.10/3.11 returned the result instead)."""
    gate = asyncio.Event()
    after: list[str] = []

    async def waiting() -> str:
        await gate.wait()
        return "done"

    async def caller() -> None:
        await within(waiting(), 5.0)
        after.append("went on")  # must not happen once cancelled

    task = asyncio.ensure_future(caller())
    await asyncio.sleep(0.01)
    gate.set()
    for _ in range(steps):
        await asyncio.sleep(0)
    if not task.cancel():
        assert after == ["went on"]  # it had finished before the cancel: nothing to lose
        return
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == []


async def test_a_cancelled_caller_cancels_the_awaited() -> None:
    ended: list[str] = []

    task = asyncio.ensure_future(within(_slow(ended), 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == ["cancelled"]
