"""`SqliteSession`: one consumer of one group, as `SqliteBackend.open_consumer` opens it.

Redis semantics, kept in the file: a new session first re-reads its consumer's own pending
entries (left there by an earlier life of the consumer name), then takes entries the group
has not seen. A read that fails or is cancelled may have committed a delivery whose reply
never arrived, so the next read starts over from the own pending entries. Closing the
session releases nothing in the file (a consumer is just a name) and ends a blocked read.

A blocked read checks the database, then waits on the backend's `Waker` (see
`conveyor_sqlite.wakeup`): notified by inotify, it checks once more `SETTLE` later if the
first check found nothing; polling, it waits `POLL_MIN` after activity, doubling up to
``max_poll_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.base import BaseSession, check_sizes
from conveyor.codec import encode_json
from conveyor.errors import BackendClosedError, GroupNotFoundError
from conveyor.message import Message
from conveyor_sqlite.store import GroupGone, dump_headers, encoded_size
from conveyor_sqlite.wakeup import POLL_MIN, SETTLE

if TYPE_CHECKING:
    from conveyor_sqlite.backend import SqliteBackend

__all__ = ["NOTIFIED_RECHECK", "SqliteSession"]

log = logging.getLogger("conveyor.sqlite")

#: Longest a notified blocked read waits before checking by itself (a lost event costs
#: at most this).
NOTIFIED_RECHECK = 1.0

T = TypeVar("T")


def _seqs(messages: Sequence[Message]) -> list[int]:
    return [int(m.id) for m in messages if m.id.isdigit()]


class SqliteSession(BaseSession):
    """One consumer of one group in a conveyor database (see the module docstring)."""

    backend: SqliteBackend

    def __init__(
        self,
        backend: SqliteBackend,
        stream: str,
        group: str,
        consumer: str,
        stream_id: int,
        group_id: int,
    ) -> None:
        super().__init__(backend, stream, group, consumer)
        self._store = backend._store
        self._stream_id = stream_id
        self._group_id = group_id
        self._recovering: int | None = 0  # own pending entries re-read after this seq
        self._interval = POLL_MIN  # polling: the next pause of a blocked read

    async def _call(self, action: str, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        try:
            return await self.backend._worker.call(
                f"{action} {self.group!r} on {self.stream!r} in {self.backend.file}", fn, *args
            )
        except GroupGone:
            raise GroupNotFoundError(
                f"group {self.group!r} of stream {self.stream!r} no longer exists in"
                f" {self.backend.file}"
            ) from None

    async def _close(self) -> None:
        """Wake a blocked read (it returns at once); nothing is acknowledged."""
        self.backend._waker.changed()

    # -- reading -----------------------------------------------------------------------

    async def read(self, *, count: int, block: float | None) -> list[Message]:
        """Own pending entries first (for a new session, and after a failed or cancelled
        read), then new ones, waiting up to `block` seconds for one.

        Raises:
            GroupNotFoundError: the group or its stream was deleted.
            BrokerUnavailableError: the file stayed locked past busy_timeout; nothing
                delivered is lost (the next read re-reads this consumer's pending entries).
            BackendClosedError: the session or backend is (or was meanwhile) closed.
        """
        self._check_open()
        ok = False
        try:
            messages = await self._read_own(count) if self._recovering is not None else []
            if not messages:
                messages = await self._read_new(count, block)
            ok = True
        finally:
            if not ok:  # failed or cancelled: a delivery may have committed unseen
                self._recovering = 0
        if messages and self.closed:  # closed meanwhile: they stay pending for this consumer
            raise BackendClosedError(f"{self!r} was closed during a read")
        return messages

    async def _read_own(self, count: int) -> list[Message]:
        while self._recovering is not None:
            messages, last, dropped = await self._call(
                "re-reading own entries of",
                self._store.read_own,
                self.stream,
                self._stream_id,
                self._group_id,
                self.consumer,
                self._recovering,
                count,
                time.time(),
            )
            self.backend._dropped(self.stream, dropped)
            self._recovering = last
            if messages:
                return messages
        return []

    async def _read_new(self, count: int, block: float | None) -> list[Message]:
        waker = self.backend._waker
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block if block else None
        notified = False
        while True:
            generation = waker.generation
            messages = await self._call(
                "reading",
                self._store.read_new,
                self.stream,
                self._stream_id,
                self._group_id,
                self.consumer,
                count,
                time.time(),
            )
            if messages:
                self._interval = POLL_MIN
                return messages
            remaining = deadline - loop.time() if deadline is not None else 0.0
            if remaining <= 0 or self.closed:
                return []
            if self.backend.notified:
                pause = SETTLE if notified else NOTIFIED_RECHECK
            else:
                pause = self._interval
                self._interval = min(pause * 2, self.backend.settings.max_poll_interval)
            notified = await waker.wait(generation, min(remaining, pause))
            if notified:
                self._interval = POLL_MIN

    # -- settling messages -------------------------------------------------------------

    async def ack(self, messages: Sequence[Message]) -> None:
        """Delete the entries from the group's pending list, in one transaction."""
        self._check_open()
        seqs = _seqs(messages)
        if seqs:
            await self._call("acknowledging in", self._store.ack, self._group_id, seqs)

    async def _take(self, action: str, fn: Callable[..., Any], *args: Any) -> list[Message]:
        messages, dropped = await self._call(
            action, fn, self.stream, self._stream_id, self._group_id, self.consumer, *args
        )
        self.backend._dropped(self.stream, dropped)
        return list(messages)

    async def redeliver(self, messages: Sequence[Message]) -> list[Message]:
        """Deliver failed messages again to this consumer, delivery counts + 1."""
        self._check_open()
        seqs = _seqs(messages)
        if not seqs:
            return []
        return await self._take("redelivering in", self._store.take, seqs, time.time())

    async def claim_stale(self, *, min_idle: float, count: int) -> list[Message]:
        """Take up to `count` entries pending `min_idle` seconds or more, from any
        consumer of the group, delivery counts + 1."""
        self._check_open()
        return await self._take(
            "claiming in", self._store.claim_stale, min_idle, count, time.time()
        )

    async def heartbeat(self, messages: Sequence[Message]) -> None:
        """Reset the idle time of this consumer's entries; delivery counts unchanged."""
        self._check_open()
        await self._call(
            "heartbeat in",
            self._store.heartbeat,
            self._group_id,
            self.consumer,
            _seqs(messages),
            time.time(),
        )

    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str:
        """Append `record` (with `message`'s headers) to `dead_letter_stream` and
        acknowledge `message`, in one transaction."""
        self._check_open()
        payload = encode_json(record)
        headers = dump_headers(message.headers)
        limit = self.backend.settings.max_message_bytes
        size = encoded_size(payload, limit) + encoded_size(headers, limit)
        check_sizes(dead_letter_stream, [size], limit, "max_message_bytes")
        seq = int(message.id) if message.id.isdigit() else None
        dead, dropped = await self._call(
            "dead-lettering from",
            self._store.dead_letter,
            self._group_id,
            seq,
            dead_letter_stream,
            payload,
            headers,
            time.time(),
        )
        self.backend._dropped(dead_letter_stream, dropped)
        self.backend._waker.changed()
        return str(dead)
