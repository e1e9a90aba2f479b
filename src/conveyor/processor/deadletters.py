"""`DeadLetters`: writes a message that cannot be handled to the dead-letter stream.

The record keeps the original payload and why it failed; the session writes it and
acknowledges the message without losing it between the two steps. A failure of the
broker is retried through the broker-call policy (a vanished group is recreated); if the
write still fails, the message stays pending, logged loudly, and the worker goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from conveyor.message import Message
from conveyor.stats import ProcessorStats

from .calls import FAILED_CALL, BrokerCalls
from .crew import Switch
from .ledger import Ledger

__all__ = ["DeadLetters"]

log = logging.getLogger("conveyor.processor")

#: Attempts at one dead-letter write before the message is left pending.
WRITE_ATTEMPTS = 5


class DeadLetters:
    """Dead-letter writes of one processor (see the module docstring)."""

    def __init__(
        self,
        calls: BrokerCalls,
        ledger: Ledger,
        stats: ProcessorStats,
        running: Switch,
    ) -> None:
        self.calls = calls
        self.ledger = ledger
        self.stats = stats
        self.running = running
        self.stream = calls.options.dead_letter_stream_of(calls.stream)

    def record(self, message: Message, error_type: str, error: str) -> dict[str, Any]:
        """The dead-letter record of `message`."""
        undecodable = message.decode_error is not None
        return {
            "original": None if undecodable else message.data,
            "original_raw": repr(message.raw) if undecodable else None,
            "error_type": error_type,
            "error": error,
            "delivery_count": message.delivery_count,
            "original_id": message.id,
            "stream": self.calls.stream,
            "group": self.calls.group,
            "consumer": self.calls.consumer,
            "dead_lettered_at": self.calls.options.clock.time(),
        }

    async def write(self, message: Message, error_type: str, error: str) -> None:
        """Dead-letter `message`; never raises a `BackendError`."""
        record = self.record(message, error_type, error)
        attempt = 0
        while True:
            session = self.calls.session
            try:
                await session.dead_letter(message, dead_letter_stream=self.stream, record=record)
                break
            except FAILED_CALL as exc:
                attempt += 1
                if attempt >= WRITE_ATTEMPTS or not self.running.on:
                    log.error(
                        "could not dead-letter %s %s (%s: %s); it stays pending",
                        self.calls.stream,
                        message.id,
                        type(exc).__name__,
                        exc,
                    )
                    self.ledger.release(message)
                    return
                await self.calls.recover(exc, attempt, session)
        self.stats.dead_lettered += 1
        self.ledger.release(message)
        log.error(
            "dead-lettered %s %s to %s after %d deliveries: %s: %s",
            self.calls.stream,
            message.id,
            self.stream,
            message.delivery_count,
            error_type,
            error,
        )
