"""Fixtures for the Kafka backend tests: one broker per session and a backend opener.

The broker comes from ``CONVEYOR_TEST_KAFKA_URL``, else 127.0.0.1:9092 if it answers, else
a Tansu process started on a free port (`conveyor_kafka.testing.tansu_broker`), else Apache
Kafka in Docker through testcontainers. Topics the tests create are deleted at the end of
the session (only names carrying the tests' prefixes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient

import conveyor
from conveyor.options import split_options
from conveyor.testing.servers import KAFKA as SHARED_KAFKA
from conveyor.testing.servers import find_server
from conveyor_kafka import KafkaBackend, KafkaSettings
from conveyor_kafka.testing import tansu_broker

#: Stream-name prefixes of the Kafka tests; their topics are deleted after the session.
TEST_PREFIXES = ("kt-", "conf_3a", "events_3abot-", "a.b-c_5fd-", "with_20space")

OpenKafka = Callable[..., Awaitable[KafkaBackend]]


#: The shared spec, with Tansu started locally before falling back to a container.
KAFKA = dataclasses.replace(SHARED_KAFKA, launcher=tansu_broker)


async def _delete_test_topics(url: str) -> None:
    base, options = split_options(url)
    settings = KafkaSettings.from_url(base, options)
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(TEST_PREFIXES)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """URL of the Kafka-protocol broker under test (skips, or fails under CI=true)."""
    with find_server(KAFKA) as url:
        yield url
        asyncio.run(_delete_test_topics(url))


@pytest.fixture
def stream() -> str:
    """A fresh stream name for one test."""
    return f"kt-{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def open_kafka(kafka_url: str) -> AsyncIterator[OpenKafka]:
    """Open `KafkaBackend`s on the test broker with option overrides; closed at teardown."""
    base, url_options = split_options(kafka_url)
    opened: list[KafkaBackend] = []

    async def factory(**overrides: Any) -> KafkaBackend:
        backend = await conveyor.connect(base, **{**url_options, **overrides})
        assert isinstance(backend, KafkaBackend)
        opened.append(backend)
        return backend

    yield factory
    for backend in opened:
        await backend.aclose()
