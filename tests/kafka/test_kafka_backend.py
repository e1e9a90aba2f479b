"""Kafka-specific behaviour of `KafkaBackend` and `KafkaSession` against a real
Kafka-protocol broker.

Checked with aiokafka directly where the broker's own state is the point (committed
offsets under which group id, topic partition counts, native record headers, dead-letter
records). On Tansu a new group takes about half the session timeout to join (the test URL
sets a short one): tests reuse one session per consumer and give each group its own name.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import conveyor
from conveyor.errors import BackendClosedError, BrokerUnavailableError, GroupNotFoundError
from conveyor.message import Message
from conveyor.options import split_options
from conveyor.processor import StreamProcessor
from conveyor.testing.conformance import read_until
from conveyor_kafka import KafkaBackend, KafkaSession, KafkaSettings, topic_name
from conveyor_kafka.testing import free_port

pytestmark = pytest.mark.slow

OpenKafka = Callable[..., Awaitable[KafkaBackend]]

TIMEOUT = 20.0


@pytest.fixture
def settings(kafka_url: str) -> KafkaSettings:
    base, options = split_options(kafka_url)
    return KafkaSettings.from_url(base, options)


@pytest.fixture
def group() -> str:
    """A fresh group name for one test (a new Kafka group joins fastest on Tansu)."""
    return f"g-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def admin(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(**settings.client_kwargs())
    await client.start()
    yield client
    await client.close()


async def committed(
    settings: KafkaSettings, group_id: str, topic: str, partition: int
) -> int | None:
    """The committed offset of Kafka group `group_id` as the broker reports it."""
    consumer = AIOKafkaConsumer(
        group_id=group_id, enable_auto_commit=False, **settings.client_kwargs()
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


async def produce_raw(
    settings: KafkaSettings,
    topic: str,
    values: list[bytes | None],
    headers: list[tuple[str, bytes | None]] | None = None,
) -> None:
    """Produce records as another Kafka client would (no conveyor validation)."""
    producer = AIOKafkaProducer(**settings.client_kwargs())
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k", headers=headers)
    finally:
        await producer.stop()


async def consume_raw(
    settings: KafkaSettings, topic: str
) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """Every record of a one-partition `topic` as (value, headers), outside any group."""
    reader = AIOKafkaConsumer(
        topic, auto_offset_reset="earliest", fetch_max_wait_ms=10, **settings.client_kwargs()
    )
    await reader.start()
    try:
        batches = await reader.getmany(timeout_ms=5000)
    finally:
        await reader.stop()
    return [(r.value, list(r.headers)) for batch in batches.values() for r in batch]


def offset_of(message: Message | str) -> int:
    ident = message if isinstance(message, str) else message.id
    return int(ident.rsplit("/", 1)[1])


def partition_of(message: Message | str) -> int:
    ident = message if isinstance(message, str) else message.id
    return int(ident.split("/")[1])


async def session_of(
    backend: KafkaBackend, stream: str, group: str, consumer: str = "c", **kw: object
) -> KafkaSession:
    session = await backend.open_consumer(stream, group, consumer, **kw)  # type: ignore[arg-type]
    assert isinstance(session, KafkaSession)
    return session


# -- topics and group ids ------------------------------------------------------------------


async def test_topics_are_created_explicitly_with_the_asked_partitions(
    open_kafka: OpenKafka, admin: AIOKafkaAdminClient, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=3)
    topic = topic_name(stream)
    assert topic not in await admin.list_topics()
    await session_of(backend, stream, group)
    assert topic in await admin.list_topics()
    # the broker's auto-create would use its own default count, not ours
    assert await partition_count(admin, topic) == 3
    await session_of(backend, stream, group, "other")  # existing topic: fine
    published = f"{stream}-published"
    await backend.publish(published, {"n": 1})
    assert await partition_count(admin, topic_name(published)) == 3


async def test_missing_streams_are_not_created_by_inspection_or_reads(
    open_kafka: OpenKafka, admin: AIOKafkaAdminClient, stream: str, group: str
) -> None:
    backend = await open_kafka()
    with pytest.raises(GroupNotFoundError):
        await backend.group_info(stream, group)
    assert await backend.peek(stream, count=5) == []
    assert topic_name(stream) not in await admin.list_topics()  # nothing auto-created
    # a session whose topic is deleted before its first read does not join (nor recreate)
    session = await session_of(backend, stream, group)
    await admin.delete_topics([topic_name(stream)])
    with pytest.raises(GroupNotFoundError):
        await session.read(count=1, block=0.1)
    assert topic_name(stream) not in await admin.list_topics()


async def test_one_group_name_on_two_streams_is_two_kafka_groups(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
) -> None:
    """Kafka groups are global: without the per-stream mapping, stopping the consumer of
    one stream would rebalance the other stream's consumer of the same group name."""
    backend = await open_kafka()
    other = f"{stream}-other"
    ids = {s: settings.group_id(group, s) for s in (stream, other)}
    assert ids == {stream: f"{group}:{topic_name(stream)}", other: f"{group}:{topic_name(other)}"}
    mine, theirs = await session_of(backend, stream, group), await session_of(backend, other, group)
    await backend.publish(stream, {"n": 1})
    await backend.publish(other, {"n": 1})
    held = await read_until(mine, 1, timeout=TIMEOUT)
    done = await read_until(theirs, 1, timeout=TIMEOUT)
    await theirs.ack(done)
    assert await committed(settings, ids[other], topic_name(other), 0) == 1
    await theirs.aclose()
    # a rebalance would take the partition from `mine` and deliver `held` again (as it
    # does with group_ids=as_is): nothing comes back, and the late ack still commits
    later = await backend.publish(stream, {"n": 2})
    got = await read_until(mine, 2, timeout=2.5)
    assert [m.id for m in got] == [later]
    await mine.ack(held + got)
    assert await committed(settings, ids[stream], topic_name(stream), 0) == 2
    assert await committed(settings, group, topic_name(stream), 0) in (None, 0)


async def test_group_ids_as_is_use_the_group_name(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
) -> None:
    backend = await open_kafka(group_ids="as_is")
    assert backend.settings.group_id(group, stream) == group
    session = await session_of(backend, stream, group)
    assert session.group_id == group
    await backend.publish(stream, {"n": 1})
    await session.ack(await read_until(session, 1, timeout=TIMEOUT))
    assert await committed(settings, group, topic_name(stream), 0) == 1
    assert await committed(settings, f"{group}:{topic_name(stream)}", topic_name(stream), 0) in (
        None,
        0,
    )


# -- acks become contiguous commits --------------------------------------------------------


async def test_out_of_order_acks_commit_only_the_contiguous_prefix(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1)
    topic, group_id = topic_name(stream), settings.group_id(group, stream)
    session = await session_of(backend, stream, group)
    await backend.publish_many(stream, [{"n": i} for i in range(6)])
    got = await read_until(session, 6, timeout=TIMEOUT)
    assert [offset_of(m) for m in got] == [0, 1, 2, 3, 4, 5]

    await session.ack([got[1], got[3]])
    assert await committed(settings, group_id, topic, 0) in (None, 0)  # offset 0 pending
    await session.ack([got[0]])
    assert await committed(settings, group_id, topic, 0) == 2  # 0,1 done; 2 pending
    await session.ack([got[4], got[2]])
    assert await committed(settings, group_id, topic, 0) == 5  # 0-4 done; 5 pending
    assert (await backend.group_info(stream, group)).pending == 1
    # unknown ids, other topics and repeated acks are no-ops
    await session.ack(
        [Message(f"{topic}/0/99", stream, {}), Message("other/0/3", stream, {}), got[1]]
    )
    await backend.ack_event(stream, group, "not-an-id")
    assert await committed(settings, group_id, topic, 0) == 5
    # an ack by id (no handle, e.g. from the seed protocol) finds the message too
    await session.ack([Message(got[5].id, stream, {}), got[3]])
    assert await committed(settings, group_id, topic, 0) == 6


async def test_redeliver_keeps_the_message_and_holds_the_commit_point(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1)
    group_id = settings.group_id(group, stream)
    session = await session_of(backend, stream, group)
    await backend.publish_many(
        stream, [{"n": i} for i in range(3)], headers=[{"trace": "t0"}, None, None]
    )
    got = await read_until(session, 3, timeout=TIMEOUT)
    await session.ack(got[1:])  # the first one failed
    assert await committed(settings, group_id, topic_name(stream), 0) in (None, 0)
    again = await session.redeliver(got[:1])
    again = await session.redeliver(again)
    assert [(m.id, m.data, m.delivery_count, m.headers) for m in again] == [
        (got[0].id, {"n": 0}, 3, {"trace": "t0"})
    ]
    await session.ack(again)
    assert await committed(settings, group_id, topic_name(stream), 0) == 3
    assert await session.redeliver(again) == []  # acked: gone


async def test_a_partition_held_back_by_a_failing_message_is_paused(
    open_kafka: OpenKafka, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1, max_uncommitted=5)
    session = await session_of(backend, stream, group)
    await backend.publish_many(stream, [{"n": i} for i in range(12)])
    first = await read_until(session, 6, timeout=TIMEOUT)
    assert len(first) == 6
    await session.ack(first[1:])  # offset 0 keeps failing: span is 6
    assert await session.read(count=10, block=0.5) == []  # paused
    await session.ack(first[:1])  # commit point moves: resumed
    rest = await read_until(session, 6, timeout=TIMEOUT)
    assert [m.data["n"] for m in rest] == list(range(6, 12))


# -- group membership --------------------------------------------------------------------


async def test_rebalance_between_two_members_loses_nothing(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
) -> None:
    one, two = await open_kafka(partitions=4), await open_kafka(partitions=4)
    a = await session_of(one, stream, group, "a")
    ids: list[str] = []
    for start in range(0, 40, 10):  # a batch per call, partitions in turn
        ids += await one.publish_many(stream, [{"n": i} for i in range(start, start + 10)])
    assert len({partition_of(i) for i in ids}) == 4
    held = await read_until(a, 40, timeout=TIMEOUT)
    assert sorted(m.id for m in held) == sorted(ids)  # all held by "a", none acked
    # "b" joins: the partitions are split and "b" gets the unacked messages of its share
    b = await session_of(two, stream, group, "b")
    first_b = await read_until(b, 1, timeout=TIMEOUT)
    assert first_b, "the second member got no partition"
    moved = {partition_of(m) for m in first_b}
    assert all(m.id in ids for m in first_b)
    await a.ack(held)  # late acks: ignored for partitions that moved
    done: dict[str, set[str]] = {"a": set(), "b": {m.id for m in first_b}}
    await b.ack(first_b)
    topic, group_id = topic_name(stream), settings.group_id(group, stream)
    counts = [sum(1 for i in ids if partition_of(i) == p) for p in range(4)]
    offsets: list[int] = []
    deadline = time.monotonic() + TIMEOUT
    while offsets != counts and time.monotonic() < deadline:
        for name, session in (("a", a), ("b", b)):
            got = await session.read(count=10, block=0.1)
            await session.ack(got)
            done[name] |= {m.id for m in got}
        offsets = [await committed(settings, group_id, topic, p) or 0 for p in range(4)]
    # every partition is committed to its end on the broker
    assert offsets == counts
    # "b" got every message of the partitions it took over, though "a" had read them
    taken = {i for i in ids if partition_of(i) in moved}
    assert done["b"] >= taken
    assert not {partition_of(i) for i in done["a"]} & moved
    info = await two.group_info(stream, group)
    assert (info.lag, info.pending) == (0, 0)


async def test_a_closed_session_leaves_its_group_at_once(
    open_kafka: OpenKafka, stream: str, group: str
) -> None:
    """The next member gets the partition as soon as it joins, not after the closed
    member's session timeout. (Tansu numbers a group's first generation 0, from which
    aiokafka does not send LeaveGroup: the backend sends it then.)"""
    backend = await open_kafka(partitions=1)
    first = await session_of(backend, stream, group, "first")
    ids = await backend.publish_many(stream, [{"n": i} for i in range(3)])
    held = await read_until(first, 3, timeout=TIMEOUT)
    await first.ack(held[:1])
    await first.aclose()  # commits the acked prefix, leaves the group
    assert (await backend.group_info(stream, group)).pending == 2  # delivered, unacked
    with pytest.raises(BackendClosedError):
        await first.read(count=1, block=None)
    second = await session_of(backend, stream, group, "second")
    started = time.monotonic()
    got = await read_until(second, 2, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert [m.id for m in got] == ids[1:]
    # sooner than the closed member's session could have expired
    assert elapsed < backend.settings.session_timeout_for(None) / 1000


_VICTIM = """
import asyncio, os, sys
import conveyor

async def main() -> None:
    backend = await conveyor.connect(os.environ["URL"])
    session = await backend.open_consumer(os.environ["STREAM"], os.environ["GROUP"], "victim")
    got = []
    while len(got) < 6:
        got += await session.read(count=10, block=0.5)
    await session.ack(got[:2])
    print(" ".join(m.id for m in got[:2]), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_killed_member_partitions_are_taken_over(
    open_kafka: OpenKafka, kafka_url: str, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1)
    heir = await session_of(backend, stream, group, "heir")
    ids = await backend.publish_many(stream, [{"n": i} for i in range(6)])
    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _VICTIM,
        env={**os.environ, "URL": kafka_url, "STREAM": stream, "GROUP": group},
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
    got = await read_until(heir, 4, timeout=TIMEOUT)
    assert [m.id for m in got] == ids[2:]  # unacked ones, acked ones not again
    assert all(m.delivery_count == 1 for m in got)  # counts restart (emulated)
    assert time.monotonic() - started < TIMEOUT


# -- headers, dead letters and undecodable records ------------------------------------------


async def test_headers_are_native_record_headers(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1)
    session = await session_of(backend, stream, group)
    await backend.publish(stream, {"n": 0}, headers={"traceparent": "tp", "x-note": "日本"})
    await backend.publish(stream, {"n": 1})
    records = await consume_raw(settings, topic_name(stream))
    assert records == [
        (b'{"n":0}', [("traceparent", b"tp"), ("x-note", "日本".encode())]),
        (b'{"n":1}', []),
    ]
    # records of other producers: repeated names (the last wins), nulls, bytes not UTF-8
    await produce_raw(
        settings,
        topic_name(stream),
        [b'{"n": 2}'],
        headers=[("a", b"1"), ("a", b"2"), ("null", None), ("bin", b"\xff")],
    )
    got = await read_until(session, 3, timeout=TIMEOUT)
    assert [m.headers for m in got] == [
        {"traceparent": "tp", "x-note": "日本"},
        {},
        {"a": "2", "null": "", "bin": "\ufffd"},
    ]


async def test_dead_letter_goes_to_a_topic_before_the_offset_moves(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1)
    group_id = settings.group_id(group, stream)
    session = await session_of(backend, stream, group)
    await produce_raw(settings, topic_name(stream), [b"not json {"], headers=[("trace", b"t-9")])
    await backend.publish(stream, {"ok": True})
    got = await read_until(session, 2, timeout=TIMEOUT)
    broken, fine = got
    assert broken.decode_error is not None
    assert broken.raw == b"not json {"
    assert broken.headers == {"trace": "t-9"}
    assert fine.decode_error is None
    await session.ack([fine])
    assert await committed(settings, group_id, topic_name(stream), 0) in (None, 0)
    dead_stream = f"{stream}:dead"
    record = {"error": broken.decode_error, "raw": "not json {", "original_id": broken.id}
    dead_id = await session.dead_letter(broken, dead_letter_stream=dead_stream, record=record)
    assert dead_id.startswith(topic_name(dead_stream) + "/")
    assert await committed(settings, group_id, topic_name(stream), 0) == 2
    records = await consume_raw(settings, topic_name(dead_stream))
    assert [(conveyor.codec.decode_json(v), h) for v, h in records] == [
        (record, [("trace", b"t-9")])
    ]


async def test_undecodable_records_are_returned_not_raised(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1)
    session = await session_of(backend, stream, group)
    await produce_raw(settings, topic_name(stream), [b"[1, 2]", b"\xff\xfe{}", None])
    got = await read_until(session, 3, timeout=TIMEOUT)
    errors = [m.decode_error or "" for m in got]
    assert ["JSON" in errors[0], "UTF-8" in errors[1], "tombstone" in errors[2]] == [True] * 3
    assert [m.raw for m in got] == [b"[1, 2]", b"\xff\xfe{}", None]
    assert all(m.data == {} for m in got)


# -- publishing and inspection ---------------------------------------------------------------


async def test_group_info_and_peek_see_every_record_on_tansu_too(
    open_kafka: OpenKafka, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1)
    for i in range(4):  # one batch each: Tansu's ListOffsets(latest) would say 4, not 5
        await backend.publish(stream, {"n": i})
    await backend.publish_many(stream, [{"n": 4}, {"n": 5}])
    session = await session_of(backend, stream, group)
    info = await backend.group_info(stream, group)
    assert (info.pending, info.lag, info.length) == (0, 6, 6)
    got = await read_until(session, 4, timeout=TIMEOUT)
    info = await backend.group_info(stream, group)
    assert (info.pending, info.lag) == (len(got), 6 - len(got))
    assert [c.name for c in info.consumers] == ["c"]
    peeked = await backend.peek(stream, count=3)
    assert [m.data["n"] for m in peeked] == [3, 4, 5]
    await session_of(backend, stream, f"{group}-late", start="latest")
    late = await backend.group_info(stream, f"{group}-late")
    assert (late.pending, late.lag) == (0, 0)


async def test_concurrent_publishes_share_batches_over_every_partition(
    open_kafka: OpenKafka, stream: str
) -> None:
    """aiokafka queues one batch per partition and times out callers waiting behind it;
    the backend packs concurrent publishes into shared batches instead."""
    backend = await open_kafka(partitions=3)
    singles = [backend.publish(stream, {"n": i}, headers={"i": str(i)}) for i in range(3000)]
    manies = [
        backend.publish_many(stream, [{"m": i, "k": k} for k in range(20)]) for i in range(50)
    ]
    results = await asyncio.gather(*singles, *manies)
    ids = [i for r in results for i in ([r] if isinstance(r, str) else r)]
    assert len(set(ids)) == 4000
    assert {partition_of(i) for i in ids} == {0, 1, 2}
    for many in results[3000:]:  # one publish_many keeps its order in every partition
        assert isinstance(many, list)
        for partition in {partition_of(i) for i in many}:
            offsets = [offset_of(i) for i in many if partition_of(i) == partition]
            assert offsets == sorted(offsets)
    # every id names the record it was returned for, including calls split over batches
    expected: dict[str, tuple[dict[str, int], dict[str, str]]] = {}
    for n, result in enumerate(results):
        if isinstance(result, str):
            expected[result] = ({"n": n}, {"i": str(n)})
        else:
            for k, ident in enumerate(result):
                expected[ident] = ({"m": n - 3000, "k": k}, {})
    stored = {m.id: (m.data, m.headers) for m in await backend.peek(stream, count=4000)}
    assert stored == expected


async def test_publish_many_ids_match_what_is_read(
    open_kafka: OpenKafka, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=3)
    session = await session_of(backend, stream, group)
    ids = await backend.publish_many(stream, [{"n": i, "pad": "x" * 200} for i in range(3000)])
    assert len(set(ids)) == 3000
    assert len({partition_of(i) for i in ids}) == 3  # spread in batches
    got = await read_until(session, 3000, timeout=TIMEOUT, block=1.0)
    assert {m.id: m.data["n"] for m in got} == {i: n for n, i in enumerate(ids)}
    for partition in range(3):  # per-partition order is publish order
        ns = [m.data["n"] for m in got if partition_of(m) == partition]
        assert ns == sorted(ns)


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
    assert await backend.publish_many(stream, []) == []
    session = await session_of(backend, stream, "g")
    assert "KafkaSession" in repr(session)
    assert "closed" not in repr(session)
    await backend.aclose()
    await backend.aclose()
    assert session.closed
    with pytest.raises(BackendClosedError):
        await backend.publish(stream, {"n": 1})


async def test_deleted_topic_surfaces_as_group_not_found_and_recovers(
    open_kafka: OpenKafka, admin: AIOKafkaAdminClient, stream: str, group: str
) -> None:
    backend = await open_kafka(partitions=1)
    session = await session_of(backend, stream, group)
    await backend.publish(stream, {"n": 1})
    assert len(await read_until(session, 1, timeout=TIMEOUT)) == 1
    await admin.delete_topics([topic_name(stream)])

    async def read_until_error() -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            await session.read(count=10, block=0.5)

    with pytest.raises(GroupNotFoundError):  # the client alone would wait silently
        await read_until_error()
    again = await session_of(backend, stream, group)  # what the engine does next
    await session.aclose()
    fresh = await backend.publish(stream, {"n": 2})
    got = await read_until(again, 1, timeout=TIMEOUT)
    assert [m.id for m in got] == [fresh]


async def test_processor_with_concurrency_and_failures_commits_everything(
    open_kafka: OpenKafka, settings: KafkaSettings, stream: str, group: str
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
        group,
        "w",
        batch_count=50,
        concurrency=8,
        retry_delay=0.05,
        claim_idle=2.0,
    )
    processor.set_callback(handler)
    async with processor:
        await asyncio.wait_for(done.wait(), TIMEOUT)
    # stop() acks what finished, then closes the session (which commits and leaves)
    assert processor.stats.acked == 300
    assert sorted(seen) == list(range(300))
    assert processor.stats.failed == 30
    assert processor.stats.dead_lettered == 0
    counts = [sum(1 for i in ids if partition_of(i) == p) for p in range(3)]
    topic, group_id = topic_name(stream), settings.group_id(group, stream)
    assert [await committed(settings, group_id, topic, p) for p in range(3)] == counts
    info = await backend.group_info(stream, group)
    assert (info.pending, info.lag) == (0, 0)
