"""Retention on Redis: ``max_age`` (``XADD ... MINID``), ``maxlen`` with it, ``ack_delete``
(``XACKDEL``, refused before Redis 8.2) and `delete_stream` (``DEL``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from conveyor.errors import ConfigurationError, GroupNotFoundError, WrongTypeError
from conveyor.options import split_options
from conveyor_redis import RedisBackend, open_backend
from conveyor_redis.client import server_version
from conveyor_redis.retention import ack_command, min_id, trim_by_age, xadd_trim
from conveyor_redis.settings import RedisSettings

Opener = Callable[..., Awaitable[RedisBackend]]


@pytest.fixture
async def opener(redis_url: str, key_prefix: str) -> AsyncIterator[Opener]:
    """``await opener(**options)``: a backend on the shared server with the run's prefix."""
    opened: list[RedisBackend] = []
    base, query = split_options(redis_url)

    async def open_one(**options: Any) -> RedisBackend:
        backend = await open_backend(base, {**query, "key_prefix": key_prefix, **options})
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        await backend.aclose()


# -- command construction (no server) ------------------------------------------------


def test_trim_clause_of_xadd() -> None:
    assert xadd_trim(RedisSettings()) == []
    assert xadd_trim(RedisSettings(maxlen=5)) == ["MAXLEN", "~", 5]
    assert xadd_trim(RedisSettings(maxlen=5, exact_maxlen=True)) == ["MAXLEN", "=", 5]
    assert xadd_trim(RedisSettings(max_age=60), now=1000.0) == ["MINID", "~", "940000"]
    exact = RedisSettings(max_age=0.5, exact_maxlen=True)
    assert xadd_trim(exact, now=10.0) == ["MINID", "=", "9500"]
    # both: XADD trims by length, an XTRIM by age goes first
    both = RedisSettings(maxlen=5, max_age=60)
    assert xadd_trim(both, now=1000.0) == ["MAXLEN", "~", 5]
    assert trim_by_age(both, "k", now=1000.0) == ["XTRIM", "k", "MINID", "~", "940000"]
    assert trim_by_age(RedisSettings(max_age=60), "k") is None
    assert min_id(10.0, 5.0) == "0"  # never a negative id


def test_ack_command_is_xack_or_xackdel_acked() -> None:
    assert ack_command("k", "g", ["1-0", "2-0"], False) == ["XACK", "k", "g", "1-0", "2-0"]
    assert ack_command("k", "g", ["1-0", "2-0"], True) == [
        "XACKDEL", "k", "g", "ACKED", "IDS", 2, "1-0", "2-0",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_age": "0"}, "max_age=0.0: must be > 0"),
        ({"max_age": "-5"}, "max_age=-5.0: must be > 0"),
        ({"ack_delete": "maybe"}, "ack_delete"),
    ],
)
def test_bad_retention_options_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisSettings.from_url("redis://localhost", options)


# -- the real server ---------------------------------------------------------------


async def test_max_age_trims_old_entries_on_the_next_publish(
    opener: Opener, raw: Redis, stream: str
) -> None:
    backend = await opener(max_age=1, exact_maxlen=True)
    key = backend.settings.key(stream)
    await backend.publish_many(stream, [{"n": i} for i in range(5)])
    assert await raw.xlen(key) == 5
    await asyncio.sleep(1.1)
    await backend.publish(stream, {"n": 5})
    assert [m.data["n"] for m in await backend.peek(stream, count=10)] == [5]


async def test_approximate_max_age_trims_whole_nodes(
    opener: Opener, raw: Redis, stream: str
) -> None:
    # "~" removes whole radix-tree nodes only (stream-node-max-entries, 100 by default)
    backend = await opener(max_age=1)
    key = backend.settings.key(stream)
    await backend.publish_many(stream, [{"n": i} for i in range(250)])
    await asyncio.sleep(1.1)
    await backend.publish_many(stream, [{"n": 250}, {"n": 251}])
    left = await raw.xlen(key)
    assert 2 < left <= 152  # at least two old nodes went, the young entries stayed
    assert [m.data["n"] for m in await backend.peek(stream, count=2)] == [250, 251]


async def test_maxlen_and_max_age_together(opener: Opener, raw: Redis, stream: str) -> None:
    backend = await opener(maxlen=3, max_age=1, exact_maxlen=True)
    key = backend.settings.key(stream)
    await backend.publish_many(stream, [{"n": i} for i in range(10)])
    assert await raw.xlen(key) == 3  # maxlen
    await asyncio.sleep(1.1)
    await backend.publish(stream, {"n": 10})
    assert await raw.xlen(key) == 1  # max_age


async def test_ack_delete_is_refused_before_redis_8_2(opener: Opener, raw: Redis) -> None:
    version = server_version(await raw.info("server"))
    if version >= (8, 2):  # the shared server here is 7.0; a newer one accepts it
        backend = await opener(ack_delete=True)
        assert backend.settings.ack_delete
        return
    found = ".".join(map(str, version))
    with pytest.raises(ConfigurationError) as caught:
        await opener(ack_delete=True)
    assert str(caught.value) == (
        f"redis:// option ack_delete=true needs Redis 8.2+ (XACKDEL), this server is {found}"
    )


async def test_delete_stream_drops_the_key_and_refuses_other_types(
    backend: RedisBackend, raw: Redis, stream: str
) -> None:
    key = backend.settings.key(stream)
    await backend.create_group(stream, "g")
    await backend.publish(stream, {"n": 1})
    assert await backend.delete_stream(stream) is True
    assert await raw.exists(key) == 0
    assert await backend.delete_stream(stream) is False
    with pytest.raises(GroupNotFoundError):
        await backend.group_info(stream, "g")
    await raw.set(key, "not a stream")
    with pytest.raises(WrongTypeError):
        await backend.delete_stream(stream)
    assert await raw.get(key) == "not a stream"  # left alone
