"""Shared fixtures: a fresh memory:// broker per test, a fake clock, the brokers' URLs,
and `engine`, which runs a test on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import conveyor
from conveyor import Capabilities, StreamBackend, StreamProcessor
from conveyor.options import split_options
from conveyor.testing import FakeClock, Features
from conveyor.testing.servers import KAFKA, NATS, REDIS, find_server
from conveyor_memory import MemoryBackend, reset


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def memory(clock: FakeClock) -> AsyncIterator[MemoryBackend]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    backend = await conveyor.connect(f"memory://{name}", clock=clock)
    assert isinstance(backend, MemoryBackend)
    yield backend
    await backend.aclose()
    reset(name)


# -- brokers, shared by the backend suites and the engine tests --------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the Redis server under test (skips, or fails under CI=true, without one)."""
    with find_server(REDIS) as url:
        yield url


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """URL of the NATS server under test (skips, or fails under CI=true, without one)."""
    with find_server(NATS) as url:
        yield url


#: Stream-name prefixes of the Kafka tests; their topics are deleted after the session.
KAFKA_TEST_PREFIXES = ("kt-", "et-", "conf_3a", "events_3abot-", "a.b-c_5fd-", "with_20space")


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """URL of the Kafka-protocol broker under test: ``CONVEYOR_TEST_KAFKA_URL``, else
    127.0.0.1:9092 if it answers, else Tansu started on a free port, else Apache Kafka in
    Docker (skips, or fails under CI=true, without any). The tests' topics are deleted at
    the end of the session."""
    from conveyor_kafka.testing import tansu_broker

    spec = dataclasses.replace(KAFKA, launcher=tansu_broker)
    with find_server(spec) as url:
        yield url
        asyncio.run(_delete_kafka_test_topics(url))


async def _delete_kafka_test_topics(url: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from conveyor_kafka import KafkaSettings

    base, options = split_options(url)
    admin = AIOKafkaAdminClient(**KafkaSettings.from_url(base, options).client_kwargs())
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(KAFKA_TEST_PREFIXES)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


# -- the engine on every backend ----------------------------------------------------------


@dataclass
class EngineEnv:
    """One backend for an engine test, with what the test needs to drive it.

    Attributes:
        kind: ``memory``, ``redis``, ``nats``, ``kafka`` or ``sqlite``.
        backend: Opened for this test (closed after it).
        clock: The processors' clock; on memory it is also the broker's clock.
        stream: A fresh stream name.
        features: What the backend declares (see `conveyor.testing.Features`).
        claim_idle: Idle seconds for claim tests: fake seconds on memory, real elsewhere.
    """

    kind: str
    backend: StreamBackend
    clock: FakeClock
    stream: str
    features: Features
    claim_idle: float
    publish_raw: Callable[[str, bytes], Awaitable[None]]
    delete_stream: Callable[[str], Awaitable[object]] | None
    opened: list[StreamBackend] = field(default_factory=list)
    open_another: Callable[[], Awaitable[StreamBackend]] | None = None

    @property
    def fake_time(self) -> bool:
        """True where the broker's idle times follow `clock` (memory)."""
        return self.kind == "memory"

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    async def elapse(self, seconds: float) -> None:
        """Let `seconds` pass for the engine and for the broker's idle times."""
        if self.fake_time:
            await self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)
            await self.clock.advance(seconds)

    def processor(self, consumer: str = "c1", **options: Any) -> StreamProcessor:
        options.setdefault("clock", self.clock)
        options.setdefault("claim_idle", self.claim_idle)
        return StreamProcessor(self.backend, self.stream, "billing", consumer, **options)


ENGINE_BACKENDS = ["memory", "redis", "nats", "kafka", "sqlite"]


@pytest_asyncio.fixture(params=ENGINE_BACKENDS)
async def engine(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[EngineEnv]:
    """An `EngineEnv` on each backend in turn (anyio's backend fixture is the model)."""
    kind: str = request.param
    tag = uuid.uuid4().hex[:10]
    cleanup: list[Callable[[], Awaitable[None]]] = []
    if kind == "memory":
        env = await _memory_env(f"engine-{tag}", clock)
        cleanup.append(_forget_memory(f"engine-{tag}"))
    elif kind == "redis":
        env = await _redis_env(request.getfixturevalue("redis_url"), tag, clock, cleanup)
    elif kind == "nats":
        env = await _nats_env(request.getfixturevalue("nats_url"), tag, clock, cleanup)
    elif kind == "sqlite":
        env = await _sqlite_env(request.getfixturevalue("tmp_path"), clock)
    else:
        env = await _kafka_env(request.getfixturevalue("kafka_url"), tag, clock)
    env.opened.append(env.backend)
    yield env
    for backend in env.opened:
        await backend.aclose()
    for step in cleanup:
        await step()


def _forget_memory(name: str) -> Callable[[], Awaitable[None]]:
    async def forget() -> None:
        reset(name)

    return forget


async def _memory_env(name: str, clock: FakeClock) -> EngineEnv:
    backend = await conveyor.connect(f"memory://{name}", clock=clock)
    assert isinstance(backend, MemoryBackend)

    async def publish_raw(stream: str, raw: bytes) -> None:
        await backend.publish_raw(stream, raw.decode("utf-8", "surrogateescape"))

    return EngineEnv(
        "memory",
        backend,
        clock,
        "orders",
        Features(durable=False),
        claim_idle=30.0,
        publish_raw=publish_raw,
        delete_stream=backend.delete_stream,
    )


async def _redis_env(
    url: str, tag: str, clock: FakeClock, cleanup: list[Callable[[], Awaitable[None]]]
) -> EngineEnv:
    from redis.asyncio import Redis

    from conveyor_redis import RedisBackend

    base, query = split_options(url)
    prefix = f"conveyor-engine-{tag}:"
    backend = await conveyor.connect(base, **query, key_prefix=prefix)
    assert isinstance(backend, RedisBackend)
    raw = Redis.from_url(base, decode_responses=False, protocol=2)

    async def publish_raw(stream: str, payload: bytes) -> None:
        await raw.xadd(backend.settings.key(stream), {b"conveyor.payload": payload})

    async def delete_stream(stream: str) -> None:
        await raw.delete(backend.settings.key(stream))

    async def drop_keys() -> None:
        keys = [k async for k in raw.scan_iter(match=prefix.encode() + b"*", count=1000)]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()

    cleanup.append(drop_keys)
    return EngineEnv(
        "redis",
        backend,
        clock,
        f"orders:{tag}",
        Features(),
        claim_idle=1.0,
        publish_raw=publish_raw,
        delete_stream=delete_stream,
    )


async def _nats_env(
    url: str, tag: str, clock: FakeClock, cleanup: list[Callable[[], Awaitable[None]]]
) -> EngineEnv:
    import nats
    from conveyor_nats import NatsBackend

    stream_prefix = f"E{tag}_"
    backend = await conveyor.connect(
        url, stream_prefix=stream_prefix, subject_prefix=f"conveyor-engine.{tag}"
    )
    assert isinstance(backend, NatsBackend)
    nc = await nats.connect(url)
    js = nc.jetstream()

    async def publish_raw(stream: str, payload: bytes) -> None:
        # the JetStream stream must exist (and the group as the processors will ask it)
        async with backend.open_consumer(stream, "billing", "raw", claim_idle=1.0):
            await js.publish(backend.subject(stream), payload)

    async def delete_stream(stream: str) -> None:
        await js.delete_stream(backend.stream_name(stream))

    async def drop_streams() -> None:
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(stream_prefix):
                await js.delete_stream(info.config.name)
        await nc.close()

    cleanup.append(drop_streams)
    return EngineEnv(
        "nats",
        backend,
        clock,
        f"orders:{tag}",
        Features(),
        claim_idle=1.0,
        publish_raw=publish_raw,
        delete_stream=delete_stream,
    )


async def _kafka_env(url: str, tag: str, clock: FakeClock) -> EngineEnv:
    from aiokafka import AIOKafkaProducer

    from conveyor_kafka import KafkaBackend
    from conveyor_kafka.settings import topic_name

    base, query = split_options(url)
    backend = await conveyor.connect(base, **query)
    assert isinstance(backend, KafkaBackend)

    async def publish_raw(stream: str, payload: bytes) -> None:
        async with backend.open_consumer(stream, "billing", "raw"):  # creates the topic
            pass
        producer = AIOKafkaProducer(**backend.settings.client_kwargs())
        await producer.start()
        try:
            await producer.send_and_wait(topic_name(stream), payload)
        finally:
            await producer.stop()

    return EngineEnv(
        "kafka",
        backend,
        clock,
        f"et-{tag}",
        Features(ordering="partition", exact_delivery_count=False, contiguous_ack=True),
        claim_idle=6.0,
        publish_raw=publish_raw,
        delete_stream=None,  # Tansu mishandles a topic deleted and recreated under readers
    )


async def _sqlite_env(directory: Path, clock: FakeClock) -> EngineEnv:
    from conveyor_sqlite import SqliteBackend
    from conveyor_sqlite.testing import delete_stream, publish_raw

    backend = await conveyor.connect(f"sqlite:///{directory / 'engine.db'}")
    assert isinstance(backend, SqliteBackend)

    async def write_raw(stream: str, payload: bytes) -> None:
        # another connection to the file, as a foreign producer would write
        await asyncio.to_thread(publish_raw, backend.file, stream, payload)

    async def drop_stream(stream: str) -> None:
        await asyncio.to_thread(delete_stream, backend.file, stream)

    return EngineEnv(
        "sqlite",
        backend,
        clock,
        "orders",
        Features(),
        claim_idle=1.0,
        publish_raw=write_raw,
        delete_stream=drop_stream,
    )


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage after every test, so that a connection a test leaked is reported
    (as an unraisable ResourceWarning) against that test, not at the end of the session."""
    yield
    gc.collect()
