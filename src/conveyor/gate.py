"""`Gate`: at most `size` holders at a time, the others waiting first come first served.

Used where asyncio's own `Semaphore` is not enough: a leaving holder hands its place to
the longest waiter directly (nobody arriving later overtakes a waiter), a waiter
cancelled just as it was handed a place passes it on, and the owner can fail every waiter
at once when it closes. The publish coalescer (`conveyor.coalesce`) bounds outstanding
publishes with one; the Redis backend bounds commands per connection pool.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["Gate"]


class Gate:
    """At most `size` holders at a time (see the module docstring).

    ``if not gate.try_enter(): await gate.enter()``, then ``gate.leave()`` in a
    ``finally``.
    """

    __slots__ = ("_free", "_waiting", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> int:
        """Places taken now."""
        return self.size - self._free

    def try_enter(self) -> bool:
        """Take a place if one is free and nobody waits; never suspends."""
        if self._free and not self._waiting:
            self._free -= 1
            return True
        return False

    async def enter(self) -> None:
        """Wait for a place (at once when one is free and nobody waits)."""
        if self.try_enter():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a place just as we were cancelled: pass it on
            elif waiter in self._waiting:  # (a `leave` may have dropped it already)
                self._waiting.remove(waiter)
            raise

    def leave(self) -> None:
        """Give the place back: to the longest waiter, else to the free count."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def fail_waiters(self, fail: Callable[[asyncio.Future[None]], None]) -> None:
        """Hand every waiting future to `fail` (which sets an exception on it)."""
        while self._waiting:
            fail(self._waiting.popleft())
