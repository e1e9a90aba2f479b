"""``redis+cluster://`` against a local 3-node Redis Cluster started (and stopped) here."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from conveyor.errors import BackendError
from conveyor.testing.servers import unavailable
from conveyor_redis import RedisBackend, open_backend

pytestmark = pytest.mark.slow


def _free_port() -> int:
    """A loopback port that is free, and whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not start")


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """Start three ``redis-server --cluster-enabled yes`` nodes, join them, stop them."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        unavailable("redis-server/redis-cli not installed: cannot start a local Redis Cluster")
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-cluster-"))
    ports = [_free_port() for _ in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            args = [server, "--port", str(port), "--bind", "127.0.0.1"]
            args += ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
            args += ["--cluster-config-file", str(node_dir / "nodes.conf")]
            args += ["--dir", str(node_dir), "--save", "", "--appendonly", "no"]
            procs.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in ports:
            _wait_port(port)
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(p), "cluster", "info"], capture_output=True, text=True
                ).stdout
                for p in ports
            ]
            if all("cluster_state:ok" in state for state in states):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the local Redis Cluster did not reach cluster_state:ok")
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


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
    await cluster.ensure_group(stream, "g")
    await cluster.ensure_group(stream, "g")
    ids = await cluster.publish_many(stream, [{"n": i} for i in range(5)])
    messages = await cluster.read(stream, "g", "c", count=10, block=0.5)
    assert [m.id for m in messages] == ids
    again = await cluster.redeliver(stream, "g", "c", messages[:1])
    assert again[0].delivery_count == 2
    await cluster.heartbeat(stream, "g", "c", messages)
    await cluster.ack(stream, "g", messages[1:3])
    await asyncio.sleep(0.05)
    claimed = await cluster.claim_stale(stream, "g", "other", min_idle=0.02, count=10)
    assert sorted(m.id for m in claimed) == [ids[0], ids[3], ids[4]]
    dead_id = await cluster.dead_letter(
        stream, "g", claimed[0], dead_letter_stream=f"{stream}.dead", record={"why": "test"}
    )
    [dead] = await cluster.peek(f"{stream}.dead", count=5)
    assert (dead.id, dead.data) == (dead_id, {"why": "test"})
    info = await cluster.group_info(stream, "g")
    assert (info.pending, info.lag, info.length) == (2, 0, 5)

    restarted = await open_backend(cluster_url, {"key_prefix": "t:"})
    try:
        own = await restarted.read(stream, "g", "other", count=10, block=None)
        assert sorted(m.id for m in own) == [ids[3], ids[4]]
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
