"""The raw redis-py baseline: what a careful user writes by hand, with no framework.

* publish: ``XADD`` of one JSON field per message, pipelined 500 per round trip;
* consume: ``XREADGROUP COUNT 100``, ``json.loads`` of the field, an awaited no-op
  handler per message, one multi-id ``XACK`` per batch.

Both are checked afterwards: the stream holds N entries; N were handled and the group has
nothing pending and nothing left to deliver.
"""

from __future__ import annotations

import json
import time
from typing import Any

from benchmarks.common import BATCH, BenchResult, Tally, body, result
from redis.asyncio import Redis

__all__ = ["consume", "group_settled", "handler", "publish"]

FIELD = b"data"


async def handler(payload: dict[str, Any]) -> None:
    """The no-op handler every Redis variant awaits once per message."""


async def group_settled(client: Redis, key: str, group: str) -> bool:
    """True when `group` has no pending entry and nothing left to deliver."""
    pending: Any = await client.xpending(key, group)
    groups: Any = await client.xinfo_groups(key)
    for info in groups:
        if info["name"] in (group, group.encode()):
            lag = info.get("lag")
            return int(pending["pending"]) == 0 and (lag is None or int(lag) == 0)
    return False


async def publish(client: Redis, key: str, n: int, *, chunk: int = 500) -> BenchResult:
    """XADD `n` messages to `key`, `chunk` per pipelined round trip; encoding is timed."""
    started = time.perf_counter()
    for first in range(0, n, chunk):
        pipe = client.pipeline(transaction=False)
        for index in range(first, min(n, first + chunk)):
            pipe.xadd(key, {FIELD: body(index)})
        await pipe.execute()
    seconds = time.perf_counter() - started
    length = await client.xlen(key)
    return BenchResult(
        f"raw pipelined XADD x{chunk}", "redis", n, seconds, rate=n / seconds, verified=length == n
    )


async def consume(client: Redis, key: str, n: int) -> BenchResult:
    """Drain the `n`-entry backlog at `key` with the raw loop (the baseline)."""
    group = "raw"
    await client.xgroup_create(key, group, id="0")
    tally = Tally(n)
    loads = json.loads
    while tally.count < n:
        reply: Any = await client.xreadgroup(group, "c", {key: ">"}, count=BATCH, block=1000)
        if not reply:
            break
        entries = reply[0][1]
        if not tally.count:
            tally.hit(0)
        for _entry_id, fields in entries:
            await handler(loads(fields[FIELD]))
        await client.xack(key, group, *[entry_id for entry_id, _ in entries])
        tally.hit(len(entries))
    seconds = tally.elapsed()
    ok = await group_settled(client, key, group)
    return result("raw redis-py loop", "redis", tally, seconds, ok)
