"""What the event loop itself allows: the ceiling of any "c=64, 1 ms handler" figure.

64 tasks that do nothing but ``await asyncio.sleep(0.001)`` in a loop: each wake-up
costs the event loop a timer, a heap push and pop, a future and a task step, so on a
small machine they manage a few tens of thousands of wake-ups per second, whatever the
broker. conveyor's ``c=64 io=1ms`` rows run 64 such handlers plus the reading, decoding
and acking, so this row, measured in the same run, is the most they could reach.

With uvloop installed the same row is measured on a uvloop loop too (in a thread, with
the benchmark's own loop idle meanwhile).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Coroutine
from typing import Any

from benchmarks.common import BenchResult

__all__ = ["ASYNCIO_ROW", "UVLOOP_ROW", "bare_sleepers", "running_on_uvloop", "uvloop_installed"]

ASYNCIO_ROW = "bare asyncio, 64 tasks sleeping 1 ms"
UVLOOP_ROW = "bare uvloop, 64 tasks sleeping 1 ms"


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


async def _sleepers(n: int, tasks: int, seconds: float) -> float:
    done = 0

    async def worker() -> None:
        nonlocal done
        while done < n:
            await asyncio.sleep(seconds)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - started


def running_on_uvloop() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def bare_sleepers(
    label: str, n: int, *, tasks: int = 64, seconds: float = 0.001, in_uvloop: bool = False
) -> BenchResult:
    """`n` wake-ups of `tasks` tasks sleeping `seconds` each; the rate in wake-ups/s.

    On the running loop (the one conveyor's rows run on: the row is named after it), or
    with `in_uvloop` on a fresh uvloop loop in a thread (this loop waits meanwhile)."""
    if in_uvloop:
        uvloop: Any = importlib.import_module("uvloop")
        run: Callable[[Coroutine[Any, Any, float]], float] = uvloop.run
        elapsed = await asyncio.to_thread(run, _sleepers(n, tasks, seconds))
        loop = "uvloop"
    else:
        elapsed = await _sleepers(n, tasks, seconds)
        loop = "uvloop" if running_on_uvloop() else "asyncio"
    name = UVLOOP_ROW if loop == "uvloop" else ASYNCIO_ROW
    return BenchResult(
        name,
        label,
        n,
        elapsed,
        rate=n / elapsed,
        verified=True,
        notes={"tasks": tasks, "sleep_s": seconds, "loop": loop},
    )
