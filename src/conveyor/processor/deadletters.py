"""`DeadLetters`: writes a message that cannot be handled to the dead-letter stream.

The record keeps the original payload and why it failed (the error's type and text, and
for a handler failure its traceback, bounded); the session writes it and
acknowledges the message without losing it between the two steps. An entry that could
not be decoded keeps a bounded excerpt instead (its size, SHA-256, the first
`EXCERPT_BYTES` in base64 and a short text preview), so that a huge binary entry from a
foreign producer always fits. If the broker refuses a record for anything but being
unreachable (too large, say), the minimal record (the same excerpt of the payload's JSON)
is written instead. A broker failure is retried through the broker-call policy (a
vanished group is recreated). Nothing raised here ever leaves a worker: if the write still
fails, the message stays pending, the failure is logged loudly and counted in
``stats.dead_letter_failures``, and the worker goes on with the next message.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from conveyor.codec import encode_json
from conveyor.errors import (
    BackendError,
    BrokerUnavailableError,
    ConveyorError,
    GroupNotFoundError,
    PayloadError,
)
from conveyor.logs import message_fields
from conveyor.message import Message
from conveyor.stats import ProcessorStats

from .calls import BrokerCalls
from .crew import Switch
from .ledger import Ledger

__all__ = ["EXCERPT_BYTES", "DeadLetters", "excerpt"]

log = logging.getLogger("conveyor.processor")

#: Attempts at one dead-letter write before the message is left pending.
WRITE_ATTEMPTS = 5
#: Bytes of an entry kept (base64) in a dead-letter record that cannot carry all of it.
EXCERPT_BYTES = 4096
#: Characters of the readable preview of such an entry.
PREVIEW_CHARS = 512


def _raw_bytes(raw: object) -> bytes:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    text = raw if isinstance(raw, str) else repr(raw)
    return text.encode("utf-8", "surrogateescape")


def excerpt(raw: object) -> dict[str, Any]:
    """Size, SHA-256, base64 of the first `EXCERPT_BYTES` and a text preview of `raw`
    (bytes, text, or anything else by its repr)."""
    data = _raw_bytes(raw)
    head = data[:EXCERPT_BYTES]
    return {
        "original_raw": head.decode("utf-8", "backslashreplace")[:PREVIEW_CHARS],
        "original_base64": base64.b64encode(head).decode("ascii"),
        "original_size": len(data),
        "original_sha256": hashlib.sha256(data).hexdigest(),
    }


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

    def log_fields(self, message: Message) -> dict[str, Any]:
        """The fields of a log record about `message` (see `conveyor.logs`)."""
        return message_fields(message, self.calls.group, self.calls.consumer)

    def record(
        self,
        message: Message,
        error_type: str,
        error: str,
        traceback: str | None = None,
        *,
        minimal: bool = False,
    ) -> dict[str, Any]:
        """The dead-letter record of `message` (`minimal`: without the payload itself)."""
        record: dict[str, Any] = {
            "original": None,
            "error_type": error_type,
            "error": error,
            "traceback": traceback,
            "delivery_count": message.delivery_count,
            "original_id": message.id,
            "stream": self.calls.stream,
            "group": self.calls.group,
            "consumer": self.calls.consumer,
            "dead_lettered_at": self.calls.options.clock.time(),
        }
        if message.decode_error is not None:
            record.update(excerpt(message.raw))
        elif minimal:
            record.update(excerpt(encode_json(message.data)), original_omitted=True)
        else:
            record["original"] = message.data
        return record

    async def write(
        self, message: Message, error_type: str, error: str, traceback: str | None = None
    ) -> None:
        """Dead-letter `message` (`traceback`: the handler's, as text); never raises (but
        `CancelledError`)."""
        minimal = False
        record = self.record(message, error_type, error, traceback)
        attempt = 0
        while True:
            session = self.calls.session
            try:
                await session.dead_letter(message, dead_letter_stream=self.stream, record=record)
                break
            except (BrokerUnavailableError, GroupNotFoundError) as exc:
                attempt += 1
                if attempt >= WRITE_ATTEMPTS or not self.running.on:
                    self._failed(message, exc)
                    return
                try:
                    await self.calls.recover(exc, attempt, session)
                except ConveyorError as closed:  # the backend was closed under us
                    self._failed(message, closed)
                    return
            except (PayloadError, BackendError) as exc:  # refused, e.g. too large
                if minimal:
                    self._failed(message, exc)
                    return
                log.warning(
                    "dead-letter record of %s %s refused (%s: %s); writing the minimal"
                    " record instead",
                    self.calls.stream,
                    message.id,
                    type(exc).__name__,
                    exc,
                )
                minimal = True
                record = self.record(message, error_type, error, traceback, minimal=True)
            except ConveyorError as exc:  # closed, or anything else: never out of a worker
                self._failed(message, exc)
                return
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
            extra=self.log_fields(message),
        )

    def _failed(self, message: Message, exc: BaseException) -> None:
        self.stats.dead_letter_failures += 1
        self.ledger.release(message)
        log.error(
            "COULD NOT DEAD-LETTER %s %s to %s (%s: %s): it stays pending and will be"
            " delivered again; the processor goes on with the next messages",
            self.calls.stream,
            message.id,
            self.stream,
            type(exc).__name__,
            exc,
            extra=self.log_fields(message),
        )
