"""StreamConsumer: the old module's class over the caller's own client, driving StreamProcessor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from conveyor import StreamProcessor, StreamStorageProtocol
from conveyor.codec import encode_fields
from conveyor.errors import GroupNotFoundError, WrongTypeError
from conveyor.options import split_options
from conveyor_redis import StreamConsumer, open_backend


@pytest.fixture(params=["bytes-resp2", "str-resp3"])
async def client(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str, raw: Redis
) -> AsyncIterator[Redis]:
    """The caller's own client, configured as users do (bytes or str replies, RESP2/3)."""
    base, _ = split_options(redis_url)
    if request.param == "bytes-resp2":
        own = Redis.from_url(base, protocol=2)
    else:
        own = Redis.from_url(base, decode_responses=True, protocol=3)
    yield own
    await own.aclose()


@pytest.fixture
def name(key_prefix: str) -> str:
    return f"{key_prefix}legacy:{uuid.uuid4().hex[:8]}"


async def test_three_methods(client: Redis, raw: Redis, name: str) -> None:
    consumer = StreamConsumer(client, name, "g", "c")
    assert isinstance(consumer, StreamStorageProtocol)
    await raw.xadd(
        name,
        encode_fields(  # type: ignore[arg-type]
            {"type": "before", "n": 1}
        ),
    )
    await consumer.create_group(name, "g")
    await consumer.create_group(name, "g")  # idempotent
    await raw.xadd(name, {"type": "plain", "n": "2"})
    events = await consumer.read_events(name, "g", "c", 10)
    assert [data for _, data in events] == [{"type": "before", "n": 1}, {"type": "plain", "n": "2"}]
    assert all(isinstance(event_id, str) for event_id, _ in events)
    assert await consumer.read_events(name, "g", "c", 10) == []  # ">" only, no blocking
    for event_id, _ in events:
        await consumer.ack_event(name, "g", event_id)
    await consumer.ack_event(name, "g", events[0][0])  # again: no-op
    assert (await raw.xpending(name, "g"))["pending"] == 0
    published = await consumer.publish(name, {"n": 3, "tags": ["a"]})
    assert await raw.xrange(name, published, published) == [
        (published, {"n": "json:3", "tags": 'json:["a"]'})
    ]


async def test_errors_are_typed(client: Redis, raw: Redis, name: str) -> None:
    consumer = StreamConsumer(client, name, "g", "c")
    with pytest.raises(GroupNotFoundError):
        await consumer.read_events(name, "g", "c", 10)
    await raw.set(name, "x")
    with pytest.raises(WrongTypeError):
        await consumer.create_group(name, "g")


async def test_undecodable_entry_is_skipped_not_fatal(client: Redis, raw: Redis, name: str) -> None:
    consumer = StreamConsumer(client, name, "g", "c")
    await consumer.create_group(name, "g")
    await raw.xadd(name, {"bad": "json:{"})
    await raw.xadd(name, {"good": "1"})
    events = await consumer.read_events(name, "g", "c", 10)
    assert [data for _, data in events] == [{"good": "1"}]


async def test_entries_with_headers_read_without_the_headers_field(
    client: Redis, raw: Redis, name: str, key_prefix: str, redis_url: str
) -> None:
    """A conveyor producer's headers are not part of the payload the seed protocol returns
    (readers of the old module itself would see one more field, ``conveyor.headers``)."""
    base, query = split_options(redis_url)
    producer = await open_backend(base, query)  # keys unprefixed, as StreamConsumer's
    try:
        await producer.publish(name, {"n": 1}, headers={"traceparent": "t-1"})
        await producer.publish(name, {"n": 2})
    finally:
        await producer.aclose()
    consumer = StreamConsumer(client, name, "g", "c")
    await consumer.create_group(name, "g")
    events = await consumer.read_events(name, "g", "c", 10)
    assert [data for _, data in events] == [{"n": 1}, {"n": 2}]


async def test_drives_stream_processor_as_before(client: Redis, raw: Redis, name: str) -> None:
    storage = StreamConsumer(client, name, "workers", "w1")
    seen: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        seen.append(payload)
        if len(seen) == 3:
            done.set()

    processor = StreamProcessor(storage, name, "workers", "w1", batch_count=10, poll_interval=0.05)
    processor.set_callback(handler)
    await processor.start()
    try:
        assert processor.is_running
        for i in range(3):
            await raw.xadd(
                name,
                encode_fields(  # type: ignore[arg-type]
                    {"type": "order.paid", "order_id": i}
                ),
            )
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await processor.stop()
    assert not processor.is_running
    assert [p["order_id"] for p in seen] == [0, 1, 2]
    assert (await raw.xpending(name, "workers"))["pending"] == 0
