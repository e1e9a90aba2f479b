"""`streams()` and `groups()` on Redis: key prefixes, foreign keys, cluster hash tags."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from conveyor.errors import WrongTypeError
from conveyor.options import split_options
from conveyor_redis import RedisBackend, open_backend
from conveyor_redis.discovery import stream_of_key
from conveyor_redis.settings import RedisSettings


def test_keys_map_back_to_the_names_that_made_them() -> None:
    plain = RedisSettings.from_url("redis://h", {"key_prefix": "app:"})
    assert stream_of_key(plain, "app:events:bot") == "events:bot"
    assert stream_of_key(plain, "other:events") is None
    assert stream_of_key(plain, "app:") is None
    cluster = RedisSettings.from_url("redis+cluster://h:1", {"key_prefix": "t:"})
    for name in ["orders", "events:bot", "a.b-c_d", "orders.dead", "x{tag}y", "with space"]:
        assert stream_of_key(cluster, cluster.key(name)) == name
    assert stream_of_key(cluster, "t:orders") is None  # conveyor would write t:{orders}


@pytest.fixture
async def other_prefix(redis_url: str) -> AsyncIterator[RedisBackend]:
    base, query = split_options(redis_url)
    opened = await open_backend(base, {**query, "key_prefix": f"disc-{uuid.uuid4().hex[:8]}:"})
    yield opened
    prefix = opened.settings.key_prefix
    keys = [k async for k in opened._pool.client.scan_iter(match=prefix + "*")]
    if keys:
        await opened._pool.client.delete(*keys)
    await opened.aclose()


async def test_only_streams_under_the_key_prefix_are_listed(
    backend: RedisBackend, other_prefix: RedisBackend, raw: Redis
) -> None:
    mine = f"orders-{uuid.uuid4().hex[:6]}"
    await backend.publish(mine, {"n": 1})
    await other_prefix.publish("theirs", {"n": 1})
    await other_prefix.create_group("theirs", "billing")
    await raw.set(other_prefix.settings.key("not-a-stream"), "x")
    listed = await other_prefix.streams()
    assert [(i.name, i.length, i.groups) for i in listed] == [("theirs", 1, ("billing",))]
    assert listed[0].oldest_at is not None
    assert mine in {i.name for i in await backend.streams()}
    assert "theirs" not in {i.name for i in await backend.streams()}
    assert await other_prefix.groups("theirs") == ["billing"]
    assert await other_prefix.groups("missing") == []
    with pytest.raises(WrongTypeError):
        await other_prefix.groups("not-a-stream")


@pytest.mark.slow
async def test_streams_of_every_cluster_primary_are_listed(cluster_url: str) -> None:
    backend = await open_backend(cluster_url, {"key_prefix": f"d{uuid.uuid4().hex[:6]}:"})
    names = ["orders", "events:bot", "a.b-c_d", "payments", "users", "orders.dead"]
    try:
        for name in names:
            await backend.publish(name, {"n": 1})
        await backend.create_group("orders", "billing")
        listed = {i.name: i for i in await backend.streams()}
        assert sorted(listed) == sorted(names)
        assert listed["orders"].groups == ("billing",)
        assert listed["orders.dead"].dead_letter_of == "orders"
        assert await backend.groups("events:bot") == []
    finally:
        client = backend._pool.client
        async for key in client.scan_iter(match=backend.settings.key_prefix + "*"):
            await client.delete(key)
        await backend.aclose()
