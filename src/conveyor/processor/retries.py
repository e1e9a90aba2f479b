"""Retry strategies for failed messages, chosen once from the backend's capabilities.

* `EngineRetries` (``redelivery="engine"``: Redis, memory, Kafka, seed storages): keep the
  message held, wait its backoff delay on the processor's clock, then ask the session to
  `redeliver` it (delivery count + 1) and queue it ahead of new messages.
* `BrokerRetries` (``redelivery="broker"``: JetStream): `nack` it with the delay and let
  go; the broker delivers it again through `read`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from typing import Protocol

from conveyor.clock import Clock
from conveyor.message import Message
from conveyor.protocol import Capabilities

from .calls import FAILED_CALL, BrokerCalls
from .ledger import Ledger

__all__ = ["BrokerRetries", "EngineRetries", "RetryStrategy", "retry_strategy"]

log = logging.getLogger("conveyor.processor")

#: Seconds within which a retry counts as due (clock arithmetic rounds).
_DUE_SLACK = 1e-6


class RetryStrategy(Protocol):
    """How a failed message comes back."""

    #: True when `run` is a loop the processor must keep running.
    has_loop: bool

    @property
    def next_due(self) -> float | None:
        """Clock time of the earliest scheduled retry, or None."""

    async def schedule(self, message: Message, delay: float) -> None:
        """Arrange for `message` to be delivered again after `delay` seconds."""

    async def run(self) -> None:
        """The strategy's own loop (returns at once when it needs none)."""

    def clear(self) -> None:
        """Forget scheduled retries (their messages stay pending on the broker)."""


class EngineRetries:
    """Timer-driven redelivery through the session (see the module docstring)."""

    has_loop = True

    def __init__(self, calls: BrokerCalls, ledger: Ledger, clock: Clock) -> None:
        self.calls = calls
        self.ledger = ledger
        self.clock = clock
        self._due: list[tuple[float, int, Message]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()

    @property
    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    async def schedule(self, message: Message, delay: float) -> None:
        heapq.heappush(self._due, (self.clock.monotonic() + delay, next(self._seq), message))
        self._changed.set()

    def clear(self) -> None:
        self._due.clear()

    async def run(self) -> None:
        clock = self.clock
        while True:
            self._changed.clear()
            if not self._due:
                await self._changed.wait()
                continue
            if self._due[0][0] - clock.monotonic() > _DUE_SLACK:
                await _sleep_until_unless(clock, self._due[0][0], self._changed)
                continue
            now = clock.monotonic() + _DUE_SLACK  # float rounding must not delay a retry
            due: list[Message] = []
            while self._due and self._due[0][0] <= now:
                due.append(heapq.heappop(self._due)[2])
            await self._redeliver(due, now)

    async def _redeliver(self, due: list[Message], now: float) -> None:
        session = self.calls.session
        try:
            fresh = await session.redeliver(due)
        except FAILED_CALL as exc:
            for message in due:
                heapq.heappush(self._due, (now + 1.0, next(self._seq), message))
            await self.calls.recover(exc, 1, session)
            return
        fresh_ids = {m.id for m in fresh}
        for message in due:
            self.ledger.release(message)
            if message.id not in fresh_ids:
                log.info("message %s is gone from %s; not retried", message.id, message.stream)
        self.ledger.admit(fresh, front=True)


class BrokerRetries:
    """Redelivery by the broker after a `nack(delay)` (see the module docstring)."""

    has_loop = False
    next_due: float | None = None

    def __init__(self, calls: BrokerCalls, ledger: Ledger) -> None:
        self.calls = calls
        self.ledger = ledger

    async def schedule(self, message: Message, delay: float) -> None:
        try:
            await self.calls.session.nack(message, delay=delay)
        except FAILED_CALL as exc:
            log.warning(
                "nack of %s failed (%s); the broker redelivers it after its ack wait",
                message.id,
                exc,
            )
        self.ledger.release(message)

    async def run(self) -> None:
        return None

    def clear(self) -> None:
        return None


def retry_strategy(
    capabilities: Capabilities, calls: BrokerCalls, ledger: Ledger, clock: Clock
) -> RetryStrategy:
    """The strategy the backend's capabilities call for."""
    if capabilities.redelivery == "broker":
        return BrokerRetries(calls, ledger)
    return EngineRetries(calls, ledger, clock)


async def _sleep_until(clock: Clock, when: float) -> None:
    # the wait is measured when the sleep begins (a loop turn after it was asked for; the
    # clock may have moved meanwhile), so it ends at `when` and never one delay later
    await clock.sleep(max(0.0, when - clock.monotonic()))


async def _sleep_until_unless(clock: Clock, when: float, event: asyncio.Event) -> None:
    """Sleep on `clock` until its time `when`, or less if `event` is set meanwhile."""
    sleeper = asyncio.ensure_future(_sleep_until(clock, when))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, waiter):
            task.cancel()
        await asyncio.wait({sleeper, waiter})
