"""Kafka backend: a stream is a topic, a group a consumer group, a consumer a group member.

Kafka has no per-message acknowledgement, only a committed offset per partition, so each
member tracks, per assigned partition, the offsets it delivered and not yet acked. An ack
removes an offset; the commit point is the lowest outstanding offset (or the next one to
deliver when nothing is outstanding), committed explicitly. Acks that arrive out of order
wait for the ones before them. Every assignment of a partition gets a new epoch; acks
for partitions no longer owned are ignored: the partition has moved and its unacked
messages will be delivered again from the committed offset (at least once). Message handles
carry the epoch that delivered them.

Retries are the engine's (``redelivery="engine"``): `redeliver` hands back the cached
message with ``delivery_count + 1``. Counts restart at 1 when a partition moves to another
member (``exact_delivery_count=False``). Claiming is the broker's: a dead member's
partitions move after the session timeout (`claim_idle`), so `claim_stale` returns [] and
`heartbeat` does nothing (the client heartbeats by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from conveyor.codec import encode_json
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    GroupNotFoundError,
)
from conveyor.message import Message
from conveyor.protocol import Capabilities, ConsumerInfo, GroupInfo, StartPosition
from conveyor_kafka._errors import MOVED, check_created, mapped
from conveyor_kafka._member import Handle, Member, parse_id, to_message
from conveyor_kafka.settings import KafkaSettings, topic_name

__all__ = ["CAPABILITIES", "KafkaBackend", "open_backend"]

log = logging.getLogger("conveyor.kafka")

CAPABILITIES = Capabilities(
    name="kafka",
    redelivery="engine",
    claim="broker",
    exact_delivery_count=False,
    ordering="partition",
    contiguous_ack=True,
)

_TOPIC_CHECK = 5.0  # seconds between topic-existence checks of an idle member


@dataclass(frozen=True, slots=True)
class _GroupOptions:
    start: StartPosition = "earliest"
    claim_idle: float | None = None


class KafkaBackend:
    """``kafka://`` backend on aiokafka. Use `open_backend` or ``conveyor.connect``."""

    capabilities = CAPABILITIES

    def __init__(self, settings: KafkaSettings | None = None) -> None:
        self.settings = settings or KafkaSettings()
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._joining: dict[tuple[str, str, str], asyncio.Lock] = {}  # one join at a time
        self._members: dict[tuple[str, str, str], Member] = {}
        self._groups: dict[tuple[str, str], _GroupOptions] = {}
        self._topics: set[str] = set()
        self._round_robin = itertools.count()
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaBackend({','.join(self.settings.bootstrap_servers)})"

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the admin client (fails fast when no broker answers)."""
        admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
        try:
            with mapped(f"connect to {','.join(self.settings.bootstrap_servers)}"):
                await admin.start()
        except BaseException:
            await admin.close()
            raise
        self._admin = admin

    async def __aenter__(self) -> KafkaBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Commit acked offsets, leave the groups and close every client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        members, self._members = list(self._members.values()), {}
        for member in members:
            await self._stop_member(member)
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def _stop_member(self, member: Member, *, commit: bool = True) -> None:
        if commit:
            try:
                await member.commit(timeout=min(member.timeout, 5.0))
            except BackendError as exc:
                log.warning("%r: final commit failed: %s", member, exc)
        await member.consumer.stop()

    def _check_open(self) -> AIOKafkaAdminClient:
        if self._closed or self._admin is None:
            raise BackendClosedError(f"{self!r} is closed")
        return self._admin

    # -- clients -----------------------------------------------------------------------

    async def _producer_ready(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    acks="all",
                    enable_idempotence=self.settings.idempotent,
                    linger_ms=self.settings.linger_ms,
                    **self.settings.client_kwargs(),
                )
                try:
                    with mapped("start producer"):
                        await producer.start()
                except BackendError as exc:
                    await producer.stop()
                    if self.settings.idempotent and not isinstance(exc, BrokerUnavailableError):
                        raise BackendError(
                            f"{exc} (the broker may not support idempotent producers;"
                            " Tansu's memory storage does not: set idempotent=false)"
                        ) from exc
                    raise
                self._producer = producer
        return self._producer

    def _consumer(self, group: str | None, **extra: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            group_id=group,
            enable_auto_commit=False,
            **self.settings.client_kwargs(),
            **extra,
        )

    @contextlib.asynccontextmanager
    async def _probe(self, group: str | None = None) -> AsyncIterator[AIOKafkaConsumer]:
        """A short-lived consumer outside any group membership (assign, not subscribe)."""
        consumer = self._consumer(group, fetch_max_wait_ms=10)
        try:
            with mapped("start consumer"):
                await consumer.start()
            yield consumer
        finally:
            await consumer.stop()

    # -- topics ------------------------------------------------------------------------

    async def _topic_exists(self, topic: str, *, fresh: bool = False) -> bool:
        if topic in self._topics and not fresh:
            return True
        admin = self._check_open()
        with mapped("list topics"):
            exists = topic in await admin.list_topics()
        if exists:
            self._topics.add(topic)
        else:
            self._topics.discard(topic)
        return exists

    async def _ensure_topic(self, topic: str) -> None:
        """Create `topic` with the admin client unless it exists (never by auto-create)."""
        if await self._topic_exists(topic):
            return
        admin = self._check_open()
        new = NewTopic(topic, self.settings.partitions, self.settings.replication_factor)
        with mapped(f"create topic {topic!r}"):
            response = await admin.create_topics([new])
        check_created(topic, response.topic_errors)
        log.info("created topic %r (%d partitions)", topic, self.settings.partitions)
        self._topics.add(topic)

    async def _partitions(self, topic: str) -> list[TopicPartition] | None:
        if not await self._topic_exists(topic):
            return None
        admin = self._check_open()
        with mapped(f"describe topic {topic!r}"):
            described = await admin.describe_topics([topic])
        numbers = sorted(p["partition"] for t in described for p in t["partitions"])
        return [TopicPartition(topic, n) for n in numbers]

    async def _bounds(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Beginning offsets and high watermarks of `tps` (assigns them to `consumer`).

        The high watermark comes from a fetch response, not from ListOffsets(latest):
        Tansu answers the latter with the last batch's base offset. A fetch from just
        before that offset reports the true watermark on Tansu and on Apache Kafka.
        """
        with mapped("list offsets"):
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(begin[tp], end[tp] - 1))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while loop.time() < deadline and any(consumer.highwater(tp) is None for tp in tps):
            with mapped("fetch"):
                await consumer.getmany(timeout_ms=20)
        high = {tp: max(end[tp], consumer.highwater(tp) or 0) for tp in tps}
        return begin, high

    # -- the seed protocol -------------------------------------------------------------

    async def create_group(self, stream_name: str, group_name: str) -> None:
        """Create the topic if needed; a new group starts at the beginning."""
        await self.ensure_group(stream_name, group_name)

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Seed read: ``(id, payload)`` pairs. Undecodable records are left out and stay
        unacknowledged (they hold back their partition's commit point; use `read`)."""
        messages = await self.read(stream_name, group_name, consumer_name, count=count, block=None)
        for message in messages:
            if message.decode_error is not None:
                log.warning(
                    "undecodable record %s left pending: %s", message.id, message.decode_error
                )
        return [(m.id, m.data) for m in messages if m.decode_error is None]

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        """Seed ack of one id; unknown ids are ignored."""
        await self.ack(stream_name, group_name, [Message(message_id, stream_name, {})])

    # -- the backend interface ---------------------------------------------------------

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
        """Create the topic; a new group starts at the beginning or, for ``"latest"``, at
        the current end (committed for every partition, so later publishes are seen).

        `claim_idle` becomes the members' session timeout unless the URL sets one.
        """
        topic = topic_name(stream)
        await self._ensure_topic(topic)
        self._groups[(stream, group)] = _GroupOptions(start, claim_idle)
        if start == "latest":
            await self._start_at_end(topic, group)

    async def _start_at_end(self, topic: str, group: str) -> None:
        tps = await self._partitions(topic)
        if not tps:
            return
        async with self._probe(group) as consumer:
            with mapped("fetch committed offsets"):
                committed = [await consumer.committed(tp) for tp in tps]
            if any(offset is not None for offset in committed):
                return  # the group exists: keep its offsets
            _, high = await self._bounds(consumer, tps)
            with mapped("commit start offsets"):
                try:
                    await consumer.commit(high)
                except MOVED:
                    log.info("group %r is active on %r: keeping its offsets", group, topic)

    async def publish(self, stream: str, data: dict[str, Any]) -> str:
        """Produce one payload; returns ``topic/partition/offset`` once the broker acked."""
        return (await self.publish_many(stream, [data]))[0]

    async def publish_many(self, stream: str, items: Sequence[dict[str, Any]]) -> list[str]:
        """Send every payload, then await every broker ack; ids in order. Validates all
        payloads before sending any."""
        self._check_open()
        payloads = [encode_json(item).encode() for item in items]
        if not payloads:
            return []
        topic = topic_name(stream)
        await self._ensure_topic(topic)
        producer = await self._producer_ready()
        with mapped(f"produce to {topic!r}"):
            return await self._send_batches(producer, topic, payloads)

    async def _send_batches(
        self, producer: AIOKafkaProducer, topic: str, payloads: list[bytes]
    ) -> list[str]:
        """Fill record batches ourselves (about twice the rate of one `send()` per record),
        one partition per batch, round robin; then await every broker ack."""
        partitions = sorted(await producer.partitions_for(topic))
        sent: list[tuple[asyncio.Future[Any], int]] = []
        index = 0
        while index < len(payloads):
            batch = producer.create_batch()
            first = index
            while index < len(payloads):
                if batch.append(key=None, value=payloads[index], timestamp=None) is None:
                    break
                index += 1
            if index == first:  # larger than a batch: let the producer size it
                sent.append((await producer.send(topic, payloads[index]), 1))
                index += 1
                continue
            batch.close()
            partition = partitions[next(self._round_robin) % len(partitions)]
            sent.append(
                (await producer.send_batch(batch, topic, partition=partition), index - first)
            )
        results = await asyncio.gather(*(future for future, _ in sent), return_exceptions=True)
        ids: list[str] = []
        for result, (_, size) in zip(results, sent, strict=True):
            if isinstance(result, BaseException):
                raise result
            base = f"{result.topic}/{result.partition}/"
            ids.extend(f"{base}{result.offset + i}" for i in range(size))
        return ids

    async def _member(self, stream: str, group: str, name: str) -> Member:
        key = (stream, group, name)
        member = self._members.get(key)
        if member is not None:
            return member
        lock = self._joining.setdefault(key, asyncio.Lock())
        async with lock:
            member = self._members.get(key)
            if member is not None:
                return member
            topic = topic_name(stream)
            if not await self._topic_exists(topic):
                raise GroupNotFoundError(f"stream {stream!r} (topic {topic!r}) does not exist")
            options = self._groups.get((stream, group), _GroupOptions())
            session = self.settings.session_timeout_for(options.claim_idle)
            consumer = self._consumer(
                group,
                auto_offset_reset=options.start,
                fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
                session_timeout_ms=session,
                heartbeat_interval_ms=self.settings.heartbeat_for(session),
                max_poll_interval_ms=self.settings.max_poll_interval_ms,
            )
            member = Member(
                consumer,
                stream,
                group,
                name,
                topic,
                limit=self.settings.max_uncommitted,
                timeout=self.settings.request_timeout_ms / 1000,
            )
            consumer.subscribe([topic], listener=member)
            try:
                with mapped(f"join group {group!r}"):
                    await consumer.start()  # returns once the group is joined
            except BaseException:
                await consumer.stop()
                raise
            if self._closed:  # closed while joining
                await consumer.stop()
                raise BackendClosedError(f"{self!r} is closed")
            self._members[key] = member
            return member

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None
    ) -> list[Message]:
        """Fetch up to `count` records. A consumer's first read joins the group (seconds
        on Tansu) and resumes from the committed offsets, so its unacked messages of an
        earlier life come first. `block` None or 0 waits one fetch round at most
        (`fetch_max_wait_ms` + 100 ms): records are only "available" once fetched."""
        self._check_open()
        member = await self._member(stream, group, consumer)
        timeout_ms = int(block * 1000) if block else self.settings.fetch_max_wait_ms + 100
        member.last_read = time.monotonic()
        try:
            with mapped("fetch"):
                batches = await member.consumer.getmany(timeout_ms=timeout_ms, max_records=count)
        except BackendError as exc:
            if not isinstance(exc, BrokerUnavailableError):
                # a fatal consumer error: the next read rejoins with a fresh consumer
                self._members.pop((stream, group, consumer), None)
                await self._stop_member(member)
            raise
        if not batches and member.last_read - member.checked_at > _TOPIC_CHECK:
            await self._check_topic(member)
        return member.take(batches)

    async def _check_topic(self, member: Member) -> None:
        """Raise GroupNotFoundError when the member's topic was deleted (the client would
        sit on it silently); the engine then recreates it through `ensure_group`."""
        member.checked_at = time.monotonic()
        if await self._topic_exists(member.topic, fresh=True):
            return
        self._members.pop((member.stream, member.group, member.name), None)
        await self._stop_member(member, commit=False)
        raise GroupNotFoundError(f"stream {member.stream!r} (topic {member.topic!r}) was deleted")

    def _find(self, stream: str, group: str, message: Message) -> tuple[Member, int, int] | None:
        handle = message.handle
        if isinstance(handle, Handle):  # fast path: delivered by this backend
            member = handle.member
            offset = int(message.id.rpartition("/")[2])
            if (
                member.stream == stream
                and member.group == group
                and member.locate(message, handle.partition, offset)
            ):
                return member, handle.partition, offset
            return None
        parsed = parse_id(message.id)
        if parsed is None or parsed[0] != topic_name(stream):
            return None
        _, partition, offset = parsed
        for key, member in self._members.items():
            if key[:2] == (stream, group) and member.locate(message, partition, offset):
                return member, partition, offset
        return None

    async def ack(self, stream: str, group: str, messages: Sequence[Message]) -> None:
        """Forget acked offsets and commit each touched partition's contiguous prefix, in
        one commit per member. Unknown ids and partitions no longer owned are ignored."""
        self._check_open()
        touched: set[Member] = set()
        for message in messages:
            handle = message.handle
            if type(handle) is Handle:  # fast path: delivered by this backend
                member = handle.member
                state = member.partitions.get(handle.partition)
                if state is not None and member.stream == stream and member.group == group:
                    offset = int(message.id.rpartition("/")[2])
                    if state.outstanding.pop(offset, None) is not None:
                        touched.add(member)
                continue
            found = self._find(stream, group, message)
            if found is None:
                continue
            member, partition, offset = found
            member.partitions[partition].outstanding.pop(offset, None)
            touched.add(member)
        for member in touched:
            await member.commit()

    async def redeliver(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> list[Message]:
        """Hand failed messages back with ``delivery_count + 1`` (emulated; kept in memory
        while their partition stays with this member, otherwise left out)."""
        self._check_open()
        out: list[Message] = []
        for message in messages:
            found = self._find(stream, group, message)
            if found is None:
                continue
            member, partition, offset = found
            state = member.partitions[partition]
            cached = state.outstanding[offset]
            count = max(cached.delivery_count, message.delivery_count) + 1
            again = replace(cached, delivery_count=count)
            state.outstanding[offset] = again
            out.append(again)
        return out

    async def nack(self, stream: str, group: str, message: Message, *, delay: float) -> None:
        """Not used on Kafka (``redelivery="engine"``): the message stays outstanding."""
        self._check_open()

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Message]:
        """Always []: the broker moves a dead member's partitions (``claim="broker"``)."""
        self._check_open()
        return []

    async def heartbeat(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> None:
        """No-op: aiokafka heartbeats the group membership in the background."""
        self._check_open()

    async def dead_letter(
        self,
        stream: str,
        group: str,
        message: Message,
        *,
        dead_letter_stream: str,
        record: dict[str, Any],
    ) -> str:
        """Produce `record` to the dead-letter topic, await the broker's ack, and only then
        ack `message` (a crash in between gives a duplicate dead letter, never a loss)."""
        self._check_open()
        payload = encode_json(record).encode()
        topic = topic_name(dead_letter_stream)
        await self._ensure_topic(topic)
        producer = await self._producer_ready()
        with mapped(f"produce to {topic!r}"):
            result = await producer.send_and_wait(topic, payload)
        await self.ack(stream, group, [message])
        return f"{result.topic}/{result.partition}/{result.offset}"

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        """Pending: delivered and unacked in this process. Lag: records past the group's
        position (this process's delivery position where it owns the partition, else the
        committed offset). On Tansu the end offsets come from a fetch (see `_bounds`)."""
        self._check_open()
        topic = topic_name(stream)
        tps = await self._partitions(topic)
        if tps is None:
            raise GroupNotFoundError(f"stream {stream!r} (topic {topic!r}) does not exist")
        members = [m for k, m in self._members.items() if k[:2] == (stream, group)]
        positions: dict[int, int] = {}
        for member in members:
            for number, state in member.partitions.items():
                if state.position is not None:
                    positions[number] = state.position
        async with self._probe(group) as consumer:
            with mapped("fetch committed offsets"):
                committed = {tp: await consumer.committed(tp) for tp in tps}
            begin, high = await self._bounds(consumer, tps)
        lag = 0
        for tp in tps:
            base = positions.get(tp.partition, committed[tp])
            lag += max(0, high[tp] - (begin[tp] if base is None else base))
        now = time.monotonic()
        consumers = tuple(
            ConsumerInfo(m.name, m.pending(), max(0.0, now - m.last_read))
            for m in sorted(members, key=lambda m: m.name)
        )
        pending = sum(c.pending for c in consumers)
        length = sum(high[tp] - begin[tp] for tp in tps)
        return GroupInfo(stream, group, pending, lag, length, consumers)

    async def peek(self, stream: str, *, count: int) -> list[Message]:
        """Up to the last `count` records (by timestamp across partitions), oldest first."""
        self._check_open()
        tps = await self._partitions(topic_name(stream))
        if not tps or count <= 0:
            return []
        records: list[Any] = []
        async with self._probe() as consumer:
            begin, high = await self._bounds(consumer, tps)
            todo = {tp for tp in tps if high[tp] > begin[tp]}
            for tp in todo:
                consumer.seek(tp, max(begin[tp], high[tp] - count))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5.0
            while todo and loop.time() < deadline:
                with mapped("fetch"):
                    batches = await consumer.getmany(*todo, timeout_ms=100)
                for tp, batch in batches.items():
                    records.extend(r for r in batch if r.offset < high[tp])
                    if batch and batch[-1].offset + 1 >= high[tp]:
                        todo.discard(tp)
        records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        return [replace(to_message(stream, r, None), delivery_count=0) for r in records[-count:]]


async def open_backend(url: str, options: dict[str, Any]) -> KafkaBackend:
    """Entry point for ``kafka://host:port[,host:port...]`` (see `KafkaSettings`)."""
    backend = KafkaBackend(KafkaSettings.from_url(url, options))
    await backend.start()
    return backend
