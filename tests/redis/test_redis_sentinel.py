"""``redis+sentinel://``: a primary, a replica and three Sentinels started by the test; the
primary is SIGKILLed under load and processing resumes on the promoted replica.

Redis replicates asynchronously: a publish the primary confirmed but had not yet sent to
the replica is lost when the primary dies. With ``wait_replicas=1`` every publish waits for
the replica (``WAIT``), and nothing confirmed is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

import conveyor
from conveyor import StreamProcessor
from conveyor.errors import BrokerUnavailableError, ConfigurationError
from conveyor.testing import wait_until
from conveyor.testing.processes import (
    LocalRedis,
    LocalServer,
    SilentServer,
    free_port,
    publish_steadily,
)
from conveyor.testing.servers import unavailable
from conveyor_redis import RedisSettings

pytestmark = pytest.mark.slow

SERVICE = "conveyor-test"


class Sentinels:
    """A primary, one replica and three Sentinels watching them (down after 1 s)."""

    def __init__(self, directory: Path) -> None:
        try:
            self.primary = LocalRedis(directory / "primary", free_port(), ["--save", ""])
        except FileNotFoundError:
            unavailable("redis-server is not installed")
        self.replica = LocalRedis(
            directory / "replica",
            free_port(),
            ["--save", "", "--replicaof", "127.0.0.1", str(self.primary.port)],
        )
        self.sentinels: list[LocalServer] = []
        for index in range(3):
            port = free_port()
            config = directory / f"sentinel-{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
            )
            server = LocalServer([self.primary.command[0], str(config), "--sentinel"], port)
            server.probe, server.expect = b"PING\r\n", b"+PONG"
            self.sentinels.append(server)
        for path in (self.primary.directory, self.replica.directory):
            path.mkdir()

    async def promoted(self) -> None:
        """Wait until the Sentinels name the replica as the primary."""
        client = Redis(host="127.0.0.1", port=self.sentinels[0].port, decode_responses=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                address = await client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "get-master-addr-by-name", SERVICE
                )
                if address and int(address[1]) == self.replica.port:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the Sentinels never promoted the replica")
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start()

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.primary):
            server.stop(kill=True)


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    group = Sentinels(tmp_path)
    group.start()
    try:
        yield group
    finally:
        group.stop()


async def _replicating(port: int) -> None:
    """Wait until the replica on `port` has caught up with its primary once."""
    client = Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        await wait_until(lambda: True, timeout=1)
        deadline = time.monotonic() + 20
        while (await client.info("replication")).get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError("the replica never synced")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


def test_sentinel_urls_parse() -> None:
    settings = RedisSettings.from_url(
        "redis+sentinel://u:pw@s1:26380,s2/mymaster/2", {"wait_replicas": "1"}
    )
    assert settings.sentinel
    assert settings.hosts == (("s1", 26380), ("s2", 26379))
    assert (settings.service_name, settings.db, settings.wait_replicas) == ("mymaster", 2, 1)
    assert "pw" not in settings.safe_url
    assert settings.safe_url == "redis+sentinel://u:***@s1:26380,s2:26379/mymaster/2"
    with pytest.raises(ConfigurationError, match="service"):
        RedisSettings.from_url("redis+sentinel://s1:26379/")
    with pytest.raises(ConfigurationError, match="wait_replicas"):
        RedisSettings.from_url("redis://h", {"wait_replicas": "-1"})


@pytest.mark.timeout(150)
@pytest.mark.parametrize("wait_replicas", [1, 0])
async def test_processing_resumes_on_the_promoted_replica(
    sentinels: Sentinels, wait_replicas: int
) -> None:
    await _replicating(sentinels.replica.port)
    options = {"wait_replicas": wait_replicas, "socket_timeout": 3.0, "retries": 1}
    publisher = await conveyor.connect(sentinels.url, **options)
    consumer = await conveyor.connect(sentinels.url, **options)
    confirmed: set[int] = set()
    handled: Counter[int] = Counter()

    async def handle(payload: dict[str, Any]) -> None:
        handled[payload["n"]] += 1

    processor = StreamProcessor(consumer, "orders", "g", "w", claim_idle=2.0, retry_delay=0.1)
    processor.set_callback(handle)
    try:
        async with processor:
            sender = asyncio.ensure_future(
                publish_steadily(
                    publisher, "orders", 600, confirmed, rate=1 / 0.002, retry_pause=0.1
                )
            )
            await wait_until(lambda: len(confirmed) >= 150, timeout=30)
            sentinels.primary.stop(kill=True)
            killed_at = time.monotonic()
            mark = max(confirmed)
            await sentinels.promoted()
            # the old primary comes back as a replica of the new one (its WAIT needs one)
            await asyncio.to_thread(sentinels.primary.start)
            await wait_until(lambda: any(n > mark for n in handled), timeout=60)
            recovery = time.monotonic() - killed_at
            await asyncio.wait_for(sender, 120)
            after = {n for n in confirmed if n > mark}
            await wait_until(lambda: after <= set(handled), timeout=60)
            assert processor.is_running
    finally:
        await publisher.aclose()
        await consumer.aclose()
    lost = confirmed - set(handled)
    print(  # noqa: T201 - the closing note's fault table reads this
        f"sentinel failover wait_replicas={wait_replicas}: published={len(confirmed)}"
        f" lost={len(lost)} duplicates={sum(c - 1 for c in handled.values() if c > 1)}"
        f" recovery={recovery:.2f}s"
    )
    assert processor.stats.outages >= 1
    if wait_replicas:
        assert lost == set()  # WAIT made every confirmed publish survive the failover


async def test_a_silent_sentinel_fails_once_within_the_connect_timeout() -> None:
    """A Sentinel port that accepts connections and never answers: each discovery fails
    within ``socket_connect_timeout`` (one took 40 s: redis-py read the Sentinel's reply
    with ``socket_timeout`` and retried it), saying which Sentinel did not answer. (The
    command's own `retries` repeat the discovery: 0 here.)"""
    with SilentServer() as silent:
        backend = await conveyor.connect(
            f"redis+sentinel://127.0.0.1:{silent.port}/{SERVICE}?socket_connect_timeout=1&retries=0"
        )
        started = time.monotonic()
        try:
            with pytest.raises(BrokerUnavailableError) as info:
                await backend.publish("orders", {"n": 1})
        finally:
            await backend.aclose()
        took = time.monotonic() - started
        accepted = silent.accepted
    assert took < 1 + 2, took
    assert accepted == 1  # asked once, not retried
    assert str(info.value).endswith(
        f"no Sentinel named a primary for {SERVICE!r}: 127.0.0.1:{silent.port} accepted the"
        " connection but did not answer like a Redis Sentinel within 1.0 s"
        " (socket_connect_timeout)"
    )


async def test_addresses_that_are_not_sentinels_are_passed_over(
    sentinels: Sentinels, redis_url: str, nats_url: str
) -> None:
    """A silent port, a plain Redis server and another service (NATS) listed before a
    real Sentinel: each is passed over for the next, and named when none works."""
    plain = urlsplit(redis_url)
    other = urlsplit(nats_url)
    port = sentinels.sentinels[0].port
    with SilentServer() as silent:
        wrong = [
            f"127.0.0.1:{silent.port}",
            f"{plain.hostname}:{plain.port}",
            f"{other.hostname}:{other.port}",
        ]
        backend = await conveyor.connect(
            f"redis+sentinel://{','.join([*wrong, f'127.0.0.1:{port}'])}/{SERVICE}/0"
            "?socket_connect_timeout=1"
        )
        started = time.monotonic()
        try:
            entry = await backend.publish("orders", {"n": 1})
        finally:
            await backend.aclose()
        took = time.monotonic() - started
        assert entry
        assert took < 1 + 2, took
        unknown = await conveyor.connect(
            f"redis+sentinel://{','.join([*wrong[1:], f'127.0.0.1:{port}'])}/nope/0?retries=0"
        )
        try:
            with pytest.raises(BrokerUnavailableError) as info:
                await unknown.publish("orders", {"n": 1})
        finally:
            await unknown.aclose()
    message = str(info.value)
    assert f"no Sentinel named a primary for 'nope': {wrong[1]} is not a Sentinel (" in message
    assert f"; {wrong[2]} is not a Sentinel (" in message
    assert "does not speak the Redis protocol" in message
    assert message.endswith(f"; 127.0.0.1:{port}: the primary of 'nope' is not monitored there")
