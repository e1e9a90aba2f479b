"""Fixtures for the Redis backend tests: a real server on 127.0.0.1, keys cleaned up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from redis.asyncio import Redis

from conveyor.options import split_options
from conveyor.testing.servers import REDIS, find_server
from conveyor_redis import RedisBackend, open_backend

#: Every key a test run creates starts with this (deleted after each test).
KEY_PREFIX = f"conveyor-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the Redis server under test (skips, or fails under CI, without one)."""
    with find_server(REDIS) as url:
        yield url


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain redis-py client (str replies) on the test server; deletes the run's keys."""
    base, _ = split_options(redis_url)
    client = Redis.from_url(base, decode_responses=True, protocol=2)
    yield client
    keys = [key async for key in client.scan_iter(match=KEY_PREFIX + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    """The run's key prefix (the `raw` fixture deletes its keys after each test)."""
    return KEY_PREFIX


@pytest.fixture
def client_name() -> str:
    """A connection name unique to the test, so it kills only its own connections."""
    return f"conveyor-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def backend(redis_url: str, raw: Redis, client_name: str) -> AsyncIterator[RedisBackend]:
    """A `RedisBackend` using the run's key prefix and the test's connection name."""
    base, query = split_options(redis_url)
    opened = await open_backend(
        base, {**query, "key_prefix": KEY_PREFIX, "client_name": client_name}
    )
    yield opened
    await opened.aclose()


@pytest.fixture
def stream() -> str:
    """A fresh stream name (with a colon, as users name them)."""
    return f"events:{uuid.uuid4().hex[:12]}"


Killer = Callable[..., Awaitable[int]]


@pytest.fixture
def kill(raw: Redis, client_name: str) -> Killer:
    """``await kill(command=None)``: CLIENT KILL the test backend's connections (only those
    running `command`, if given); returns how many were killed."""

    async def kill_connections(command: str | None = None) -> int:
        killed = 0
        for client in await raw.client_list():
            if client.get("name") != client_name:
                continue
            if command is None or client.get("cmd") == command:
                killed += await raw.client_kill_filter(_id=client["id"])
        return killed

    return kill_connections
