"""``redis+cluster://`` against a local 3-node Redis Cluster (the `cluster_url` fixture of
conftest.py starts and stops it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from conveyor.errors import BackendError
from conveyor_redis import RedisBackend, open_backend

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster(cluster_url: str) -> AsyncIterator[RedisBackend]:
    backend = await open_backend(cluster_url, {"key_prefix": "t:"})
    yield backend
    await backend.aclose()


async def test_streams_spread_over_slots_with_dead_letters_beside_them(
    cluster: RedisBackend,
) -> None:
    names = ["orders", "events:bot", "a.b-c_d", "payments", "users"]
    slots = {key_slot(cluster.settings.key(n).encode()) for n in names}
    assert len(slots) > 1  # streams are spread, not all in one slot
    for name in names:
        dead = f"{name}.dead"
        assert key_slot(cluster.settings.key(name).encode()) == key_slot(
            cluster.settings.key(dead).encode()
        )


async def test_full_cycle_on_a_cluster(cluster: RedisBackend, cluster_url: str) -> None:
    stream = f"events:{time.monotonic_ns()}"
    session = await cluster.open_consumer(stream, "g", "c")
    other = await cluster.open_consumer(stream, "g", "other")
    await cluster.create_group(stream, "g")
    ids = await cluster.publish_many(
        stream, [{"n": i} for i in range(5)], headers=[{"n": str(i)} for i in range(5)]
    )
    messages = await session.read(count=10, block=0.5)
    assert [m.id for m in messages] == ids
    again = await session.redeliver(messages[:1])
    assert again[0].delivery_count == 2
    await session.heartbeat(messages)
    await session.ack(messages[1:3])
    await asyncio.sleep(0.05)  # idle time is what is being tested
    claimed = await other.claim_stale(min_idle=0.02, count=10)
    assert sorted(m.id for m in claimed) == [ids[0], ids[3], ids[4]]
    dead_id = await other.dead_letter(
        claimed[0], dead_letter_stream=f"{stream}.dead", record={"why": "test"}
    )
    [dead] = await cluster.peek(f"{stream}.dead", count=5)
    assert (dead.id, dead.data, dead.headers) == (dead_id, {"why": "test"}, claimed[0].headers)
    info = await cluster.group_info(stream, "g")
    assert (info.pending, info.lag, info.length) == (2, 0, 5)

    restarted = await open_backend(cluster_url, {"key_prefix": "t:"})
    try:
        own = await (await restarted.open_consumer(stream, "g", "other")).read(count=10, block=None)
        assert sorted(m.id for m in own) == [ids[3], ids[4]]
        assert {m.id: m.headers for m in own} == {ids[3]: {"n": "3"}, ids[4]: {"n": "4"}}
    finally:
        await restarted.aclose()

    node = cluster_url.removeprefix("redis+cluster://").split(",")[0]
    raw = RedisCluster.from_url(f"redis://{node}")
    try:
        assert await raw.xlen(cluster.settings.key(stream)) == 5
    finally:
        await raw.aclose()


async def test_standalone_client_is_redirected(cluster_url: str) -> None:
    """A plain redis:// client on a cluster node gets a typed error naming the right URL.

    (The cluster and its data are discarded when the module's tests end.)
    """
    node = cluster_url.removeprefix("redis+cluster://").split(",")[0]
    plain = await open_backend(f"redis://{node}/0", {"retries": "0"})

    async def publish_everywhere() -> None:
        for i in range(20):  # some of these slots live on another node
            await plain.publish(f"s{i}", {"x": 1})

    try:
        with pytest.raises(BackendError, match=r"MOVED.*redis\+cluster://"):
            await publish_everywhere()
    finally:
        await plain.aclose()


async def test_concurrent_calls_wait_for_a_connection_on_a_cluster(cluster_url: str) -> None:
    """redis-py's cluster client raises past a node's max_connections; callers of the
    backend wait instead."""
    small = await open_backend(cluster_url, {"key_prefix": "t:", "max_connections": "2"})
    try:
        streams = [f"many{i}:{time.monotonic_ns()}" for i in range(4)]  # several slots
        ids = await asyncio.gather(*(small.publish(streams[i % 4], {"n": i}) for i in range(2000)))
        assert len(set(zip([i % 4 for i in range(2000)], ids, strict=True))) == 2000
        for name in streams:
            assert len(await small.peek(name, count=1000)) == 500
    finally:
        await small.aclose()
