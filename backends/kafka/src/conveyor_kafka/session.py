"""`KafkaSession`: one consumer of one group on one stream, as one Kafka group member.

The session joins its Kafka group on its first `read` (seconds on Tansu) with one
`AIOKafkaConsumer` (a `Member`), and resumes from the committed offsets, so its own unacked
messages of an earlier life come first. `aclose()` commits the acked prefix and stops the
consumer, which leaves the group: its partitions move to the other members at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from conveyor.base import BaseSession, ConsumerOptions
from conveyor.codec import encode_json
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    GroupNotFoundError,
)
from conveyor.message import Message
from conveyor_kafka._member import Handle, Member, PartitionState, encode_headers, parse_id
from conveyor_kafka.errors import ERRORS

if TYPE_CHECKING:
    from conveyor_kafka.backend import KafkaBackend

__all__ = ["KafkaSession"]

log = logging.getLogger("conveyor.kafka")

_TOPIC_CHECK = 5.0  # seconds between topic-existence checks of an idle member


class KafkaSession(BaseSession):
    """A consumer of `group` on `stream`: a member of the Kafka group `group_id`.

    Attributes:
        topic: The stream's topic (`conveyor_kafka.topic_name`).
        group_id: The Kafka consumer-group id (`KafkaSettings.group_id`).
        member: The joined group member, None before the first read and after close.
    """

    backend: KafkaBackend

    def __init__(
        self,
        backend: KafkaBackend,
        stream: str,
        group: str,
        consumer: str,
        *,
        topic: str,
        group_id: str,
        options: ConsumerOptions,
    ) -> None:
        super().__init__(backend, stream, group, consumer)
        self.topic = topic
        self.group_id = group_id
        self.member: Member | None = None
        self._options = options
        self._joining = asyncio.Lock()

    def _cut(self) -> bool:
        return self.closed

    # -- membership ----------------------------------------------------------------------

    async def _join(self) -> Member:
        """Join the group (once; concurrent first reads wait for the same join)."""
        async with self._joining:
            if self.member is not None:
                return self.member
            self._check_open()
            backend, settings = self.backend, self.backend.settings
            if not await backend._topic_exists(self.topic, fresh=True):
                raise GroupNotFoundError(
                    f"stream {self.stream!r} (topic {self.topic!r}) does not exist"
                )
            timeout = settings.session_timeout_for(self._options.claim_idle)
            consumer = backend._consumer(
                self.group_id,
                auto_offset_reset=self._options.start,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                session_timeout_ms=timeout,
                heartbeat_interval_ms=settings.heartbeat_for(timeout),
                max_poll_interval_ms=settings.max_poll_interval_ms,
            )
            member = Member(
                consumer,
                self.stream,
                self.group_id,
                self.consumer,
                self.topic,
                limit=settings.max_uncommitted,
                timeout=settings.request_timeout_ms / 1000,
                on_release=functools.partial(backend._released, self.group_id, self.topic),
            )
            consumer.subscribe([self.topic], listener=member)
            try:
                with ERRORS.mapping(f"kafka join group {self.group_id!r}", closed=self._cut):
                    await consumer.start()  # returns once the group is joined
            except BaseException:
                await consumer.stop()
                raise
            if self.closed:
                await consumer.stop()
                raise BackendClosedError(f"{self!r} was closed while joining its group")
            self.member = member
            return member

    async def _stop(self, member: Member, *, commit: bool) -> None:
        """Commit `member`'s acked prefix (bounded) and stop its consumer, which leaves
        the group: its partitions move to the other members at once."""
        if commit:
            try:
                await member.commit(timeout=min(member.timeout, 5.0))
            except (BackendError, BackendClosedError) as exc:
                log.warning("%r: final commit failed: %s", member, exc)
        member.release()
        # aiokafka sends LeaveGroup only from generation 1, Apache Kafka's first; Tansu
        # numbers a group's first generation 0, so there the group's first member would
        # keep its partitions until its session timed out: leave for it
        coordinator = getattr(member.consumer, "_coordinator", None)
        member_id = getattr(coordinator, "member_id", None)
        first = getattr(coordinator, "generation", None) == 0
        await member.consumer.stop()  # leaves the group from generation 1
        if first and isinstance(member_id, str) and member_id:
            await self.backend._leave(self.group_id, member_id)

    async def _drop(self, member: Member, *, commit: bool) -> None:
        """Stop `member` after an error; the next read joins again."""
        if self.member is member:
            self.member = None
        await self._stop(member, commit=commit)

    async def _close(self) -> None:
        """Commit the acked prefix and leave the group (never acking anything else)."""
        member, self.member = self.member, None
        if member is not None:
            await self._stop(member, commit=True)

    # -- reading -------------------------------------------------------------------------

    async def read(self, *, count: int, block: float | None) -> list[Message]:
        """Fetch up to `count` records. `block` None or 0 waits one fetch round at most
        (`fetch_max_wait_ms` + 100 ms): records are only "available" once fetched."""
        self._check_open()
        member = self.member or await self._join()
        wait = self.backend.settings.fetch_max_wait_ms + 100
        timeout_ms = int(block * 1000) if block else wait
        member.last_read = started = time.monotonic()
        try:
            with ERRORS.mapping("kafka fetch", closed=self._cut):
                batches = await member.consumer.getmany(timeout_ms=timeout_ms, max_records=count)
        except BackendError as exc:
            if not isinstance(exc, BrokerUnavailableError):
                await self._drop(member, commit=True)  # a fatal consumer error
            raise
        if not batches and started - member.checked_at > _TOPIC_CHECK:
            await self._check_topic(member)
        return member.take(batches)

    async def _check_topic(self, member: Member) -> None:
        """Raise GroupNotFoundError when the topic was deleted (the client would sit on it
        silently); the engine then opens a new session, which recreates it."""
        member.checked_at = time.monotonic()
        if await self.backend._topic_exists(self.topic, fresh=True):
            return
        await self._drop(member, commit=False)
        raise GroupNotFoundError(f"stream {self.stream!r} (topic {self.topic!r}) was deleted")

    def _find(self, message: Message) -> tuple[PartitionState, int] | None:
        """The partition state holding `message` in this session's member, and its offset."""
        member = self.member
        if member is None:
            return None
        handle = message.handle
        if isinstance(handle, Handle):
            if handle.member is not member:
                return None  # delivered by another member (or an earlier one of this session)
            partition = handle.partition
            offset = int(message.id.rpartition("/")[2])
        else:
            parsed = parse_id(message.id)
            if parsed is None or parsed[0] != self.topic:
                return None
            _, partition, offset = parsed
        state = member.locate(message, partition, offset)
        return None if state is None else (state, offset)

    # -- acknowledging -------------------------------------------------------------------

    async def ack(self, messages: Sequence[Message]) -> None:
        """Forget acked offsets and commit each touched partition's contiguous prefix, in
        one commit. Unknown ids and partitions no longer owned are ignored."""
        self._check_open()
        member = self.member
        if member is None:
            return
        touched = False
        partitions = member.partitions
        for message in messages:
            handle = message.handle
            if type(handle) is Handle:  # fast path: delivered by this session
                if handle.member is member:
                    state = partitions.get(handle.partition)
                    if state is not None:
                        offset = int(message.id.rpartition("/")[2])
                        if state.outstanding.pop(offset, None) is not None:
                            touched = True
                continue
            found = self._find(message)
            if found is not None:
                state, offset = found
                state.outstanding.pop(offset, None)
                touched = True
        if touched:
            await member.commit()

    async def redeliver(self, messages: Sequence[Message]) -> list[Message]:
        """Hand failed messages back with ``delivery_count + 1`` (emulated: kept in memory
        while their partition stays with this member, otherwise left out)."""
        self._check_open()
        out: list[Message] = []
        for message in messages:
            found = self._find(message)
            if found is None:
                continue
            state, offset = found
            cached = state.outstanding[offset]
            count = max(cached.delivery_count, message.delivery_count) + 1
            again = replace(cached, delivery_count=count)
            state.outstanding[offset] = again
            out.append(again)
        return out

    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str:
        """Produce `record` (with `message`'s headers) to the dead-letter topic, await the
        broker's ack, and only then ack `message` (a crash in between gives a duplicate
        dead letter, never a loss)."""
        self._check_open()
        value = encode_json(record).encode()
        headers = [encode_headers(message.headers)] if message.headers else None
        (dead_id,) = await self.backend._produce(dead_letter_stream, [value], headers)
        await self.ack([message])
        return dead_id

    def pending(self) -> int:
        """Messages delivered to this session and not yet acked."""
        return 0 if self.member is None else self.member.pending()
