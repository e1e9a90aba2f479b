"""Lost connections: nothing delivered in a lost reply is lost."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from conveyor.errors import BrokerUnavailableError
from conveyor_redis import RedisBackend


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
    await backend.ensure_group(stream, "g")
    assert await through.read(stream, "g", "c", count=10, block=None) == []  # recovery done
    ids = await backend.publish_many(stream, [{"i": 0}, {"i": 1}])

    proxy.armed = True
    with pytest.raises(BrokerUnavailableError):
        await through.read(stream, "g", "c", count=10, block=0.5)
    assert proxy.dropped == 1
    rows = await raw.xpending_range(backend.settings.key(stream), "g", "-", "+", 10)
    assert [(r["message_id"], r["consumer"]) for r in rows] == [(i, "c") for i in ids]

    await backend.publish(stream, {"i": 2})
    again = await through.read(stream, "g", "c", count=10, block=0.5)
    assert [(m.data["i"], m.delivery_count) for m in again] == [(0, 2), (1, 2)]
    fresh = await through.read(stream, "g", "c", count=10, block=0.5)
    assert [(m.data["i"], m.delivery_count) for m in fresh] == [(2, 1)]


async def test_client_kill_during_blocking_read(
    backend: RedisBackend, kill: Callable[..., Awaitable[int]], stream: str
) -> None:
    await backend.ensure_group(stream, "g")
    await backend.publish(stream, {"i": 0})
    [first] = await backend.read(stream, "g", "c", count=10, block=None)  # left pending

    reader = asyncio.create_task(backend.read(stream, "g", "c", count=10, block=0.9))
    killed = 0
    for _ in range(50):
        await asyncio.sleep(0.01)
        killed = await kill("xreadgroup")
        if killed:
            break
    assert killed == 1
    with pytest.raises(BrokerUnavailableError):
        await reader

    # the next read starts over from this consumer's pending entries
    [again] = await backend.read(stream, "g", "c", count=10, block=None)
    assert (again.id, again.delivery_count) == (first.id, 2)


async def test_cancelled_read_rereads_own_pending(backend: RedisBackend, stream: str) -> None:
    await backend.ensure_group(stream, "g")
    assert await backend.read(stream, "g", "c", count=10, block=None) == []
    reader = asyncio.create_task(backend.read(stream, "g", "c", count=10, block=0.9))
    await asyncio.sleep(0.05)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await backend.publish(stream, {"i": 0})
    [message] = await backend.read(stream, "g", "c", count=10, block=0.5)
    assert message.data == {"i": 0}
