"""`Ledger`: the messages a processor holds, and the inbox of those waiting for a worker.

A message is held from the moment it is read (or claimed, or redelivered) until it is
acknowledged, dead-lettered, handed back to the broker, or found gone; holding it makes
the keeper heartbeat it and keeps a second delivery of the same id (an own-pending re-read
after a reconnect) from running twice. The inbox is bounded: the reader waits for `room`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from conveyor.message import Message

__all__ = ["Ledger"]


class Ledger:
    """Held messages and the inbox (see the module docstring).

    Args:
        prefetch: Most messages buffered in the inbox.
        batch: Reader batch size: room opens again once a batch fits.
    """

    def __init__(self, prefetch: int, batch: int) -> None:
        self.prefetch = prefetch
        self.refill_at = max(0, prefetch - batch)
        self.held: dict[str, Message] = {}
        self.inbox: deque[Message] = deque()
        #: Set while the inbox has messages (or to wake idle workers at stop).
        self.ready = asyncio.Event()
        #: Set while the reader may fetch more.
        self.room = asyncio.Event()
        self.room.set()

    def admit(self, messages: Sequence[Message], *, front: bool = False) -> None:
        """Hold `messages` not held yet and queue them (at the front: retries first)."""
        fresh = []
        held = self.held
        for message in messages:
            if message.id in held:
                continue  # already here (e.g. own-pending re-read after a reconnect)
            held[message.id] = message
            fresh.append(message)
        if not fresh:
            return
        if front:
            self.inbox.extendleft(reversed(fresh))
        else:
            self.inbox.extend(fresh)
        if len(self.inbox) >= self.prefetch:
            self.room.clear()
        self.ready.set()

    def release(self, message: Message) -> None:
        """Stop holding `message` (acked, dead-lettered, handed back or gone)."""
        self.held.pop(message.id, None)

    def room_for(self, batch: int) -> int:
        """How many messages the reader may fetch now (at least 1)."""
        return max(1, min(batch, self.prefetch - len(self.inbox)))

    def clear(self) -> None:
        self.inbox.clear()
        self.held.clear()
        self.room.set()
