"""NATS JetStream throughput: a raw nats-py loop vs conveyor's NATS backend, same run.

Usage::

    python benchmarks/nats_backend.py [--url nats://127.0.0.1:4222] [--messages 50000]

A backlog of ~256-byte JSON payloads is published once per round with
``NatsBackend.publish_many`` (``publish_async`` + gathered PubAcks; timed, and compared with
one awaited ``js.publish`` per message on a smaller sample). Then each consumer loop reads
the whole backlog through its own new durable consumer:

* ``raw nats-py``: ``PullSubscription.fetch(100)``, ``json.loads`` each message, a handler
  call, ``msg.ack()`` per message (a publish; no reply awaited);
* ``backend``: ``backend.read(count=100)``, a handler call per message,
  ``backend.ack(batch)`` (fire-and-forget acks; with ``ack_confirm`` the last of each batch
  waits for the server's reply);
* ``backend, ack_confirm=false``: the same with every ack fire-and-forget.

Then the publish-to-handler latency at 200 msg/s with a blocking ``read(block=1.0)``
(the publish is awaited, so it includes the PubAck round trip's start).

Each variant runs `--rounds` times on a fresh backlog; the best round is reported. The
benchmark's streams are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from nats.js import api

import nats
from conveyor_nats import NatsBackend, open_backend

BATCH = 100


def handler(payload: dict[str, Any]) -> None:
    """The no-op handler every loop calls once per message."""


def payload(i: int) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "bench.event", "n": i, "user": f"user-{i % 977}", "ok": True}
    pad = 256 - len(json.dumps(body)) - len(', "pad": ""')
    body["pad"] = "x" * max(0, pad)
    return body


async def publish_backlog(backend: NatsBackend, stream: str, total: int) -> float:
    started = time.perf_counter()
    for start in range(0, total, 5000):
        chunk = [payload(i) for i in range(start, min(total, start + 5000))]
        await backend.publish_many(stream, chunk)
    return total / (time.perf_counter() - started)


async def publish_awaited(url: str, backend: NatsBackend, stream: str, total: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await backend.ensure_group(stream, "unused")  # creates the stream
    subject = backend.subject(stream)
    bodies = [json.dumps(payload(i)).encode() for i in range(total)]
    started = time.perf_counter()
    for body in bodies:
        await js.publish(subject, body)
    rate = total / (time.perf_counter() - started)
    await nc.close()
    return rate


async def raw_loop(url: str, backend: NatsBackend, stream: str, total: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name, durable = backend.stream_name(stream), f"raw-{uuid.uuid4().hex[:8]}"
    await js.add_consumer(
        name,
        api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=60,
            filter_subject=backend.subject(stream),
            max_ack_pending=backend.settings.max_ack_pending,
        ),
    )
    sub = await js.pull_subscribe_bind(durable, stream=name)
    seen = 0
    started = time.perf_counter()
    while seen < total:
        try:
            msgs = await sub.fetch(BATCH, timeout=1.0)
        except nats.errors.TimeoutError:
            continue
        for msg in msgs:
            handler(json.loads(msg.data))
            await msg.ack()
        seen += len(msgs)
    await nc.flush()
    rate = total / (time.perf_counter() - started)
    await nc.close()
    return rate


async def backend_loop(backend: NatsBackend, stream: str, total: int) -> float:
    group = f"conveyor-{uuid.uuid4().hex[:8]}"
    await backend.ensure_group(stream, group, claim_idle=60.0)
    seen = 0
    started = time.perf_counter()
    while seen < total:
        batch = await backend.read(stream, group, "bench", count=BATCH, block=1.0)
        for message in batch:
            handler(message.data)
        await backend.ack(stream, group, batch)
        seen += len(batch)
    rate = total / (time.perf_counter() - started)
    if backend.settings.ack_confirm:  # confirmed acks are applied once ack() returned
        info = await backend.group_info(stream, group)
        assert info.pending == 0, info
    return rate


async def latency(backend: NatsBackend, stream: str, rate: float, total: int) -> list[float]:
    """Publish `total` messages at `rate`/s while a read(block=1) loop receives them;
    return publish-to-read latencies in seconds."""
    group = "latency"
    await backend.ensure_group(stream, group, start="latest", claim_idle=60.0)
    await backend.read(stream, group, "lat", count=1, block=0.05)  # opens the reader
    sent: dict[int, float] = {}
    seen: list[float] = []

    async def produce() -> None:
        for n in range(total):
            sent[n] = time.perf_counter()
            await backend.publish(stream, {"n": n})
            await asyncio.sleep(1 / rate)

    producer = asyncio.ensure_future(produce())
    while len(seen) < total:
        batch = await backend.read(stream, group, "lat", count=100, block=1.0)
        now = time.perf_counter()
        seen += [now - sent[m.data["n"]] for m in batch]
        await backend.ack(stream, group, batch)
    await producer
    return sorted(seen)


async def delete_streams(url: str, prefix: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(prefix):
            await js.delete_stream(info.config.name)
    await nc.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    total = args.messages
    prefix = f"BENCH{uuid.uuid4().hex[:6]}_"
    publisher = await open_backend(args.url, {"stream_prefix": prefix})
    confirmed = await open_backend(args.url, {"stream_prefix": prefix})
    unconfirmed = await open_backend(args.url, {"stream_prefix": prefix, "ack_confirm": "false"})
    best: dict[str, float] = {}
    publish_rates: list[float] = []
    try:
        awaited = await publish_awaited(args.url, publisher, "bench:awaited", min(total, 5000))
        for round_no in range(args.rounds):
            stream = f"bench:events-{round_no}"
            publish_rates.append(await publish_backlog(publisher, stream, total))
            loops: list[tuple[str, Awaitable[float]]] = [
                (
                    "raw nats-py (fetch 100, ack() each)",
                    raw_loop(args.url, publisher, stream, total),
                ),
                ("backend read(100) + ack(batch)", backend_loop(confirmed, stream, total)),
                ("backend, ack_confirm=false", backend_loop(unconfirmed, stream, total)),
            ]
            for label, loop in loops:
                best[label] = max(best.get(label, 0.0), await loop)
        lat = await latency(confirmed, "bench:latency", 200.0, 1000)
    finally:
        for backend in (publisher, confirmed, unconfirmed):
            await backend.aclose()
        await delete_streams(args.url, prefix)
    print(f"{total} messages of ~256 B, best of {args.rounds} rounds, {args.url}")
    print(f"  publish: publish_many (async + gathered acks) {max(publish_rates):>9,.0f} msg/s")
    print(f"  publish: js.publish awaited one by one        {awaited:>9,.0f} msg/s")
    for label, rate in best.items():
        print(f"  consume: {label:<38} {rate:>9,.0f} msg/s")
    p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
    print(f"  latency at 200 msg/s, read(block=1): p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
