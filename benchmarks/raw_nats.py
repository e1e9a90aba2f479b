"""The raw nats-py JetStream baseline, with no framework.

* publish: ``js.publish_async`` for 500 messages, then their PubAcks gathered;
* consume: a durable pull consumer, ``fetch(100)``, ``json.loads``, an awaited no-op
  handler and ``msg.ack()`` (no reply awaited) per message; the clock stops after a
  final ``flush`` round trip.

Checked afterwards: the stream holds N messages; N were handled and the consumer has
nothing pending and nothing left to deliver.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats.errors
from benchmarks.common import BATCH, BenchResult, Tally, body, result, settle
from nats.aio.client import Client
from nats.js import JetStreamContext, api

__all__ = ["consume", "consumer_settled", "create_stream", "handler", "publish"]

#: Most messages delivered and not yet acked per consumer (JetStream's default too).
MAX_ACK_PENDING = 1000


async def handler(payload: dict[str, Any]) -> None:
    """The no-op handler every NATS variant awaits once per message."""


async def create_stream(js: JetStreamContext, name: str, subject: str) -> None:
    """A file-backed stream, as conveyor creates them."""
    await js.add_stream(api.StreamConfig(name=name, subjects=[subject]))


async def consumer_settled(js: JetStreamContext, name: str, durable: str) -> bool:
    """True when `durable` has nothing unacknowledged and nothing left to deliver."""
    info = await js.consumer_info(name, durable)
    return not info.num_ack_pending and not info.num_pending


async def publish(js: JetStreamContext, name: str, subject: str, n: int) -> BenchResult:
    """Publish `n` messages, 500 ``publish_async`` then their acks gathered, per chunk."""
    started = time.perf_counter()
    for first in range(0, n, 500):
        futures = [
            await js.publish_async(subject, body(index))
            for index in range(first, min(n, first + 500))
        ]
        await asyncio.gather(*futures)
    seconds = time.perf_counter() - started
    info = await js.stream_info(name)
    return BenchResult(
        "raw publish_async x500 + gathered acks",
        "nats",
        n,
        seconds,
        rate=n / seconds,
        verified=info.state.messages == n,
    )


async def consume(nc: Client, js: JetStreamContext, name: str, subject: str, n: int) -> BenchResult:
    """Drain the `n`-message stream `name` with the raw loop (the baseline)."""
    durable = "raw"
    await js.add_consumer(
        name,
        api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=60,
            filter_subject=subject,
            max_ack_pending=MAX_ACK_PENDING,
        ),
    )
    sub = await js.pull_subscribe_bind(durable, stream=name)
    tally = Tally(n)
    loads = json.loads
    while tally.count < n:
        try:
            msgs = await sub.fetch(BATCH, timeout=1.0)
        except nats.errors.TimeoutError:
            continue
        if not tally.count:
            tally.hit(0)
        for msg in msgs:
            await handler(loads(msg.data))
            await msg.ack()
        tally.hit(len(msgs))
    await nc.flush()
    seconds = tally.elapsed()
    await sub.unsubscribe()
    ok = await settle(lambda: consumer_settled(js, name, durable), timeout=10.0)
    return result("raw nats-py loop", "nats", tally, seconds, ok)
