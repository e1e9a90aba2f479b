"""Publishing the way applications do: many tasks, each awaiting one publish at a time.

* conveyor: `CALLERS` tasks each ``await backend.publish(stream, payload)`` in turn until
  N payloads are published (the backend gathers the concurrent calls into batches);
* FastStream: the same `CALLERS` tasks each ``await broker.publish(...)`` (Redis: to a
  stream; NATS: JetStream, waiting for the PubAck; Kafka: waiting for the broker's ack).

The raw clients' pipelined/batched publish (``raw_*.publish``) is the baseline. Checked
afterwards: conveyor's ids are N distinct ones and a consumer group reads exactly N;
FastStream's stream (Redis ``XLEN``, JetStream message count, Kafka records read back)
holds exactly N.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from benchmarks.common import BenchResult, make_payload
from benchmarks.raw_nats import create_stream
from faststream.kafka import KafkaBroker
from faststream.nats import NatsBroker
from faststream.redis import RedisBroker
from redis.asyncio import Redis

import nats
from conveyor.protocol import StreamBackend
from conveyor_kafka import KafkaSettings

__all__ = [
    "CALLERS",
    "conveyor_concurrent",
    "faststream_kafka",
    "faststream_nats",
    "faststream_redis",
]

#: Concurrent publishing tasks.
CALLERS = 1000
_QUIET: dict[str, Any] = {"logger": None}

CONVEYOR_ROW = f"publish() x{CALLERS:,} concurrent callers"
FASTSTREAM_ROW = f"FastStream broker.publish x{CALLERS:,} concurrent tasks"


async def _callers(n: int, publish: Any) -> float:
    """Run `CALLERS` tasks that each publish payloads ``k, k + CALLERS, ...`` in turn."""
    payloads = [make_payload(i) for i in range(n)]

    async def caller(k: int) -> None:
        for index in range(k, n, CALLERS):
            await publish(payloads[index])

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(min(CALLERS, n))))
    return time.perf_counter() - started


async def conveyor_concurrent(backend: StreamBackend, label: str, n: int) -> BenchResult:
    """conveyor's row: every id distinct, and a group reads back exactly `n` messages."""
    stream = f"bench.concurrent.{uuid.uuid4().hex[:8]}"
    ids: list[str] = []

    async def publish(payload: dict[str, Any]) -> None:
        ids.append(await backend.publish(stream, payload))

    seconds = await _callers(n, publish)
    seen = 0
    deadline = time.monotonic() + 120
    async with backend.open_consumer(stream, "verify", "v") as session:
        while seen < n and time.monotonic() < deadline:
            got = await session.read(count=1000, block=0.5)
            seen += len(got)
            await session.ack(got)
    ok = seen == n and len(set(ids)) == n
    return BenchResult(
        CONVEYOR_ROW, label, n, seconds, rate=n / seconds, verified=ok, notes={"callers": CALLERS}
    )


def _failed(label: str, n: int, exc: BaseException) -> BenchResult:
    text = f"{type(exc).__name__}: {exc}"[:200]
    return BenchResult(FASTSTREAM_ROW, label, n, 0.0, verified=False, notes={"error": text})


async def faststream_redis(url: str, key: str, n: int) -> BenchResult:
    """FastStream's RedisBroker, ``publish(payload, stream=key)`` from `CALLERS` tasks."""
    broker = RedisBroker(url, **_QUIET)
    await broker.connect()
    client = Redis.from_url(url)
    try:
        try:
            seconds = await _callers(n, lambda payload: broker.publish(payload, stream=key))
        except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
            return _failed("redis", n, exc)
        length = await client.xlen(key)
    finally:
        await broker.stop()
        await client.aclose()
    return BenchResult(FASTSTREAM_ROW, "redis", n, seconds, rate=n / seconds, verified=length == n)


async def faststream_nats(url: str, name: str, subject: str, n: int) -> BenchResult:
    """FastStream's NatsBroker, JetStream ``publish(payload, subject, stream=name)``
    (waits for each PubAck) from `CALLERS` tasks."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    broker = NatsBroker(url, **_QUIET)
    try:
        await create_stream(js, name, subject)
        await broker.connect()
        try:
            seconds = await _callers(
                n, lambda payload: broker.publish(payload, subject, stream=name)
            )
        except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
            return _failed("nats", n, exc)
        stored = (await js.stream_info(name)).state.messages
    finally:
        await broker.stop()
        await nc.close()
    return BenchResult(FASTSTREAM_ROW, "nats", n, seconds, rate=n / seconds, verified=stored == n)


async def faststream_kafka(settings: KafkaSettings, topic: str, n: int) -> BenchResult:
    """FastStream's KafkaBroker, ``publish(payload, topic)`` (waits for the broker's ack)
    from `CALLERS` tasks; the records are read back and counted."""
    servers = settings.client_kwargs()["bootstrap_servers"]
    broker = KafkaBroker(servers, **_QUIET)
    await broker.connect()
    try:
        try:
            seconds = await _callers(n, lambda payload: broker.publish(payload, topic))
        except Exception as exc:  # noqa: BLE001 - a failing peer is a result, not a crash
            return _failed("kafka", n, exc)
    finally:
        await broker.stop()
    stored = await _count_records(settings, topic, n)
    return BenchResult(FASTSTREAM_ROW, "kafka", n, seconds, rate=n / seconds, verified=stored == n)


async def _count_records(settings: KafkaSettings, topic: str, n: int) -> int:
    """Records in `topic`, read from the start (Tansu's end offsets cannot be trusted)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.client_kwargs())
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        idle_until = time.monotonic() + 5.0
        while time.monotonic() < idle_until:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            got = sum(len(records) for records in batches.values())
            if got:
                seen += got
                idle_until = time.monotonic() + (0.5 if seen >= n else 5.0)
        return seen
    finally:
        await consumer.stop()
