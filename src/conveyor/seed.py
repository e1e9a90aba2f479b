"""Drive a seed-style storage (only the three `StreamStorageProtocol` methods) as a backend.

What a three-method storage cannot do is emulated or declared:
* reads do not block: the engine sleeps `poll_interval` after an empty read;
* a failed message is redelivered by the engine itself with ``delivery_count + 1``;
* nobody claims messages of a stopped consumer (the storage offers no way to);
* dead letters go to the storage's ``publish(stream, data)`` if it has one; otherwise the
  record is logged at ERROR level and the message stays unacknowledged in the broker, so
  nothing is lost;
* there are no headers: a storage without them reads every message with ``{}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from conveyor.base import BaseBackend, BaseSession, ConsumerOptions
from conveyor.errors import ConfigurationError
from conveyor.message import Message
from conveyor.protocol import Capabilities, GroupInfo, StreamStorageProtocol

__all__ = ["SEED_CAPABILITIES", "SeedSession", "SeedStorageAdapter"]

log = logging.getLogger("conveyor.seed")

SEED_CAPABILITIES = Capabilities(
    name="seed storage", redelivery="engine", claim="none", blocking_read=False
)


class SeedStorageAdapter(BaseBackend):
    """The backend interface over any object with the seed's three methods.

    The caller owns the storage: closing the adapter does not close it.
    """

    capabilities = SEED_CAPABILITIES

    def __init__(self, storage: StreamStorageProtocol) -> None:
        super().__init__()
        self.storage = storage

    def __repr__(self) -> str:
        return f"SeedStorageAdapter({self.storage!r})"

    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> SeedSession:
        if options.start != "earliest":
            raise ConfigurationError(
                f"{self.storage!r} only implements the seed protocol, whose groups start at"
                f" the beginning; start={options.start!r} needs a full conveyor backend"
            )
        await self.storage.create_group(stream, group)
        return SeedSession(self, stream, group, consumer)

    async def create_group(self, stream_name: str, group_name: str) -> None:
        await self.storage.create_group(stream_name, group_name)

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        return await self.storage.read_events(stream_name, group_name, consumer_name, count)

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        await self.storage.ack_event(stream_name, group_name, message_id)

    async def _publish_many(
        self, stream: str, items: list[dict[str, Any]], headers: list[dict[str, str]] | None
    ) -> list[str]:
        publish = getattr(self.storage, "publish", None)
        if publish is None:
            raise ConfigurationError(f"{self.storage!r} cannot publish (it has no publish())")
        if headers:
            raise ConfigurationError(f"{self.storage!r} cannot carry headers")
        return [str(await publish(stream, item)) for item in items]

    async def _group_info(self, stream: str, group: str) -> GroupInfo:
        return GroupInfo(stream=stream, group=group, pending=0, lag=None)

    async def _peek(self, stream: str, count: int) -> list[Message]:
        return []


class SeedSession(BaseSession):
    """A consumer over the seed methods: polls, acks one id per call, no claims."""

    backend: SeedStorageAdapter

    async def read(self, *, count: int, block: float | None) -> list[Message]:
        self._check_open()
        rows = await self.backend.storage.read_events(self.stream, self.group, self.consumer, count)
        return [Message(id=str(mid), stream=self.stream, data=data) for mid, data in rows]

    async def ack(self, messages: Sequence[Message]) -> None:
        self._check_open()
        storage, stream, group = self.backend.storage, self.stream, self.group
        if len(messages) == 1:
            await storage.ack_event(stream, group, messages[0].id)
        elif messages:
            await asyncio.gather(*(storage.ack_event(stream, group, m.id) for m in messages))

    async def redeliver(self, messages: Sequence[Message]) -> list[Message]:
        self._check_open()
        return [dataclasses.replace(m, delivery_count=m.delivery_count + 1) for m in messages]

    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str:
        self._check_open()
        storage = self.backend.storage
        publish = getattr(storage, "publish", None)
        if publish is None:
            log.error(
                "cannot dead-letter message %s of %r: %r has no publish(); it stays"
                " unacknowledged in the broker. record=%r",
                message.id,
                self.stream,
                storage,
                record,
            )
            return ""
        dead_id = str(await publish(dead_letter_stream, record))
        await storage.ack_event(self.stream, self.group, message.id)
        return dead_id
