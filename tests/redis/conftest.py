"""Fixtures for the Redis backend tests.

* The shared server (``redis_url``, 127.0.0.1:6379 unless ``CONVEYOR_TEST_REDIS_URL``
  says otherwise) is only ever used through the run's key prefix: its keys are deleted
  after each test, and nothing here restarts, flushes or stops it.
* Servers the tests start themselves (`LocalRedis`: a restartable one, a TLS one, a
  3-node cluster) each get a free 127.0.0.1 port and their own temporary directory, and
  are stopped by their PID.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

import conveyor
from conveyor.options import split_options
from conveyor.protocol import StreamBackend
from conveyor.testing.certs import make_certificates
from conveyor.testing.conformance import RestartableBroker
from conveyor.testing.processes import LocalRedis, free_port
from conveyor.testing.servers import unavailable
from conveyor_redis import RedisBackend, open_backend

#: Every key a test run creates starts with this (deleted after each test).
KEY_PREFIX = f"conveyor-test-{uuid.uuid4().hex[:8]}:"

#: ``requirepass`` of the TLS server (`tls_server`).
TLS_PASSWORD = "tls-s3cret-pw"


# -- the shared server -------------------------------------------------------------------


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


@pytest.fixture
def until_blocked(raw: Redis, client_name: str) -> Callable[..., Awaitable[None]]:
    """``await until_blocked(count=1)``: wait until the server holds `count` blocked
    ``XREADGROUP`` calls of the test backend's connections (named `client_name`)."""

    async def wait(count: int = 1) -> None:
        deadline = time.monotonic() + 5
        while True:
            blocked = [
                c for c in await raw.client_list()
                if c.get("name") == client_name and c.get("cmd") == "xreadgroup"
                and "b" in c.get("flags", "")
            ]  # fmt: skip
            if len(blocked) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} blocked read(s) never showed up")
            await asyncio.sleep(0.01)

    return wait


# -- servers the tests start themselves ------------------------------------------------


def local_redis(
    directory: Path, port: int, args: Sequence[str] = (), *, tls: bool = False
) -> LocalRedis:
    """A `LocalRedis` (skips, or fails under CI=true, without a redis-server binary)."""
    try:
        return LocalRedis(directory, port, args, tls=tls)
    except FileNotFoundError:
        unavailable("redis-server is not installed: cannot start a local Redis")


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RestartableBroker]:
    """A Redis the test may restart: own port and data directory, every write fsynced to
    the AOF before it is confirmed (so confirmed writes survive a crash)."""
    server = local_redis(
        tmp_path, free_port(), ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    )
    server.start()

    async def open_one() -> StreamBackend:
        return await conveyor.connect(server.url, key_prefix=KEY_PREFIX)

    async def restart() -> None:
        await server.arestart()  # the event loop runs on meanwhile

    try:
        yield RestartableBroker(open_backend=open_one, restart=restart)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[int, Path, str]]:
    """A redis-server with only a TLS port and ``requirepass``; yields (port, CA file,
    password)."""
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed: cannot make certificates for a TLS Redis")
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-tls-"))
    try:
        certs = make_certificates(workdir)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        unavailable(f"cannot make test certificates with openssl: {exc}")
    args = ["--tls-cert-file", str(certs.cert)]
    args += ["--tls-key-file", str(certs.key)]
    args += ["--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no"]
    args += ["--requirepass", TLS_PASSWORD, "--save", "", "--appendonly", "no"]
    server = local_redis(workdir, free_port(), args, tls=True)
    try:
        try:
            server.start(timeout=10)
        except RuntimeError:
            unavailable("this redis-server did not start with TLS")
        yield server.port, certs.ca, TLS_PASSWORD
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """Start three ``redis-server --cluster-enabled yes`` nodes, join them, stop them;
    yields their ``redis+cluster://`` URL."""
    cli = shutil.which("redis-cli")
    if cli is None:
        unavailable("redis-cli is not installed: cannot form a local Redis Cluster")
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-cluster-"))
    nodes: list[LocalRedis] = []
    try:
        for _ in range(3):
            port = free_port(cluster_bus=True)
            node_dir = workdir / str(port)
            node_dir.mkdir()
            args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
            args += ["--cluster-config-file", str(node_dir / "nodes.conf")]
            args += ["--save", "", "--appendonly", "no"]
            nodes.append(local_redis(node_dir, port, args))
            nodes[-1].start()
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(node.port), "cluster", "info"], capture_output=True, text=True
                ).stdout
                for node in nodes
            ]
            if all("cluster_state:ok" in state for state in states):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the local Redis Cluster did not reach cluster_state:ok")
        yield "redis+cluster://" + ",".join(addresses)
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
