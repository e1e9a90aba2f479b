"""Fixtures for the NATS JetStream backend tests: a server URL, per-test name prefixes,
and private nats-server processes (`start_nats`) that tests may kill and restart.

Every test gets its own ``stream_prefix``/``subject_prefix`` so the JetStream streams it
creates (dead-letter streams included) can be found and deleted afterwards. The shared
server (127.0.0.1:4222 or ``CONVEYOR_TEST_NATS_URL``) is never stopped or restarted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import nats
from conveyor.testing.servers import port_open, unavailable
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


class LocalNats:
    """A nats-server process a test owns: started, and killed by its PID only."""

    def __init__(self, args: list[str], port: int, scheme: str = "nats") -> None:
        self.args = args
        self.port = port
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again, same store and port) and wait until it listens."""
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port, timeout=0.2):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"nats-server did not start: {self.args}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL our process, if it runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    async def restart(self) -> None:
        """Kill the server and start it again on the same port and store; returns once it
        accepts connections (the event loop runs meanwhile)."""
        await asyncio.to_thread(self.kill)
        await asyncio.to_thread(self.start)

    async def open_backend(self, **options: str) -> NatsBackend:
        """A backend on this server that notices an outage quickly (`OUTAGE_OPTIONS`)."""
        return await open_backend(self.url, {**OUTAGE_OPTIONS, **options})


StartNats = Callable[..., LocalNats]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def start_nats(tmp_path: Path) -> Iterator[StartNats]:
    """Start private ``nats-server -js`` processes on free ports with temporary stores.

    ``start_nats(*extra_args, scheme="nats")`` returns a started `LocalNats`; every one is
    killed (by PID) at teardown.
    """
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        unavailable("no nats-server binary to start a private server with")
    started: list[LocalNats] = []

    def start(*extra: str, scheme: str = "nats") -> LocalNats:
        port = _free_port()
        store = tmp_path / f"jetstream-{port}"
        args = [binary, "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port), *extra]
        server = LocalNats(args, port, scheme)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.kill()
