"""Kafka-specific behaviour of `KafkaBackend` against a real Kafka-protocol broker.

Checked with aiokafka directly where the broker's own state is the point (committed
offsets, topic partition counts, dead-letter records). On Tansu a new group takes about
half the session timeout to join; the test URL sets a short one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import conveyor
from conveyor.errors import BrokerUnavailableError, GroupNotFoundError
from conveyor.message import Message
from conveyor.options import split_options
from conveyor.processor import StreamProcessor
from conveyor.testing.conformance import read_until
from conveyor_kafka import KafkaBackend, KafkaSettings, topic_name
from conveyor_kafka.testing import free_port

pytestmark = pytest.mark.slow

OpenKafka = Callable[..., Awaitable[KafkaBackend]]

TIMEOUT = 20.0


@pytest.fixture
def settings(kafka_url: str) -> KafkaSettings:
    base, options = split_options(kafka_url)
    return KafkaSettings.from_url(base, options)


@pytest_asyncio.fixture
async def admin(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(**settings.client_kwargs())
    await client.start()
    yield client
    await client.close()


async def committed(settings: KafkaSettings, group: str, topic: str, partition: int) -> int | None:
    """The group's committed offset as the broker reports it."""
    consumer = AIOKafkaConsumer(
        group_id=group, enable_auto_commit=False, **settings.client_kwargs()
    )
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, partition))
        return offset
    finally:
        await consumer.stop()


async def partition_count(admin: AIOKafkaAdminClient, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    return len(described["partitions"])


def offset_of(message: Message) -> int:
    return int(message.id.rsplit("/", 1)[1])


def partition_of(message: Message) -> int:
    return int(message.id.split("/")[1])


# -- topics -----------------------------------------------------------------------------


async def test_topics_are_created_explicitly_with_the_asked_partitions(
    open_kafka: OpenKafka, admin: AIOKafkaAdminClient, stream: str
) -> None:
    backend = await open_kafka(partitions=3)
    topic = topic_name(stream)
    assert topic not in await admin.list_topics()
    await backend.ensure_group(stream, "g")
    assert topic in await admin.list_topics()
    # the broker's auto-create would use its own default count, not ours
    assert await partition_count(admin, topic) == 3
    await backend.ensure_group(stream, "g")  # existing topic: fine
    published = f"{stream}-published"
    await backend.publish(published, {"n": 1})
    assert await partition_count(admin, topic_name(published)) == 3


async def test_read_of_a_missing_stream_raises_group_not_found(
    open_kafka: OpenKafka, admin: AIOKafkaAdminClient, stream: str
) -> None:
    backend = await open_kafka()
    with pytest.raises(GroupNotFoundError):
        await backend.read(stream, "g", "c", count=1, block=0.1)
    with pytest.raises(GroupNotFoundError):
        await backend.group_info(stream, "g")
    assert topic_name(stream) not in await admin.list_topics()  # nothing auto-created
    assert await backend.peek(stream, count=5) == []


# -- acks become contiguous commits --------------------------------------------------------


async def test_out_of_order_acks_commit_only_the_contiguous_prefix(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str
) -> None:
    backend = await open_kafka(partitions=1)
    topic, group = topic_name(stream), "g"
    await backend.ensure_group(stream, group)
    await backend.publish_many(stream, [{"n": i} for i in range(6)])
    got = await read_until(backend, stream, group, "c", 6, timeout=TIMEOUT)
    assert [offset_of(m) for m in got] == [0, 1, 2, 3, 4, 5]

    await backend.ack(stream, group, [got[1], got[3]])
    assert await committed(settings, group, topic, 0) in (None, 0)  # offset 0 pending
    await backend.ack(stream, group, [got[0]])
    assert await committed(settings, group, topic, 0) == 2  # 0,1 done; 2 pending
    await backend.ack(stream, group, [got[4], got[2]])
    assert await committed(settings, group, topic, 0) == 5  # 0-4 done; 5 pending
    assert (await backend.group_info(stream, group)).pending == 1
    # unknown ids, other topics and repeated acks are no-ops
    await backend.ack(
        stream,
        group,
        [Message(f"{topic}/0/99", stream, {}), Message("other/0/3", stream, {}), got[1]],
    )
    await backend.ack_event(stream, group, "not-an-id")
    assert await committed(settings, group, topic, 0) == 5
    await backend.ack(stream, group, [got[5], got[3]])
    assert await committed(settings, group, topic, 0) == 6


async def test_redeliver_keeps_the_message_and_holds_the_commit_point(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str
) -> None:
    backend = await open_kafka(partitions=1)
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"n": i} for i in range(3)])
    got = await read_until(backend, stream, "g", "c", 3, timeout=TIMEOUT)
    await backend.ack(stream, "g", got[1:])  # the first one failed
    assert await committed(settings, "g", topic_name(stream), 0) in (None, 0)
    again = await backend.redeliver(stream, "g", "c", got[:1])
    again = await backend.redeliver(stream, "g", "c", again)
    assert [(m.id, m.data, m.delivery_count) for m in again] == [(got[0].id, {"n": 0}, 3)]
    await backend.ack(stream, "g", again)
    assert await committed(settings, "g", topic_name(stream), 0) == 3
    assert await backend.redeliver(stream, "g", "c", again) == []  # acked: gone


async def test_a_partition_held_back_by_a_failing_message_is_paused(
    open_kafka: OpenKafka, stream: str
) -> None:
    backend = await open_kafka(partitions=1, max_uncommitted=5)
    await backend.ensure_group(stream, "g")
    await backend.publish_many(stream, [{"n": i} for i in range(12)])
    first = await read_until(backend, stream, "g", "c", 6, timeout=TIMEOUT)
    assert len(first) == 6
    await backend.ack(stream, "g", first[1:])  # offset 0 keeps failing: span is 6
    assert await backend.read(stream, "g", "c", count=10, block=0.5) == []  # paused
    await backend.ack(stream, "g", first[:1])  # commit point moves: resumed
    rest = await read_until(backend, stream, "g", "c", 6, timeout=TIMEOUT)
    assert [m.data["n"] for m in rest] == list(range(6, 12))


# -- group membership --------------------------------------------------------------------


async def test_rebalance_between_two_members_loses_nothing(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str
) -> None:
    one, two = await open_kafka(partitions=4), await open_kafka(partitions=4)
    group = "g"
    await one.ensure_group(stream, group)
    ids: list[str] = []
    for start in range(0, 40, 10):  # a batch per call, partitions in turn
        ids += await one.publish_many(stream, [{"n": i} for i in range(start, start + 10)])
    assert len({partition_of(Message(i, stream, {})) for i in ids}) == 4
    held = await read_until(one, stream, group, "a", 40, timeout=TIMEOUT)
    assert sorted(m.id for m in held) == sorted(ids)  # all held by "a", none acked
    # "b" joins: the partitions are split and "b" gets the unacked messages of its share
    first_b = await read_until(two, stream, group, "b", 1, timeout=TIMEOUT)
    assert first_b, "the second member got no partition"
    moved = {partition_of(m) for m in first_b}
    assert all(m.id in ids for m in first_b)
    await one.ack(stream, group, held)  # late acks: ignored for partitions that moved
    done: dict[str, set[str]] = {"a": set(), "b": {m.id for m in first_b}}
    await two.ack(stream, group, first_b)
    topic = topic_name(stream)
    counts = [sum(1 for i in ids if partition_of(Message(i, stream, {})) == p) for p in range(4)]
    offsets: list[int] = []
    deadline = time.monotonic() + TIMEOUT
    while offsets != counts and time.monotonic() < deadline:
        for name, backend in (("a", one), ("b", two)):
            got = await backend.read(stream, group, name, count=10, block=0.1)
            await backend.ack(stream, group, got)
            done[name] |= {m.id for m in got}
        offsets = [await committed(settings, group, topic, p) or 0 for p in range(4)]
    # every partition is committed to its end on the broker
    assert offsets == counts
    # "b" got every message of the partitions it took over, though "a" had read them
    taken = {i for i in ids if partition_of(Message(i, stream, {})) in moved}
    assert done["b"] >= taken
    assert not {partition_of(Message(i, stream, {})) for i in done["a"]} & moved
    info = await two.group_info(stream, group)
    assert (info.lag, info.pending) == (0, 0)


_VICTIM = """
import asyncio, os, sys
import conveyor

async def main() -> None:
    backend = await conveyor.connect(os.environ["URL"])
    got = []
    while len(got) < 6:
        got += await backend.read(os.environ["STREAM"], "g", "victim", count=10, block=0.5)
    await backend.ack(os.environ["STREAM"], "g", got[:2])
    print(" ".join(m.id for m in got[:2]), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_killed_member_partitions_are_taken_over(
    open_kafka: OpenKafka, kafka_url: str, stream: str
) -> None:
    backend = await open_kafka(partitions=1)
    await backend.ensure_group(stream, "g")
    ids = await backend.publish_many(stream, [{"n": i} for i in range(6)])
    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _VICTIM,
        env={**os.environ, "URL": kafka_url, "STREAM": stream},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert victim.stdout is not None
        line = await asyncio.wait_for(victim.stdout.readline(), TIMEOUT)
        assert set(line.decode().split()) == set(ids[:2])
    finally:
        victim.send_signal(signal.SIGKILL)  # no leave-group, no final commit
        await victim.wait()
    started = time.monotonic()
    got = await read_until(backend, stream, "g", "heir", 4, timeout=TIMEOUT)
    assert [m.id for m in got] == ids[2:]  # unacked ones, acked ones not again
    assert all(m.delivery_count == 1 for m in got)  # counts restart (emulated)
    assert time.monotonic() - started < TIMEOUT


# -- dead letters and undecodable records --------------------------------------------------


async def test_dead_letter_goes_to_a_topic_before_the_offset_moves(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str
) -> None:
    backend = await open_kafka(partitions=1)
    await backend.ensure_group(stream, "g")
    producer = AIOKafkaProducer(**settings.client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(topic_name(stream), b"not json {")
    finally:
        await producer.stop()
    await backend.publish(stream, {"ok": True})
    got = await read_until(backend, stream, "g", "c", 2, timeout=TIMEOUT)
    broken, fine = got
    assert broken.decode_error is not None
    assert broken.raw == b"not json {"
    assert fine.decode_error is None
    await backend.ack(stream, "g", [fine])
    assert await committed(settings, "g", topic_name(stream), 0) in (None, 0)
    dead_stream = f"{stream}:dead"
    record = {"error": broken.decode_error, "raw": "not json {", "original_id": broken.id}
    dead_id = await backend.dead_letter(
        stream, "g", broken, dead_letter_stream=dead_stream, record=record
    )
    assert dead_id.startswith(topic_name(dead_stream) + "/")
    assert await committed(settings, "g", topic_name(stream), 0) == 2
    reader = AIOKafkaConsumer(
        topic_name(dead_stream), auto_offset_reset="earliest", **settings.client_kwargs()
    )
    await reader.start()
    try:
        batches = await reader.getmany(timeout_ms=5000)
    finally:
        await reader.stop()
    values = [r.value for batch in batches.values() for r in batch]
    assert [conveyor.codec.decode_json(v) for v in values] == [record]


# -- inspection ----------------------------------------------------------------------------


async def test_group_info_and_peek_see_every_record_on_tansu_too(
    open_kafka: OpenKafka, stream: str
) -> None:
    backend = await open_kafka(partitions=1)
    for i in range(4):  # one batch each: Tansu's ListOffsets(latest) would say 4, not 5
        await backend.publish(stream, {"n": i})
    await backend.publish_many(stream, [{"n": 4}, {"n": 5}])
    await backend.ensure_group(stream, "g")
    info = await backend.group_info(stream, "g")
    assert (info.pending, info.lag, info.length) == (0, 6, 6)
    got = await read_until(backend, stream, "g", "c", 4, timeout=TIMEOUT)
    info = await backend.group_info(stream, "g")
    assert (info.pending, info.lag) == (len(got), 6 - len(got))
    assert [c.name for c in info.consumers] == ["c"]
    peeked = await backend.peek(stream, count=3)
    assert [m.data["n"] for m in peeked] == [3, 4, 5]
    await backend.ensure_group(stream, "late", start="latest")
    late = await backend.group_info(stream, "late")
    assert (late.pending, late.lag) == (0, 0)


async def test_unreachable_broker_is_a_typed_error_without_credentials() -> None:
    url = f"kafka://alice:hunter2@127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as info:
        await conveyor.connect(url, request_timeout_ms=2000)
    assert "hunter2" not in str(info.value)
    assert time.monotonic() - started < 30


async def test_backend_repr_and_close(open_kafka: OpenKafka, stream: str) -> None:
    backend = await open_kafka()
    assert "KafkaBackend(" in repr(backend)
    publish_ids = await backend.publish_many(stream, [])
    assert publish_ids == []
    await backend.aclose()
    await backend.aclose()
    assert isinstance(backend, KafkaBackend)


async def test_publish_many_ids_match_what_is_read(open_kafka: OpenKafka, stream: str) -> None:
    backend = await open_kafka(partitions=3)
    await backend.ensure_group(stream, "g")
    ids = await backend.publish_many(stream, [{"n": i, "pad": "x" * 200} for i in range(3000)])
    assert len(set(ids)) == 3000
    assert len({partition_of(Message(i, stream, {})) for i in ids}) == 3  # spread in batches
    got = await read_until(backend, stream, "g", "c", 3000, timeout=TIMEOUT, block=1.0)
    assert {m.id: m.data["n"] for m in got} == {i: n for n, i in enumerate(ids)}
    for partition in range(3):  # per-partition order is publish order
        ns = [m.data["n"] for m in got if partition_of(m) == partition]
        assert ns == sorted(ns)


async def test_undecodable_records_are_returned_not_raised(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str
) -> None:
    backend = await open_kafka(partitions=1)
    await backend.ensure_group(stream, "g")
    producer = AIOKafkaProducer(**settings.client_kwargs())
    await producer.start()
    try:
        for value in (b"[1, 2]", b"\xff\xfe{}", None):
            await producer.send_and_wait(topic_name(stream), value, key=b"k")
    finally:
        await producer.stop()
    got = await read_until(backend, stream, "g", "c", 3, timeout=TIMEOUT)
    errors = [m.decode_error or "" for m in got]
    assert ["JSON" in errors[0], "UTF-8" in errors[1], "tombstone" in errors[2]] == [True] * 3
    assert [m.raw for m in got] == [b"[1, 2]", b"\xff\xfe{}", None]
    assert all(m.data == {} for m in got)


async def test_deleted_topic_surfaces_as_group_not_found_and_recovers(
    open_kafka: OpenKafka, admin: AIOKafkaAdminClient, stream: str
) -> None:
    backend = await open_kafka(partitions=1)
    await backend.ensure_group(stream, "g")
    await backend.publish(stream, {"n": 1})
    assert len(await read_until(backend, stream, "g", "c", 1, timeout=TIMEOUT)) == 1
    await admin.delete_topics([topic_name(stream)])

    async def read_until_error() -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            await backend.read(stream, "g", "c", count=10, block=0.5)

    with pytest.raises(GroupNotFoundError):  # the client alone would wait silently
        await read_until_error()
    await backend.ensure_group(stream, "g")  # what the engine does next
    fresh = await backend.publish(stream, {"n": 2})
    got = await read_until(backend, stream, "g", "c", 1, timeout=TIMEOUT)
    assert [m.id for m in got] == [fresh]


async def test_processor_with_concurrency_and_failures_commits_everything(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str
) -> None:
    backend = await open_kafka(partitions=3)
    ids: list[str] = []
    for start in range(0, 300, 50):  # batches spread over the partitions
        ids += await backend.publish_many(stream, [{"n": i} for i in range(start, start + 50)])
    seen: dict[int, int] = {}
    done = asyncio.Event()

    async def handler(message: Message) -> None:
        n = message.data["n"]
        seen[n] = seen.get(n, 0) + 1
        await asyncio.sleep(0.001 * (n % 7))  # out-of-order completion
        if n % 10 == 0 and message.delivery_count == 1:
            raise RuntimeError("first attempt fails")
        if len(seen) == 300 and all(seen[k] >= 2 for k in seen if k % 10 == 0):
            done.set()

    processor = StreamProcessor(
        backend,
        stream,
        "g",
        "w",
        batch_count=50,
        concurrency=8,
        retry_delay=0.05,
        claim_idle=2.0,
    )
    processor.set_callback(handler)
    async with processor:
        await asyncio.wait_for(done.wait(), TIMEOUT)
    # stop() acks what finished
    assert processor.stats.acked == 300
    assert sorted(seen) == list(range(300))
    assert processor.stats.failed == 30
    assert processor.stats.dead_lettered == 0
    counts = [sum(1 for i in ids if partition_of(Message(i, stream, {})) == p) for p in range(3)]
    topic = topic_name(stream)
    assert [await committed(settings, "g", topic, p) for p in range(3)] == counts
    info = await backend.group_info(stream, "g")
    assert (info.pending, info.lag) == (0, 0)
