"""`conveyor.gate.Gate`: how callers wait for a place (the coalescer's outstanding
publishes, the Redis pool's connections); no server needed."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.gate import Gate


async def hold(gate: Gate) -> None:
    if not gate.try_enter():
        await gate.enter()


def free_places(gate: Gate) -> int:
    """Take every place that is free now; how many there were."""
    taken = 0
    while gate.try_enter():
        taken += 1
    for _ in range(taken):
        gate.leave()
    return taken


async def test_at_most_size_holders_served_in_arrival_order() -> None:
    gate = Gate(2)
    inside = peak = 0
    order: list[int] = []

    async def call(n: int) -> None:
        nonlocal inside, peak
        await hold(gate)
        order.append(n)
        inside += 1
        peak = max(peak, inside)
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        finally:
            inside -= 1
            gate.leave()

    await asyncio.gather(*(call(n) for n in range(20)))
    assert peak == 2
    assert order == list(range(20))
    assert free_places(gate) == 2


async def test_a_newcomer_does_not_overtake_a_waiter() -> None:
    gate = Gate(1)
    await hold(gate)
    waiter = asyncio.ensure_future(hold(gate))
    await asyncio.sleep(0)
    gate.leave()  # handed to the waiter, not freed
    assert not gate.try_enter()
    await waiter
    gate.leave()
    assert free_places(gate) == 1


async def test_a_cancelled_waiter_gives_up_its_turn() -> None:
    gate = Gate(1)
    await hold(gate)
    first = asyncio.ensure_future(hold(gate))
    second = asyncio.ensure_future(hold(gate))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.leave()
    await asyncio.wait_for(second, 1)  # the place went past the cancelled waiter
    gate.leave()
    assert free_places(gate) == 1


async def test_a_place_handed_to_a_waiter_cancelled_meanwhile_is_passed_on() -> None:
    gate = Gate(1)
    await hold(gate)
    first = asyncio.ensure_future(hold(gate))
    second = asyncio.ensure_future(hold(gate))
    await asyncio.sleep(0)
    gate.leave()  # handed to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    gate.leave()
    assert free_places(gate) == 1


async def test_a_waiter_dropped_by_leave_before_its_cancellation_ran() -> None:
    gate = Gate(1)
    await hold(gate)
    first = asyncio.ensure_future(hold(gate))
    await asyncio.sleep(0)
    first.cancel()  # its future is cancelled now, the task runs later
    gate.leave()  # skips the cancelled waiter: the place is free again
    with pytest.raises(asyncio.CancelledError):
        await first
    assert free_places(gate) == 1


async def test_fail_waiters_fails_every_waiter_and_keeps_the_holders() -> None:
    gate = Gate(1)
    assert gate.try_enter()
    waiters = [asyncio.ensure_future(gate.enter()) for _ in range(3)]
    await asyncio.sleep(0)

    def fail(waiter: asyncio.Future[None]) -> None:
        waiter.set_exception(RuntimeError("closed"))

    gate.fail_waiters(fail)
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert [str(r) for r in results] == ["closed"] * 3
    assert gate.held == 1
    gate.leave()
    assert gate.held == 0
