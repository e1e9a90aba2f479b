"""FastStream's equivalent subscribers: a per-message handler (acked after it returns) and
its batch handler, on each broker (installed only as a benchmark dependency).

Each backlog is written in FastStream's own wire format (Redis: its binary envelope in
``__data__``; NATS and Kafka: JSON with a ``content-type`` header) by a raw pipelined
producer, outside the clock. FastStream's per-message logging is turned off
(``logger=None``): conveyor logs nothing per message either. `middlewares` go to the
broker (its Prometheus or OpenTelemetry middleware: `benchmarks.observed`), `headers`
into every backlog message. Checked afterwards: N handled, nothing pending or
uncommitted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from benchmarks.common import BATCH, BenchResult, Tally, body, make_payload, result, settle
from benchmarks.raw_nats import consumer_settled, create_stream
from benchmarks.raw_redis import group_settled
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.parser.binary import BinaryMessageFormatV1
from redis.asyncio import Redis

import nats
from conveyor_kafka import KafkaSettings

__all__ = ["consume_kafka", "consume_nats", "consume_redis"]

_JSON_HEADER = "application/json"
#: Broker options: no per-message log lines (FastStream's stubs type `logger` too narrowly).
_QUIET: dict[str, Any] = {"logger": None}
_TIMEOUT = 900.0


def _name(batch: bool) -> str:
    return "FastStream batch handler" if batch else "FastStream per-message handler"


async def consume_redis(
    url: str,
    key: str,
    n: int,
    *,
    batch: bool,
    middlewares: Sequence[Any] = (),
    headers: dict[str, str] | None = None,
    row: str = "",
    payload_type: type | None = None,
) -> BenchResult:
    """A consumer-group stream subscriber (``max_records=100``) over an `n`-entry backlog
    (`payload_type`: the per-message handler's parameter is annotated with it)."""
    client = Redis.from_url(url)
    try:
        for first in range(0, n, 1000):
            pipe = client.pipeline(transaction=False)
            for index in range(first, min(n, first + 1000)):
                envelope = await BinaryMessageFormatV1.encode(
                    message=make_payload(index),
                    reply_to=None,
                    headers=headers,
                    correlation_id=uuid.uuid4().hex,
                )
                pipe.xadd(key, {"__data__": envelope})
            await pipe.execute()
        # FastStream creates a new group at "$" (new entries only): create it at the start
        await client.xgroup_create(key, "fs", id="0")
        broker = RedisBroker(url, middlewares=middlewares, **_QUIET)
        tally = Tally(n)

        async def handle_batch(messages: list[dict[str, Any]]) -> None:
            tally.hit(len(messages))

        async def handle(payload: dict[str, Any]) -> None:
            tally.hit()

        if payload_type is not None:
            handle.__annotations__["payload"] = payload_type

        # called, not used as decorators: without the bench group installed mypy sees Any
        if batch:
            sub = StreamSub(key, group="fs", consumer="c", batch=True, max_records=BATCH)
            broker.subscriber(stream=sub, ack_policy=AckPolicy.ACK)(handle_batch)
        else:
            one = StreamSub(key, group="fs", consumer="c", max_records=BATCH)
            broker.subscriber(stream=one, ack_policy=AckPolicy.ACK)(handle)

        await broker.start()
        try:
            await asyncio.wait_for(tally.done.wait(), _TIMEOUT)
            ok = await settle(lambda: group_settled(client, key, "fs"))
            seconds = tally.elapsed()
        finally:
            await broker.stop()
        return result(row or _name(batch), "redis", tally, seconds, ok)
    finally:
        await client.aclose()


async def consume_nats(
    url: str,
    name: str,
    subject: str,
    n: int,
    *,
    batch: bool,
    middlewares: Sequence[Any] = (),
    headers: dict[str, str] | None = None,
    row: str = "",
) -> BenchResult:
    """A durable pull subscriber (``batch_size=100``) over an `n`-message stream."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        await create_stream(js, name, subject)
        sent = {"content-type": _JSON_HEADER, **(headers or {})}
        for first in range(0, n, 500):
            futures = [
                await js.publish_async(subject, body(index), headers=sent)
                for index in range(first, min(n, first + 500))
            ]
            await asyncio.gather(*futures)
        broker = NatsBroker(url, middlewares=middlewares, **_QUIET)
        tally = Tally(n)
        stream = JStream(name, declare=False)

        async def handle_batch(messages: list[dict[str, Any]]) -> None:
            tally.hit(len(messages))

        async def handle(payload: dict[str, Any]) -> None:
            tally.hit()

        pull = PullSub(batch_size=BATCH, timeout=1.0, batch=batch)
        subscriber = broker.subscriber(
            subject, stream=stream, durable="fs", pull_sub=pull, ack_policy=AckPolicy.ACK
        )
        subscriber(handle_batch if batch else handle)
        await broker.start()
        try:
            await asyncio.wait_for(tally.done.wait(), _TIMEOUT)
            ok = await settle(lambda: consumer_settled(js, name, "fs"), timeout=10.0)
            seconds = tally.elapsed()
        finally:
            await broker.stop()
        return result(row or _name(batch), "nats", tally, seconds, ok)
    finally:
        await nc.close()


async def consume_kafka(
    settings: KafkaSettings,
    topic: str,
    n: int,
    *,
    batch: bool,
    middlewares: Sequence[Any] = (),
    headers: dict[str, str] | None = None,
    row: str = "",
) -> BenchResult:
    """A group subscriber (``max_records=100``, ack after the handler) over `n` records."""
    producer = AIOKafkaProducer(enable_idempotence=settings.idempotent, **settings.client_kwargs())
    await producer.start()
    try:
        sent = [("content-type", _JSON_HEADER.encode())]
        sent += [(k, v.encode()) for k, v in (headers or {}).items()]
        for first in range(0, n, 500):
            for index in range(first, min(n, first + 500)):
                await producer.send(topic, body(index), headers=sent)
            await producer.flush()
    finally:
        await producer.stop()
    group = f"fs-{uuid.uuid4().hex[:8]}"
    probe = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **settings.client_kwargs())
    await probe.start()
    partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]

    async def committed() -> bool:
        offsets = [await probe.committed(tp) or 0 for tp in partitions]
        return sum(offsets) == n

    broker = KafkaBroker(
        settings.client_kwargs()["bootstrap_servers"], middlewares=middlewares, **_QUIET
    )
    session = settings.session_timeout_for(None)
    options: dict[str, Any] = {
        "group_id": group,
        "auto_offset_reset": "earliest",
        "max_records": BATCH,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "session_timeout_ms": session,
        "heartbeat_interval_ms": settings.heartbeat_for(session),
        "ack_policy": AckPolicy.ACK,
    }
    tally = Tally(n)

    async def handle_batch(messages: list[dict[str, Any]]) -> None:
        tally.hit(len(messages))

    async def handle(payload: dict[str, Any]) -> None:
        tally.hit()

    if batch:
        broker.subscriber(topic, batch=True, **options)(handle_batch)
    else:
        broker.subscriber(topic, **options)(handle)

    try:
        await broker.start()
        await asyncio.wait_for(tally.done.wait(), _TIMEOUT)
        ok = await settle(committed, timeout=10.0)
        seconds = tally.elapsed()
    finally:
        await broker.stop()
        await probe.stop()
    return result(row or _name(batch), "kafka", tally, seconds, ok)
