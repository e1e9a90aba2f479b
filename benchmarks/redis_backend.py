"""Redis read/ack throughput: a hand-written redis-py loop vs conveyor's Redis backend.

    python benchmarks/redis_backend.py [--url redis://127.0.0.1:6379/0] [--messages 50000]

Same run, same server, a backlog of ~256-byte payloads per variant:

* ``raw redis-py``: ``XREADGROUP COUNT 100`` with redis-py's reply parsing, ``json.loads``
  of one ``data`` field, a handler call per message, one multi-id ``XACK`` per batch.
* ``backend (fields)``: `RedisBackend.read(count=100)` + handler + `ack(batch)` on entries
  written by `publish_many` in the default field format (``json:``-prefixed values).
* ``backend (json)``: the same with ``payload_format=json`` (one JSON field).

Variants run interleaved, `--rounds` times each on a fresh backlog; the best round of each
is reported (the machine's load varies between rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from conveyor.options import split_options
from conveyor_redis import open_backend

PREFIX = f"conveyor-bench-{uuid.uuid4().hex[:6]}:"
BATCH = 100


def payload(i: int) -> dict[str, Any]:
    return {
        "type": "order.paid",
        "order_id": i,
        "customer": f"customer-{i % 977:04d}",
        "amount": round(i * 0.37, 2),
        "currency": "EUR",
        "paid": True,
        "items": [{"sku": f"sku-{i % 31}", "qty": 2}, {"sku": "gift-wrap", "qty": 1}],
        "note": "leave at the door, ring twice",
        "tags": ["web", "promo"],
    }


def handler(data: dict[str, Any]) -> None:
    """The no-op work per message."""


async def raw_loop(client: Redis, n: int) -> float:
    stream = PREFIX + "raw-" + uuid.uuid4().hex[:6]
    for start in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + 1000)):
            pipe.xadd(stream, {"data": json.dumps(payload(i))})
        await pipe.execute()
    await client.xgroup_create(stream, "g", id="0")
    loads = json.loads
    done = 0
    started = time.perf_counter()
    while done < n:
        reply: Any = await client.xreadgroup("g", "c", {stream: ">"}, count=BATCH)
        if not reply:
            break
        entries = reply[0][1]
        for _entry_id, fields in entries:
            handler(loads(fields[b"data"]))
        await client.xack(stream, "g", *[entry_id for entry_id, _ in entries])
        done += len(entries)
    elapsed = time.perf_counter() - started
    await client.delete(stream)
    assert done == n, done
    return n / elapsed


async def backend_loop(url: str, n: int, payload_format: str) -> tuple[float, float]:
    base, query = split_options(url)
    backend = await open_backend(
        base, {**query, "key_prefix": PREFIX, "payload_format": payload_format}
    )
    stream = "backend-" + uuid.uuid4().hex[:6]
    try:
        items = [payload(i) for i in range(n)]
        started = time.perf_counter()
        for start in range(0, n, 1000):
            await backend.publish_many(stream, items[start : start + 1000])
        publish_rate = n / (time.perf_counter() - started)
        await backend.ensure_group(stream, "g")
        done = 0
        started = time.perf_counter()
        while done < n:
            messages = await backend.read(stream, "g", "c", count=BATCH, block=None)
            if not messages:
                break
            for message in messages:
                handler(message.data)
            await backend.ack(stream, "g", messages)
            done += len(messages)
        elapsed = time.perf_counter() - started
        assert done == n, done
        return n / elapsed, publish_rate
    finally:
        await backend._client.delete(backend.settings.key(stream))
        await backend.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.messages

    base, _ = split_options(args.url)
    client = Redis.from_url(base)
    size = len(json.dumps(payload(12345)))
    connection: Any = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    parser_name = type(connection._parser).__name__
    await client.connection_pool.release(connection)
    print(f"{n} messages of ~{size} B JSON, batches of {BATCH}, reply parser {parser_name}")

    publish: dict[str, float] = {}

    async def backend_fields() -> float:
        rate, publish["fields"] = await backend_loop(args.url, n, "fields")
        return rate

    async def backend_json() -> float:
        rate, publish["json"] = await backend_loop(args.url, n, "json")
        return rate

    variants: dict[str, Callable[[], Awaitable[float]]] = {
        "raw redis-py": lambda: raw_loop(client, n),
        "backend (fields)": backend_fields,
        "backend (json)": backend_json,
    }
    results: dict[str, float] = dict.fromkeys(variants, 0.0)
    for _ in range(args.rounds):  # interleaved, so that load changes hit every variant
        for name, run in variants.items():
            results[name] = max(results[name], await run())
    await client.aclose()
    for name, rate in results.items():
        print(f"{name:<18} read+handle+ack {rate:>10,.0f} msg/s")
    for fmt, rate in publish.items():
        print(f"publish_many ({fmt}) {rate:>10,.0f} msg/s (last round)")


if __name__ == "__main__":
    asyncio.run(main())
