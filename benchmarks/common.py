"""What every benchmark module shares: payloads, the handled-message tally, settings.

Timing rule for every consume variant: the clock starts when the first message reaches
the handler and stops when the last acknowledgement has been confirmed (the raw loops ack
inline; FastStream's acks are waited for; conveyor's processor is stopped, which flushes
its acks). Group joins and subscriber start-up are outside the clock: on Tansu a new
consumer group takes seconds to join, which would otherwise dominate a 50,000-message run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from conveyor.bench import BenchResult, make_payload

__all__ = [
    "BATCH",
    "BenchResult",
    "Config",
    "Tally",
    "body",
    "make_payload",
    "result",
    "settle",
    "unique",
]

#: Messages per read (COUNT / fetch / getmany max_records) for every loop.
BATCH = 100

_dumps = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True)
class Config:
    """One run's settings, shared by every module."""

    messages: int = 50_000
    #: N for the variants that run at a few thousand msg/s or less (FastStream's
    #: per-message handler, the old loop, one-by-one publishing): same rates, less waiting.
    slow_messages: int = 10_000
    publish_one_by_one: int = 5_000
    rounds: int = 3
    latency_seconds: float = 10.0
    rss_messages: int = 1_000_000
    run_id: str = ""
    #: Run only variants whose names contain one of these (empty: all).
    only: tuple[str, ...] = ()

    def wanted(self, name: str) -> bool:
        return not self.only or any(part in name for part in self.only)


def unique(prefix: str) -> str:
    """A fresh name for a stream or group of one measurement."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def body(index: int) -> bytes:
    """The JSON bytes of `make_payload(index)`, as a raw client would publish them."""
    return _dumps(make_payload(index)).encode()


class Tally:
    """Counts handled messages; remembers when the first arrived; fires at `n`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.done = asyncio.Event()

    def hit(self, k: int = 1) -> None:
        if not self.count:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()
        self.count += k
        if self.count >= self.n and not self.done.is_set():
            self.last = time.perf_counter()
            self.cpu_last = time.process_time()
            self.done.set()

    def cpu(self) -> tuple[float, float]:
        """This process's CPU time per message (µs) and its share of the wall clock,
        from the first message to the last."""
        cpu = self.cpu_last - self.cpu_first
        wall = self.last - self.first
        return cpu / max(1, self.count) * 1e6, cpu / wall if wall > 0 else 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.first


async def settle(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, every: float = 0.002
) -> bool:
    """Poll `check` until it is true (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)


def result(
    name: str, backend: str, tally: Tally, seconds: float, verified: bool, **notes: Any
) -> BenchResult:
    """A consume result: rate over `seconds`, verified = all handled and none pending."""
    ok = verified and tally.count == tally.n
    notes["handled"] = tally.count
    if tally.cpu_last:
        per_message, share = tally.cpu()
        notes["cpu_us_per_msg"] = round(per_message, 1)
        notes["cpu_share"] = round(share, 2)
    return BenchResult(
        name, backend, tally.n, seconds, rate=tally.n / seconds, verified=ok, notes=notes
    )
