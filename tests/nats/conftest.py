"""Fixtures for the NATS JetStream backend tests: a server URL, per-test name prefixes,
and private nats-server processes (`start_nats`) that tests may kill and restart.

Every test gets its own ``stream_prefix``/``subject_prefix`` so the JetStream streams it
creates (dead-letter streams included) can be found and deleted afterwards. The shared
server (127.0.0.1:4222 or ``CONVEYOR_TEST_NATS_URL``) is never stopped or restarted.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import nats
from conveyor.testing.processes import LocalNats, free_port, nats_server
from conveyor.testing.servers import unavailable
from conveyor_nats import NatsBackend, open_backend

OpenNats = Callable[..., Awaitable[NatsBackend]]


@pytest.fixture
def prefix_options() -> dict[str, str]:
    """Options that keep one test's JetStream streams apart from everything else."""
    tag = uuid.uuid4().hex[:12]
    return {"stream_prefix": f"T{tag}_", "subject_prefix": f"conveyor-test.{tag}"}


async def delete_streams(url: str, stream_prefix: str) -> None:
    """Delete every JetStream stream whose name starts with `stream_prefix`."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(stream_prefix):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def stream_cleanup(nats_url: str, prefix_options: dict[str, str]) -> AsyncIterator[None]:
    """Delete the test's JetStream streams at teardown."""
    yield
    await delete_streams(nats_url, prefix_options["stream_prefix"])


@pytest_asyncio.fixture
async def open_nats(
    nats_url: str, prefix_options: dict[str, str], stream_cleanup: None
) -> AsyncIterator[OpenNats]:
    """Open backends on the test server with this test's prefixes; closes them and deletes
    the test's streams afterwards. Keyword arguments become extra options."""
    opened: list[NatsBackend] = []

    async def factory(**options: Any) -> NatsBackend:
        backend = await open_backend(nats_url, {**prefix_options, **options})
        opened.append(backend)
        return backend

    yield factory
    for backend in opened:
        await backend.aclose()


#: Backend options for a server that a test kills: notice and recover within a second.
OUTAGE_OPTIONS = {"reconnect_wait": "0.2", "request_timeout": "1", "group_check_interval": "1"}


class NatsServer(LocalNats):
    """A private `LocalNats` with a backend opener tuned to notice outages quickly."""

    async def open_backend(self, **options: str) -> NatsBackend:
        """A backend on this server that notices an outage quickly (`OUTAGE_OPTIONS`)."""
        return await open_backend(self.url, {**OUTAGE_OPTIONS, **options})


StartNats = Callable[..., NatsServer]


@pytest.fixture
def start_nats(tmp_path: Path) -> Iterator[StartNats]:
    """Start private ``nats-server -js`` processes on free ports with temporary stores.

    ``start_nats(*extra_args, scheme="nats")`` returns a started `NatsServer`; every one is
    killed (by PID) at teardown.
    """
    try:
        binary = nats_server()
    except FileNotFoundError:
        unavailable("no nats-server binary to start a private server with")
    started: list[NatsServer] = []

    def start(*extra: str, scheme: str = "nats") -> NatsServer:
        port = free_port()
        server = NatsServer(
            tmp_path / f"jetstream-{port}", port, extra, scheme=scheme, binary=binary
        )
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop(kill=True)
