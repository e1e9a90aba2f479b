"""A consumer-group member: its `AIOKafkaConsumer`, and per assigned partition the offsets
delivered and not yet acked, from which the commit point is computed; and the conversion of
fetched records (value and native headers) into `Message` objects."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from conveyor.codec import decode_json, parse_json
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    DecodeError,
)
from conveyor.message import Message
from conveyor.timeouts import within
from conveyor_kafka.errors import ERRORS, MOVED

__all__ = [
    "Handle",
    "Member",
    "PartitionState",
    "decode_headers",
    "encode_headers",
    "parse_id",
    "to_message",
]

log = logging.getLogger("conveyor.kafka")

#: ``json.loads`` of a record's bytes, by orjson where installed (`conveyor.codec`).
_loads = parse_json


@dataclass(frozen=True, slots=True)
class Handle:
    """`Message.handle`: the member and partition epoch that delivered the message."""

    member: Member
    epoch: int
    partition: int


@dataclass(slots=True)
class PartitionState:
    """One assigned partition of one member, for one assignment (epoch)."""

    epoch: int
    position: int | None = None  # next offset to deliver
    committed: int | None = None  # last offset this member committed
    outstanding: dict[int, Message] = field(default_factory=dict)  # in offset order
    paused: bool = False

    def commit_point(self) -> int | None:
        for offset in self.outstanding:
            return offset
        return self.position

    def uncommitted_span(self) -> int:
        point = self.commit_point()
        return 0 if point is None or self.position is None else self.position - point


class Member(ConsumerRebalanceListener):  # type: ignore[misc]
    """One consumer of one session: an `AIOKafkaConsumer` subscribed to the stream's topic
    in the session's Kafka group, and its partitions' state."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        stream: str,
        group: str,
        name: str,
        topic: str,
        *,
        limit: int,
        timeout: float,
        on_release: Callable[[int, int], None] | None = None,
    ) -> None:
        self.stream = stream
        self.group = group
        self.name = name
        self.topic = topic
        self.limit = limit
        self.timeout = timeout
        self.consumer = consumer
        self.partitions: dict[int, PartitionState] = {}
        self.last_read = self.checked_at = time.monotonic()
        self._epochs = itertools.count(1)
        self._commit_lock = asyncio.Lock()
        self._on_release = on_release

    def __repr__(self) -> str:
        return f"<kafka member {self.name!r} of {self.group!r} on {self.topic!r}>"

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Commit what was acked before the partitions move, then forget them."""
        try:
            await self.commit([tp.partition for tp in revoked])
        except (BackendError, BackendClosedError) as exc:
            log.warning("%r: commit on revocation failed: %s", self, exc)
        self.release([tp.partition for tp in revoked])

    def release(self, partitions: Iterable[int] | None = None) -> None:
        """Forget `partitions` (None: all), reporting how far each was delivered."""
        for number in list(self.partitions) if partitions is None else partitions:
            state = self.partitions.pop(number, None)
            if state is not None and state.position is not None and self._on_release:
                self._on_release(number, state.position)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Start a new epoch for every assigned partition."""
        self.partitions = {tp.partition: PartitionState(next(self._epochs)) for tp in assigned}
        log.debug("%r: assigned partitions %s", self, sorted(self.partitions))

    def take(self, batches: dict[TopicPartition, list[Any]]) -> list[Message]:
        """Turn fetched records into messages and remember them as outstanding."""
        out: list[Message] = []
        for tp, records in batches.items():
            state = self.partitions.get(tp.partition)
            if state is None:
                continue  # revoked while the fetch was in flight
            handle = Handle(self, state.epoch, tp.partition)
            prefix = f"{tp.topic}/{tp.partition}/"
            stream, outstanding = self.stream, state.outstanding
            for record in records:  # hot loop: the common case inline, the rest in to_message
                try:
                    data = _loads(record.value)
                except (ValueError, TypeError, AttributeError):  # to_message says why
                    data = None
                if type(data) is dict:
                    stamp = record.timestamp
                    published = stamp / 1000 if stamp and stamp > 0 else None
                    ident = prefix + str(record.offset)
                    pairs = record.headers  # a tuple, empty when the record has none
                    message = Message(
                        ident, stream, data, 1, published, None, None, handle,
                        decode_headers(pairs) if pairs else {},
                    )  # fmt: skip
                else:
                    message = to_message(stream, record, handle)
                outstanding[record.offset] = message
                out.append(message)
            if records:
                state.position = records[-1].offset + 1
            if not state.paused and state.uncommitted_span() >= self.limit:
                self.consumer.pause(tp)
                state.paused = True
                log.info("%r: partition %d paused at the uncommitted limit", self, tp.partition)
        return out

    def locate(self, message: Message, partition: int, offset: int) -> PartitionState | None:
        """The current state holding `message`, or None when it moved or was acked.

        A message of an earlier epoch whose partition came back to this member and whose
        offset was fetched again is accepted: the engine keeps the first delivery of an id
        and skips the re-fetched copy, so refusing its ack would stall the partition.
        """
        state = self.partitions.get(partition)
        if state is None or offset not in state.outstanding:
            return None
        handle = message.handle
        if isinstance(handle, Handle) and handle.epoch != state.epoch:
            log.debug(
                "%r: %s from epoch %d applies to epoch %d",
                self,
                message.id,
                handle.epoch,
                state.epoch,
            )
        return state

    async def commit(
        self, partitions: Iterable[int] | None = None, *, timeout: float | None = None
    ) -> None:
        """Commit the contiguous acked prefix of `partitions` (None: every owned one whose
        point moved, so a commit refused during a rebalance is retried) with explicit
        offsets, in one request, within `timeout` seconds (default: the request timeout;
        aiokafka retries some errors, e.g. a deleted topic, without end)."""
        consumer = self.consumer
        async with self._commit_lock:
            offsets: dict[TopicPartition, int] = {}
            for number in list(self.partitions) if partitions is None else set(partitions):
                state = self.partitions.get(number)
                point = state.commit_point() if state is not None else None
                if state is None or point is None:
                    continue
                if state.paused and state.uncommitted_span() < self.limit:
                    consumer.resume(TopicPartition(self.topic, number))
                    state.paused = False
                if state.committed is None or point > state.committed:
                    offsets[TopicPartition(self.topic, number)] = point
            if not offsets:
                return
            with ERRORS.mapping("kafka commit"):
                try:
                    await within(consumer.commit(offsets), timeout or self.timeout)
                except asyncio.TimeoutError:
                    raise BrokerUnavailableError(f"{self!r}: commit timed out") from None
                except MOVED as exc:
                    log.warning(
                        "%r: commit refused (%s): partitions moved, their unacked"
                        " messages will be delivered again",
                        self,
                        type(exc).__name__,
                    )
                    return
            for tp, offset in offsets.items():
                state = self.partitions.get(tp.partition)
                if state is not None:
                    state.committed = max(offset, state.committed or 0)

    def pending(self) -> int:
        return sum(len(state.outstanding) for state in self.partitions.values())


def decode_headers(pairs: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """Native record headers as conveyor headers: UTF-8 values decoded. Records of other
    producers may repeat a name (the last one wins), carry a null value (read as ``""``)
    or bytes that are not UTF-8 (undecodable bytes become U+FFFD)."""
    try:
        return {name: value.decode() for name, value in pairs}  # type: ignore[union-attr]
    except (AttributeError, UnicodeDecodeError):
        return {
            name: "" if value is None else value.decode(errors="replace") for name, value in pairs
        }


def encode_headers(headers: dict[str, str]) -> list[tuple[str, bytes | None]]:
    """Conveyor headers as native record headers (aiokafka's batch builder wants a list)."""
    return [(name, value.encode()) for name, value in headers.items()]


def to_message(stream: str, record: Any, handle: Handle | None) -> Message:
    ident = f"{record.topic}/{record.partition}/{record.offset}"
    published = record.timestamp / 1000 if record.timestamp and record.timestamp > 0 else None
    value = record.value
    headers = decode_headers(record.headers) if record.headers else {}
    try:  # fast path; `decode_json` words the error otherwise
        data = _loads(value)
        if type(data) is dict:
            return Message(ident, stream, data, 1, published, handle=handle, headers=headers)
    except (ValueError, TypeError, AttributeError):
        pass
    try:
        if value is None:
            raise DecodeError("record has no value (tombstone)")
        decode_json(value.decode())
        error = "payload is not a JSON object"
    except UnicodeDecodeError as exc:
        error = f"payload is not UTF-8: {exc}"
    except DecodeError as exc:
        error = str(exc)
    return Message(
        ident, stream, {}, 1, published, decode_error=error, raw=value, handle=handle,
        headers=headers,
    )  # fmt: skip


def parse_id(message_id: str) -> tuple[str, int, int] | None:
    topic, sep, rest = message_id.partition("/")
    partition, sep2, offset = rest.partition("/")
    if not (sep and sep2 and partition.isdigit() and offset.isdigit()):
        return None
    return topic, int(partition), int(offset)
