"""`Acker`: acknowledges finished messages in batches, off the workers' path.

Workers append finished messages to `pending` (and set `ready` once `batch_count` wait);
the acker sends a batch then, or when a worker finds the inbox empty (so a quiet stream is
never left unacknowledged). A failed ack keeps its batch and retries after the broker-call
backoff; acknowledging twice is harmless on every backend.
"""

from __future__ import annotations

import asyncio
import logging

from conveyor.errors import BackendClosedError, BackendError
from conveyor.message import Message
from conveyor.stats import ProcessorStats
from conveyor.timeouts import within

from .calls import FAILED_CALL, BrokerCalls
from .ledger import Ledger

__all__ = ["Acker"]

log = logging.getLogger("conveyor.processor")


class Acker:
    """Batches acknowledgements (see the module docstring)."""

    def __init__(self, calls: BrokerCalls, ledger: Ledger, stats: ProcessorStats) -> None:
        self.calls = calls
        self.ledger = ledger
        self.stats = stats
        self.batch_count = calls.options.batch_count
        self.pending: list[Message] = []
        #: Set to make the acker send what is pending.
        self.ready = asyncio.Event()
        #: Set while no ack call is in flight and nothing waits.
        self.idle = asyncio.Event()
        self.idle.set()
        #: True while `run` is inside an ack call.
        self.sending = False
        self._closing = False

    @property
    def busy(self) -> bool:
        """True while finished messages wait for (or are in) an ack call."""
        return bool(self.pending) or not self.idle.is_set()

    async def _send(self) -> None:
        """Ack everything pending in one call; on failure keep it for the next call.

        `pending` stays the same list object (workers append to it directly)."""
        pending = self.pending
        batch = pending.copy()
        pending.clear()
        session = self.calls.session
        try:
            await session.ack(batch)
        except BaseException:
            pending[:0] = batch
            raise
        self.stats.acked += len(batch)
        release = self.ledger.release
        for message in batch:
            release(message)

    def close(self) -> None:
        """Make `run` return once its ack call in flight (if any) has ended; what is
        still pending is left to `final_flush`."""
        self._closing = True
        self.ready.set()

    def clear(self) -> None:
        """Forget what is pending and re-arm `run` (the processor stopped; it may start
        again)."""
        self.pending.clear()
        self._closing = False

    async def run(self) -> None:
        attempt = 0
        while not self._closing:
            if not self.pending:
                self.idle.set()
                self.ready.clear()
                await self.ready.wait()
                continue
            self.idle.clear()
            session = self.calls.session
            self.sending = True
            try:
                await self._send()
            except FAILED_CALL as exc:
                failure: BackendError | BackendClosedError | None = exc
            else:
                failure = None
            finally:
                self.sending = False
            if failure is not None:
                if self._closing:  # no backoff once closing: final_flush retries in budget
                    return
                attempt += 1
                await self.calls.recover(failure, attempt, session)
                continue
            if attempt:
                attempt = 0
                self.calls.ok()

    async def final_flush(self, timeout: float) -> None:
        """Ack what finished, trying until `timeout` real seconds have passed (shutdown
        is bounded in real time, whatever clock the processor runs on)."""
        if not self.pending:
            return
        if timeout <= 0:  # the budget went to the ack in flight
            self._left_pending()
            return
        try:
            await within(self._flush_until_done(), timeout)
        except Exception:  # noqa: BLE001 - timed out, or a closed backend: the rest stays pending
            pass
        self._left_pending()

    def _left_pending(self) -> None:
        if self.pending:
            log.warning(
                "%d finished message(s) could not be acked before shutdown; they will"
                " be delivered again",
                len(self.pending),
            )

    async def _flush_until_done(self) -> None:
        attempt = 0
        while self.pending:
            session = self.calls.session
            try:
                await self._send()
            except FAILED_CALL as exc:
                attempt += 1
                await self.calls.recover(exc, attempt, session)
