"""`Reader`: keeps one read in flight while handlers run, up to the inbox's room."""

from __future__ import annotations

import asyncio

from conveyor.protocol import Capabilities

from .calls import FAILED_CALL, BrokerCalls
from .crew import Switch
from .ledger import Ledger

__all__ = ["Reader"]


class Reader:
    """Fetches batches into the ledger's inbox.

    A backend closed under a running processor raises `BackendClosedError` out of `run`:
    the processor cannot go on, so its supervisor stops it and `wait()` reports why.
    """

    def __init__(
        self,
        calls: BrokerCalls,
        ledger: Ledger,
        capabilities: Capabilities,
        running: Switch,
    ) -> None:
        self.calls = calls
        self.ledger = ledger
        self.blocking = capabilities.blocking_read
        self.running = running

    async def run(self) -> None:
        options = self.calls.options
        ledger = self.ledger
        block = options.poll_interval if self.blocking else None
        batch = options.batch_count
        attempt = 0
        while self.running.on:
            if not ledger.room.is_set():
                await ledger.room.wait()
            session = self.calls.session
            try:
                messages = await session.read(count=ledger.room_for(batch), block=block)
            except FAILED_CALL as exc:
                attempt += 1
                await self.calls.recover(exc, attempt, session)
                continue
            if attempt:
                attempt = 0
                self.calls.ok()
            if messages:
                ledger.admit(messages)
            elif not self.blocking:
                # I/O cadence, not engine time: a fake clock must not stop the polling
                await asyncio.sleep(options.poll_interval)
