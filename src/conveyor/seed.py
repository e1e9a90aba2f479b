"""Drive a seed-style storage (only the three `StreamStorageProtocol` methods) as a backend.

What a three-method storage cannot do is emulated or declared:
* reads do not block: the engine sleeps `poll_interval` after an empty read;
* a failed message is redelivered by the engine itself with ``delivery_count + 1``;
* nobody claims messages of a stopped consumer (the storage offers no way to);
* dead letters go to the storage's ``publish(stream, data)`` if it has one; otherwise the
  record is logged at ERROR level and the message stays unacknowledged in the broker, so
  nothing is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.message import Message
from conveyor.protocol import Capabilities, GroupInfo, StartPosition, StreamStorageProtocol

__all__ = ["SEED_CAPABILITIES", "SeedStorageAdapter"]

log = logging.getLogger("conveyor.seed")

SEED_CAPABILITIES = Capabilities(
    name="seed storage",
    redelivery="engine",
    claim="none",
    blocking_read=False,
)


class SeedStorageAdapter:
    """The backend interface over any object with the seed's three methods."""

    capabilities = SEED_CAPABILITIES

    def __init__(self, storage: StreamStorageProtocol) -> None:
        self.storage = storage

    def __repr__(self) -> str:
        return f"SeedStorageAdapter({self.storage!r})"

    async def __aenter__(self) -> SeedStorageAdapter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """The caller owns the storage: nothing to close."""

    async def create_group(self, stream_name: str, group_name: str) -> None:
        await self.storage.create_group(stream_name, group_name)

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        return await self.storage.read_events(stream_name, group_name, consumer_name, count)

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        await self.storage.ack_event(stream_name, group_name, message_id)

    async def ensure_group(
        self,
        stream: str,
        group: str,
        *,
        start: StartPosition = "earliest",
        claim_idle: float | None = None,
        max_deliveries: int | None = None,
        consumer: str | None = None,
    ) -> None:
        if start != "earliest":
            raise ConfigurationError(
                f"{self.storage!r} only implements the seed protocol, whose groups start at"
                f" the beginning; start={start!r} needs a full conveyor backend"
            )
        await self.storage.create_group(stream, group)

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None
    ) -> list[Message]:
        rows = await self.storage.read_events(stream, group, consumer, count)
        return [Message(id=str(mid), stream=stream, data=data) for mid, data in rows]

    async def ack(self, stream: str, group: str, messages: Sequence[Message]) -> None:
        if len(messages) == 1:
            await self.storage.ack_event(stream, group, messages[0].id)
        elif messages:
            await asyncio.gather(*(self.storage.ack_event(stream, group, m.id) for m in messages))

    async def redeliver(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> list[Message]:
        return [dataclasses.replace(m, delivery_count=m.delivery_count + 1) for m in messages]

    async def nack(self, stream: str, group: str, message: Message, *, delay: float) -> None:
        raise NotImplementedError("seed storages redeliver through the engine")

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Message]:
        return []

    async def heartbeat(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> None:
        return None

    async def dead_letter(
        self,
        stream: str,
        group: str,
        message: Message,
        *,
        dead_letter_stream: str,
        record: dict[str, Any],
    ) -> str:
        publish = getattr(self.storage, "publish", None)
        if publish is None:
            log.error(
                "cannot dead-letter message %s of %r: %r has no publish(); it stays"
                " unacknowledged in the broker. record=%r",
                message.id,
                stream,
                self.storage,
                record,
            )
            return ""
        dead_id = str(await publish(dead_letter_stream, record))
        await self.storage.ack_event(stream, group, message.id)
        return dead_id

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        return GroupInfo(stream=stream, group=group, pending=0, lag=None)

    async def peek(self, stream: str, *, count: int) -> list[Message]:
        return []

    async def publish(self, stream: str, data: dict[str, Any]) -> str:
        publish = getattr(self.storage, "publish", None)
        if publish is None:
            raise ConfigurationError(f"{self.storage!r} cannot publish")
        return str(await publish(stream, data))

    async def publish_many(self, stream: str, items: Sequence[dict[str, Any]]) -> list[str]:
        return [await self.publish(stream, item) for item in items]
