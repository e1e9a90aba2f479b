"""`FakeClock`: time that moves only when a test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools

from conveyor.errors import ConfigurationError

__all__ = ["FakeClock"]

#: Seconds a sleep may be due after `advance`'s target and still wake (float rounding).
_ROUNDING = 1e-9


class FakeClock:
    """A `conveyor.clock.Clock` whose time moves only through `advance()`.

    Pass it to `StreamProcessor(clock=...)` and to ``connect("memory://", clock=...)`` so
    that retry delays, claim idle times and heartbeats run instantly in tests.
    """

    def __init__(self, start: float = 0.0, epoch: float = 1_700_000_000.0) -> None:
        self._now = start
        self._epoch = epoch
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._epoch + self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    @property
    def next_wakeup(self) -> float | None:
        """Time of the earliest pending sleep, or None."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking every sleep that falls due, in order."""
        if seconds < 0:
            raise ConfigurationError(f"time only moves forward, got {seconds!r} seconds")
        target = self._now + seconds
        # a sleep due at the target, computed by another route, may round a hair later
        while self._sleepers and self._sleepers[0][0] <= target + _ROUNDING:
            due, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, due)
            if not future.done():
                future.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"
