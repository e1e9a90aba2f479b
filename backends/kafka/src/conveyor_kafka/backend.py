"""Kafka backend: a stream is a topic, a group a consumer group, a consumer a group member.

Kafka has no per-message acknowledgement, only a committed offset per partition, so each
member tracks, per assigned partition, the offsets it delivered and not yet acked. An ack
removes an offset; the commit point is the lowest outstanding offset (or the next one to
deliver when nothing is outstanding), committed explicitly. Acks that arrive out of order
wait for the ones before them. Every assignment of a partition gets a new epoch; acks
for partitions no longer owned are ignored: the partition has moved and its unacked
messages will be delivered again from the committed offset (at least once). Message handles
carry the member and epoch that delivered them.

Kafka consumer groups are global while conveyor groups are per stream: group ``billing``
on stream ``orders`` is the Kafka group ``billing:orders`` (`KafkaSettings.group_id`), so
consumers of one stream never rebalance another stream's consumers of the same group name.

Retries are the engine's (``redelivery="engine"``): `KafkaSession.redeliver` hands back the
cached message with ``delivery_count + 1``. Counts restart at 1 when a partition moves to
another member. Claiming is the broker's (``claim="broker"``): a closed session leaves the
group at once, a dead member's partitions move after the session timeout (`claim_idle`),
so `claim_stale` returns [] and `heartbeat` does nothing (the client heartbeats itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.group import LeaveGroupRequest

from conveyor.base import BaseBackend, ConsumerOptions, check_sizes
from conveyor.codec import encode_json_bytes
from conveyor.discovery import StreamInfo
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    ConfigurationError,
    GroupNotFoundError,
)
from conveyor.message import Message
from conveyor.protocol import Capabilities, ConsumerInfo, GroupInfo
from conveyor.timeouts import within
from conveyor_kafka._member import Member, encode_headers, parse_id, to_message
from conveyor_kafka._producer import Producer, RecordHeaders
from conveyor_kafka.discovery import list_groups, list_streams
from conveyor_kafka.errors import ERRORS, MOVED, check_created
from conveyor_kafka.probe import answering_servers
from conveyor_kafka.session import KafkaSession
from conveyor_kafka.settings import KafkaSettings, topic_name
from conveyor_kafka.topics import delete_topic

__all__ = ["CAPABILITIES", "KafkaBackend", "open_backend"]

log = logging.getLogger("conveyor.kafka")

CAPABILITIES = Capabilities(name="kafka", redelivery="engine", claim="broker")

_LEAVE_TIMEOUT = 5.0  # seconds a best-effort LeaveGroup may take
_DESCRIBE_TIMEOUT = 5.0  # seconds to learn a topic's max.message.bytes
#: Bytes of record-batch and record framing counted with a value against the size limits.
_RECORD_FRAMING = 100


class KafkaBackend(BaseBackend):
    """``kafka://`` backend on aiokafka. Use `open_backend` or ``conveyor.connect``."""

    capabilities = CAPABILITIES

    def __init__(self, settings: KafkaSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or KafkaSettings()
        self._admin: AIOKafkaAdminClient | None = None
        self._producer = Producer(self.settings, self._is_closed, self._ensure_topic)
        self._topics: set[str] = set()  # known to exist
        self._opened: set[str] = set()  # Kafka group ids opened by this backend
        # (group id, topic, partition) -> next offset this process had delivered when the
        # partition left its member: what was delivered and not committed stays "pending"
        self._delivered: dict[tuple[str, str, int], int] = {}
        self._max_bytes: dict[str, int | None] = {}  # topic -> max.message.bytes, if known

    def __repr__(self) -> str:
        return f"KafkaBackend({','.join(self.settings.bootstrap_servers)})"

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the admin client. First every bootstrap server is asked to answer
        within ``connect_timeout_ms`` (see `conveyor_kafka.probe`); when some do not,
        the backend's clients bootstrap from those that did (`settings` says which):
        aiokafka tries bootstrap servers in random order (``collect_hosts`` shuffles
        them), so a silent one kept in the list would cost a whole
        ``request_timeout_ms`` whenever it came first. A broker that was restarting
        comes back through the cluster metadata, not the bootstrap list.

        Raises:
            BrokerUnavailableError: no bootstrap server answered like a Kafka broker.
        """
        servers = await answering_servers(self.settings)
        if len(servers) < len(self.settings.bootstrap_servers):
            self.settings = replace(self.settings, bootstrap_servers=tuple(servers))
            self._producer = Producer(self.settings, self._is_closed, self._ensure_topic)
        admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
        try:
            with ERRORS.mapping(f"kafka connect to {','.join(self.settings.bootstrap_servers)}"):
                await admin.start()
        except BaseException:
            await admin.close()
            raise
        self._admin = admin

    async def _close(self) -> None:
        """The sessions are closed (left their groups): stop the producer and admin."""
        await self._producer.aclose()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def _leave(self, group_id: str, member_id: str) -> None:
        """Send LeaveGroup for a stopped member (best effort, like aiokafka's own; see
        `KafkaSession._stop`)."""
        admin = self._admin
        send = getattr(admin, "_send_request_to_node", None)
        if admin is None or send is None:
            return

        async def leave() -> None:
            node = await admin.find_coordinator(group_id)
            await send(node, LeaveGroupRequest(group_id, member_id))

        try:
            with ERRORS.mapping(f"kafka leave group {group_id!r}"):
                await within(leave(), _LEAVE_TIMEOUT)
        except (BackendError, BackendClosedError, asyncio.TimeoutError) as exc:
            log.info("leaving group %r failed: %r", group_id, exc)

    def _released(self, group_id: str, topic: str, partition: int, position: int) -> None:
        self._delivered[(group_id, topic, partition)] = position

    def _admin_client(self) -> AIOKafkaAdminClient:
        self._check_open()
        if self._admin is None:
            raise BackendClosedError(f"{self!r} is not started")
        return self._admin

    # -- clients -----------------------------------------------------------------------

    def _consumer(self, group_id: str | None, **extra: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            group_id=group_id,
            enable_auto_commit=False,
            **self.settings.client_kwargs(),
            **extra,
        )

    @contextlib.asynccontextmanager
    async def _probe(self, group_id: str | None = None) -> AsyncIterator[AIOKafkaConsumer]:
        """A short-lived consumer outside any group membership (assign, not subscribe)."""
        consumer = self._consumer(group_id, fetch_max_wait_ms=10)
        try:
            with ERRORS.mapping("kafka start consumer", closed=self._is_closed):
                await consumer.start()
            yield consumer
        finally:
            await consumer.stop()

    def _is_closed(self) -> bool:
        return self.closed

    # -- topics ------------------------------------------------------------------------

    async def _topic_exists(self, topic: str, *, fresh: bool = False) -> bool:
        if topic in self._topics and not fresh:
            return True
        admin = self._admin_client()
        with ERRORS.mapping("kafka list topics", closed=self._is_closed):
            exists = topic in await admin.list_topics()
        if exists:
            self._topics.add(topic)
        else:
            self._topics.discard(topic)
        return exists

    async def _ensure_topic(self, topic: str) -> None:
        """Create `topic` with the admin client unless it exists (never by auto-create).
        Two concurrent creations are harmless: "already exists" is success."""
        if topic not in self._topics and not await self._topic_exists(topic):
            await self._create_topic(topic)

    async def _create_topic(self, topic: str) -> None:
        admin = self._admin_client()
        new = NewTopic(
            topic,
            self.settings.partitions,
            self.settings.replication_factor,
            topic_configs=self.settings.topic_configs(),
        )
        with ERRORS.mapping(f"kafka create topic {topic!r}", closed=self._is_closed):
            response = await admin.create_topics([new])
        check_created(topic, response.topic_errors)
        log.info("created topic %r (%d partitions)", topic, self.settings.partitions)
        self._topics.add(topic)
        for key in [k for k in self._delivered if k[1] == topic]:  # offsets start over
            del self._delivered[key]

    async def _partitions(self, topic: str) -> list[TopicPartition] | None:
        if not await self._topic_exists(topic):
            return None
        admin = self._admin_client()
        with ERRORS.mapping(f"kafka describe topic {topic!r}", closed=self._is_closed):
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
        with ERRORS.mapping("kafka list offsets", closed=self._is_closed):
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(begin[tp], end[tp] - 1))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while loop.time() < deadline and any(consumer.highwater(tp) is None for tp in tps):
            with ERRORS.mapping("kafka fetch", closed=self._is_closed):
                await consumer.getmany(timeout_ms=20)
        high = {tp: max(end[tp], consumer.highwater(tp) or 0) for tp in tps}
        return begin, high

    # -- consumer sessions -------------------------------------------------------------

    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> KafkaSession:
        """Create the topic; a new group starts at the beginning or, for ``"latest"``, at
        the current end (committed for every partition, so later publishes are seen).

        The session joins the group on its first read. `claim_idle` becomes its session
        timeout unless the URL sets one.
        """
        topic = topic_name(stream)
        group_id = self.settings.group_id(group, stream)
        await self._ensure_topic(topic)
        if options.start == "latest" and group_id not in self._opened:
            await self._start_at_end(topic, group_id)
        self._opened.add(group_id)
        return KafkaSession(
            self, stream, group, consumer, topic=topic, group_id=group_id, options=options
        )

    async def _start_at_end(self, topic: str, group_id: str) -> None:
        """Commit the end offsets for a group that has committed nothing yet."""
        tps = await self._partitions(topic)
        if not tps:
            return
        async with self._probe(group_id) as consumer:
            with ERRORS.mapping("kafka fetch committed offsets", closed=self._is_closed):
                committed = [await consumer.committed(tp) for tp in tps]
            if any(offset is not None for offset in committed):
                return  # the group exists: keep its offsets
            _, high = await self._bounds(consumer, tps)
            with ERRORS.mapping("kafka commit start offsets", closed=self._is_closed):
                try:
                    await consumer.commit(high)
                except MOVED:
                    log.info("group %r is active on %r: keeping its offsets", group_id, topic)

    # -- publishing --------------------------------------------------------------------

    async def _publish_many(
        self, stream: str, items: list[dict[str, Any]], headers: list[dict[str, str]] | None
    ) -> list[str]:
        """Encode every payload (validating all before sending any), then produce them;
        ``topic/partition/offset`` ids once the broker acked (``acks=all``)."""
        values = [encode_json_bytes(item) for item in items]
        native = [encode_headers(h) if h else [] for h in headers] if headers else None
        return await self._produce(stream, values, native)

    async def _produce(
        self, stream: str, values: list[bytes], headers: list[RecordHeaders] | None
    ) -> list[str]:
        topic = topic_name(stream)
        limit, name = self.settings.max_request_size, "the producer's max_request_size"
        topic_limit = await self._topic_max_bytes(topic)
        if topic_limit is not None and topic_limit < limit:
            limit, name = topic_limit, f"topic {topic!r} max.message.bytes"
        sizes = (
            len(v) + _RECORD_FRAMING + (_header_size(headers[i]) if headers else 0)
            for i, v in enumerate(values)
        )
        check_sizes(stream, sizes, limit, name)
        return await self._producer.send(topic, values, headers)

    async def _describe(self, topic: str) -> int | None:
        self._check_open()
        return await _describe_max_bytes(self.settings, topic)

    async def _topic_max_bytes(self, topic: str) -> int | None:
        """The topic's ``max.message.bytes``, asked once per topic this backend knows
        exists (None where the broker does not answer DescribeConfigs, as Tansu does not,
        and before the topic exists: a topic conveyor creates gets the broker default)."""
        if topic in self._max_bytes:
            return self._max_bytes[topic]
        if topic not in self._topics:  # not created yet: it gets the broker's default
            return None
        found: int | None = None
        try:
            found = await within(self._describe(topic), _DESCRIBE_TIMEOUT)
        except (BackendError, asyncio.TimeoutError) as exc:
            log.debug("max.message.bytes of %r unknown (%s)", topic, exc)
        self._max_bytes[topic] = found
        return found

    # -- inspection --------------------------------------------------------------------

    def _members(self, stream: str, group: str) -> list[tuple[KafkaSession, Member]]:
        """The joined members of `group` on `stream` in this process's open sessions."""
        out = []
        for session in self._sessions.values():
            if (
                isinstance(session, KafkaSession)
                and session.stream == stream
                and session.group == group
                and session.member is not None
            ):
                out.append((session, session.member))
        return out

    async def _group_info(self, stream: str, group: str) -> GroupInfo:
        """Pending: delivered by this process and not acked (by its open sessions, and
        what its closed sessions delivered past the committed offset). Lag: records past
        the group's position (this process's delivery position where known, else the
        committed offset). On Tansu the end offsets come from a fetch (see `_bounds`)."""
        topic = topic_name(stream)
        tps = await self._partitions(topic)
        if tps is None:
            raise GroupNotFoundError(f"stream {stream!r} (topic {topic!r}) does not exist")
        group_id = self.settings.group_id(group, stream)
        members = self._members(stream, group)
        positions: dict[int, int] = {}
        for _, member in members:
            for number, state in member.partitions.items():
                if state.position is not None:
                    positions[number] = state.position
        async with self._probe(group_id) as consumer:
            with ERRORS.mapping("kafka fetch committed offsets", closed=self._is_closed):
                committed = {tp: await consumer.committed(tp) for tp in tps}
            begin, high = await self._bounds(consumer, tps)
        lag = released = 0
        for tp in tps:
            base = committed[tp]
            base = begin[tp] if base is None else max(base, begin[tp])
            position = positions.get(tp.partition)
            if position is None:  # no open session here holds it: what did closed ones do?
                delivered = self._delivered.get((group_id, topic, tp.partition), base)
                released += max(0, delivered - base)
                position = max(delivered, base)
            lag += max(0, high[tp] - position)
        now = time.monotonic()
        consumers = tuple(
            ConsumerInfo(session.consumer, member.pending(), max(0.0, now - member.last_read))
            for session, member in sorted(members, key=lambda pair: pair[0].consumer)
        )
        pending = sum(c.pending for c in consumers) + released
        length = sum(high[tp] - begin[tp] for tp in tps)
        return GroupInfo(stream, group, pending, lag, length, consumers)

    async def _peek(self, stream: str, count: int) -> list[Message]:
        """Up to the last `count` records (by timestamp across partitions), oldest first."""
        tps = await self._partitions(topic_name(stream))
        if not tps:
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
                with ERRORS.mapping("kafka fetch", closed=self._is_closed):
                    batches = await consumer.getmany(*todo, timeout_ms=100)
                for tp, batch in batches.items():
                    records.extend(r for r in batch if r.offset < high[tp])
                    if batch and batch[-1].offset + 1 >= high[tp]:
                        todo.discard(tp)
        records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        return [replace(to_message(stream, r, None), delivery_count=0) for r in records[-count:]]

    async def _range(self, stream: str, after: str | None, count: int) -> list[Message]:
        """Records after id `after`, partition by partition, each in offset order (one
        partition, as conveyor creates dead-letter topics by default: publish order).
        Kafka cannot delete single records: `delete` is not supported."""
        topic = topic_name(stream)
        start_partition, start_offset = 0, -1
        if after is not None:
            parsed = parse_id(after)
            if parsed is None or parsed[0] != topic:
                raise ConfigurationError(f"{after!r} is not a record id of stream {stream!r}")
            _, start_partition, start_offset = parsed
        tps = await self._partitions(topic)
        if not tps:
            return []
        records: list[Any] = []
        async with self._probe() as consumer:
            begin, high = await self._bounds(consumer, tps)
            for tp in sorted(tps, key=lambda t: t.partition):
                if tp.partition < start_partition or len(records) >= count:
                    continue
                first = start_offset + 1 if tp.partition == start_partition else begin[tp]
                offset = max(first, begin[tp])
                if offset >= high[tp]:
                    continue
                consumer.seek(tp, offset)
                deadline = asyncio.get_running_loop().time() + 5.0
                while offset < high[tp] and len(records) < count:
                    if asyncio.get_running_loop().time() > deadline:
                        break
                    with ERRORS.mapping("kafka fetch", closed=self._is_closed):
                        batches = await consumer.getmany(tp, timeout_ms=100)
                    for record in batches.get(tp, []):
                        if offset <= record.offset < high[tp]:
                            records.append(record)
                            offset = record.offset + 1
        return [replace(to_message(stream, r, None), delivery_count=0) for r in records[:count]]

    async def _delete_stream(self, stream: str) -> bool:
        """``DeleteTopics`` (see `conveyor_kafka.topics`); sessions on the topic notice
        within 5 s (see "Deleted topics" in the README)."""
        topic = topic_name(stream)
        deleted = await delete_topic(self._admin_client(), topic)
        self._topics.discard(topic)
        self._max_bytes.pop(topic, None)
        for key in [k for k in self._delivered if k[1] == topic]:  # offsets start over
            del self._delivered[key]
        return deleted

    async def _streams(self) -> list[StreamInfo]:
        """Topics as streams, groups from ListGroups (see `conveyor_kafka.discovery`)."""
        return await list_streams(self)

    async def _groups(self, stream: str) -> list[str]:
        return await list_groups(self, stream)


async def _describe_max_bytes(settings: KafkaSettings, topic: str) -> int | None:
    """Ask DescribeConfigs on a client of its own: a broker that does not know the request
    (Tansu) drops the connection, which must not be the backend's admin connection."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})
    try:
        with ERRORS.mapping(f"kafka describe topic {topic!r}"):
            await admin.start()
            return _max_message_bytes(await admin.describe_configs([resource]))
    finally:
        await admin.close()


def _header_size(headers: RecordHeaders) -> int:
    return sum(len(name) + len(value or b"") + 2 for name, value in headers)


def _max_message_bytes(replies: list[Any]) -> int | None:
    """``max.message.bytes`` from DescribeConfigs replies (any version), if present."""
    for reply in replies:
        for resource in getattr(reply, "resources", ()):
            for entry in resource[4] if len(resource) > 4 else ():
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    return int(entry[1])
    return None


async def open_backend(url: str, options: dict[str, Any]) -> KafkaBackend:
    """Entry point for ``kafka://host:port[,host:port...]`` (see `KafkaSettings`)."""
    backend = KafkaBackend(KafkaSettings.from_url(url, options))
    await backend.start()
    return backend
