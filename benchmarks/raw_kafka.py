"""The raw aiokafka baseline, with no framework.

* publish: ``send()`` 500 records, then ``flush()``, per chunk;
* consume: a group member, ``getmany(max_records=100)``, ``json.loads``, an awaited
  no-op handler per record, one explicit ``commit({tp: offset})`` per batch.

Checked afterwards: N records were handled and the group's committed offsets reach the
last record of every partition.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from benchmarks.common import BATCH, BenchResult, Tally, body, result

from conveyor_kafka import KafkaSettings

__all__ = ["consume", "create_topic", "handler", "publish"]


async def handler(payload: dict[str, Any]) -> None:
    """The no-op handler every Kafka variant awaits once per record."""


async def create_topic(settings: KafkaSettings, topic: str) -> None:
    """A one-partition topic, as conveyor creates them by default."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.partitions, 1)])
    finally:
        await admin.close()


async def publish(settings: KafkaSettings, topic: str, n: int) -> BenchResult:
    """Produce `n` records: ``send()`` 500, then ``flush()``, per chunk."""
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=settings.idempotent, **settings.client_kwargs()
    )
    await producer.start()
    try:
        started = time.perf_counter()
        for first in range(0, n, 500):
            for index in range(first, min(n, first + 500)):
                await producer.send(topic, body(index))
            await producer.flush()
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    return BenchResult(
        "raw send x500 + flush", "kafka", n, seconds, rate=n / seconds, verified=True
    )


async def consume(settings: KafkaSettings, topic: str, group: str, n: int) -> BenchResult:
    """Drain the `n`-record topic with the raw loop (the baseline)."""
    consumer = AIOKafkaConsumer(
        topic,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_for(None),
        heartbeat_interval_ms=settings.heartbeat_for(settings.session_timeout_for(None)),
        **settings.client_kwargs(),
    )
    await consumer.start()
    tally = Tally(n)
    loads = json.loads
    done: dict[TopicPartition, int] = {}
    try:
        while tally.count < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            if not batches:
                continue
            if not tally.count:
                tally.hit(0)
            offsets: dict[TopicPartition, int] = {}
            for tp, records in batches.items():
                for record in records:
                    await handler(loads(record.value))
                tally.hit(len(records))
                offsets[tp] = records[-1].offset + 1
            await consumer.commit(offsets)
            done.update(offsets)
        seconds = tally.elapsed()
        committed = {tp: await consumer.committed(tp) for tp in done}
    finally:
        await consumer.stop()
    ok = committed == done and sum(done.values()) == n
    return result("raw aiokafka loop", "kafka", tally, seconds, ok)
