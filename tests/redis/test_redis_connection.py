"""Lost connections, cancelled and cut reads: nothing delivered in a lost reply is lost."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from conveyor.errors import BackendClosedError, BrokerUnavailableError
from conveyor.options import split_options
from conveyor.testing.conformance import RestartableBroker
from conveyor_redis import RedisBackend, open_backend

Waiter = Callable[..., Awaitable[None]]  # the until_blocked fixture of conftest.py


async def open_patient(redis_url: str, backend: RedisBackend, client_name: str) -> RedisBackend:
    """A backend whose reads block up to 20 s (the default max_block is 1 s)."""
    base, query = split_options(redis_url)
    options = {"max_block": "20", "socket_timeout": "30", "client_name": client_name}
    return await open_backend(base, {**query, "key_prefix": backend.settings.key_prefix, **options})


class ReplyDroppingProxy:
    """A TCP proxy to Redis that, when armed, swallows the next reply and cuts the link.

    The server has then executed the command (XREADGROUP moved entries into the
    consumer's pending list) but the client never sees the reply: a real lost reply.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.armed = False
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, reply: bool) -> None:
            try:
                while data := await src.read(65536):
                    if reply and self.armed and data.startswith(b"*"):
                        self.armed = False
                        self.dropped += 1
                        break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (writer, up_writer):
                    w.close()

        for task in (
            asyncio.create_task(pump(reader, up_writer, False)),
            asyncio.create_task(pump(up_reader, writer, True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def proxied(
    backend: RedisBackend,
) -> AsyncIterator[tuple[ReplyDroppingProxy, RedisBackend]]:
    (host, port), *_ = backend.settings.hosts
    proxy = ReplyDroppingProxy(host, port)
    proxy_port = await proxy.start()
    through = RedisBackend(
        dataclasses.replace(backend.settings, hosts=(("127.0.0.1", proxy_port),))
    )
    yield proxy, through
    await through.aclose()
    await proxy.close()


async def test_lost_read_reply_is_reread_from_own_pending(
    proxied: tuple[ReplyDroppingProxy, RedisBackend], backend: RedisBackend, raw: Redis,
    stream: str,
) -> None:  # fmt: skip
    proxy, through = proxied
    session = await through.open_consumer(stream, "g", "c")
    assert await session.read(count=10, block=None) == []  # own pending re-read done
    ids = await backend.publish_many(stream, [{"i": 0}, {"i": 1}])

    proxy.armed = True
    with pytest.raises(BrokerUnavailableError):
        await session.read(count=10, block=0.5)
    assert proxy.dropped == 1
    rows = await raw.xpending_range(backend.settings.key(stream), "g", "-", "+", 10)
    assert [(r["message_id"], r["consumer"]) for r in rows] == [(i, "c") for i in ids]

    await backend.publish(stream, {"i": 2})
    again = await session.read(count=10, block=0.5)
    assert [(m.data["i"], m.delivery_count) for m in again] == [(0, 2), (1, 2)]
    fresh = await session.read(count=10, block=0.5)
    assert [(m.data["i"], m.delivery_count) for m in fresh] == [(2, 1)]


async def test_client_kill_during_blocking_read(
    backend: RedisBackend, kill: Callable[..., Awaitable[int]], until_blocked: Waiter, stream: str
) -> None:
    session = await backend.open_consumer(stream, "g", "c")
    await backend.publish(stream, {"i": 0})
    [first] = await session.read(count=10, block=None)  # left pending

    reader = asyncio.create_task(session.read(count=10, block=0.9))
    await until_blocked()
    assert await kill("xreadgroup") == 1
    with pytest.raises(BrokerUnavailableError):
        await reader

    # the next read starts over from this consumer's pending entries
    [again] = await session.read(count=10, block=None)
    assert (again.id, again.delivery_count) == (first.id, 2)


async def test_cancelled_read_rereads_own_pending(
    backend: RedisBackend, until_blocked: Waiter, stream: str
) -> None:
    session = await backend.open_consumer(stream, "g", "c")
    await backend.publish(stream, {"i": 0})
    [held] = await session.read(count=10, block=None)  # left pending
    reader = asyncio.create_task(session.read(count=10, block=0.9))
    await until_blocked()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader  # someone else's cancellation is never turned into anything else
    await backend.publish(stream, {"i": 1})
    [again] = await session.read(count=10, block=0.5)
    assert (again.id, again.delivery_count) == (held.id, 2)
    [fresh] = await session.read(count=10, block=0.5)
    assert fresh.data == {"i": 1}


async def test_session_close_cuts_a_blocked_read_at_once(
    redis_url: str, backend: RedisBackend, client_name: str, until_blocked: Waiter, stream: str
) -> None:
    """Closing a session ends its blocked XREADGROUP now, not when its BLOCK runs out."""
    patient = await open_patient(redis_url, backend, client_name)
    try:
        session = await patient.open_consumer(stream, "g", "c")
        reader = asyncio.ensure_future(session.read(count=10, block=20.0))
        await until_blocked()
        started = time.monotonic()
        await session.aclose()
        with pytest.raises(BackendClosedError):
            await asyncio.wait_for(reader, 5)
        assert time.monotonic() - started < 2.0
        # the backend and another session on it are unaffected
        other = await patient.open_consumer(stream, "g", "other")
        sent = await patient.publish(stream, {"i": 0})
        assert [m.id for m in await other.read(count=10, block=1.0)] == [sent]
    finally:
        await patient.aclose()


async def test_backend_close_cuts_every_blocked_read(
    redis_url: str, backend: RedisBackend, client_name: str, until_blocked: Waiter, stream: str
) -> None:
    patient = await open_patient(redis_url, backend, client_name)
    sessions = [await patient.open_consumer(stream, "g", f"c{i}") for i in range(3)]
    readers = [asyncio.ensure_future(s.read(count=10, block=20.0)) for s in sessions]
    await until_blocked(3)
    started = time.monotonic()
    await patient.aclose()
    results = await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 5)
    assert [type(r) for r in results] == [BackendClosedError] * 3
    assert time.monotonic() - started < 2.0


async def test_concurrent_publishes_wait_for_a_free_connection(
    redis_url: str, backend: RedisBackend, raw: Redis, client_name: str, stream: str
) -> None:
    """More concurrent calls than connections: they queue for one, none fails, and the
    pool never grows past max_connections."""
    base, query = split_options(redis_url)
    small = await open_backend(
        base,
        {**query, "key_prefix": backend.settings.key_prefix, "max_connections": "3",
         "client_name": client_name},
    )  # fmt: skip
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            clients = await raw.client_list()
            peak = max(peak, sum(c.get("name") == client_name for c in clients))
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    try:
        ids = await asyncio.gather(*(small.publish(stream, {"n": i}) for i in range(3000)))
    finally:
        watcher.cancel()
        await small.aclose()
    assert len(set(ids)) == 3000
    assert await raw.xlen(backend.settings.key(stream)) == 3000
    assert 1 <= peak <= 3


async def test_confirmed_writes_survive_a_restart(restartable_redis: RestartableBroker) -> None:
    """The restartable server the conformance suite uses keeps what it confirmed."""
    first = await restartable_redis.open_backend()
    try:
        session = await first.open_consumer("durable", "g", "c")
        ids = await first.publish_many("durable", [{"n": 0}, {"n": 1}], headers=[{"k": "v"}, None])
        [held, done] = await session.read(count=10, block=None)
        await session.ack([done])
    finally:
        await first.aclose()
    await restartable_redis.restart()
    second = await restartable_redis.open_backend()
    try:
        assert [(m.id, m.headers) for m in await second.peek("durable", count=10)] == [
            (ids[0], {"k": "v"}),
            (ids[1], {}),
        ]
        assert (await second.group_info("durable", "g")).pending == 1
        again = await second.open_consumer("durable", "g", "c")
        [reread] = await again.read(count=10, block=None)
        assert (reread.id, reread.delivery_count) == (held.id, 2)
    finally:
        await second.aclose()
