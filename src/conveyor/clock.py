"""Time, injectable: the engine and the memory backend read it through a `Clock`.

Production code uses `SystemClock`; tests pass `conveyor.testing.FakeClock` to move time
forward instantly instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of time and of sleeps."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""


class SystemClock:
    """The real clock: `time.monotonic`, `time.time`, `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"
