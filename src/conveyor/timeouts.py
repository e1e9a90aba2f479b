"""`within`: await something for at most a number of seconds, never losing a cancellation.

``asyncio.wait_for`` on Python 3.10 and 3.11 returns the awaited result instead of raising
when the caller is cancelled in the same loop step as the awaited thing finishes
(python/cpython#86296; 3.12's rewrite fixed it): the cancelled task goes on. A processor's
reader or a publish loop then ignored a stop or a Ctrl-C. `within` waits with
``asyncio.wait``, which never absorbs the caller's cancellation (ten lines rather than a
dependency on ``async-timeout`` for the older Pythons).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """Await `awaitable`; past `seconds` (None: no limit) cancel it, wait until it has
    ended and raise ``asyncio.TimeoutError``. Cancelled meanwhile: cancel it, wait until it
    has ended, and raise the cancellation."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller gets
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is None:
            return task.result()  # it finished as it was cancelled: keep the result
        raise asyncio.TimeoutError
    return task.result()
