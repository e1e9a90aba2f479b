"""The server's samples of each group: pending, lag and length over the last minutes.

Throughput is the rate at which the group's acknowledged count (``length - lag -
pending``) grew between the oldest and the newest sample of the window; the lag chart
draws the lag (or the pending count where the broker cannot tell lag).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.protocol import GroupInfo

__all__ = ["Sample", "Sampler"]

#: Records closer together than this (seconds) keep only the first.
_MIN_SPACING = 0.5


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at a group."""

    at: float
    pending: int
    lag: int | None
    length: int | None

    @property
    def acked(self) -> int | None:
        """Entries the group has acknowledged, where the broker tells length and lag."""
        if self.length is None or self.lag is None:
            return None
        return max(0, self.length - self.lag - self.pending)


class Sampler:
    """Samples per ``(stream, group)`` kept for `history` seconds."""

    def __init__(self, history: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.history = history
        self.clock = clock
        self._series: dict[tuple[str, str], deque[Sample]] = {}

    def record(self, info: GroupInfo) -> None:
        """Keep a sample of `info` (skipped when the last one is under 0.5 s old)."""
        now = self.clock()
        series = self._series.setdefault((info.stream, info.group), deque())
        if series and now - series[-1].at < _MIN_SPACING:
            return
        series.append(Sample(now, info.pending, info.lag, info.length))
        while series and now - series[0].at > self.history:
            series.popleft()

    def samples(self, stream: str, group: str) -> list[Sample]:
        return list(self._series.get((stream, group), ()))

    def rate(self, stream: str, group: str) -> float | None:
        """Acknowledged entries per second over the kept window (None: not known yet)."""
        known = [(s.at, s.acked) for s in self.samples(stream, group) if s.acked is not None]
        if len(known) < 2 or known[-1][0] <= known[0][0]:
            return None
        (t0, first), (t1, last) = known[0], known[-1]
        return max(0, last - first) / (t1 - t0)

    def chart(self, stream: str, group: str) -> tuple[str, list[tuple[float, float]]]:
        """``(label, points)``: the lag over time, or the pending count without lag."""
        samples = self.samples(stream, group)
        if samples and all(s.lag is not None for s in samples):
            return "lag", [(s.at, float(s.lag or 0)) for s in samples]
        return "pending", [(s.at, float(s.pending)) for s in samples]
