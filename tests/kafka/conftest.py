"""Fixtures for the Kafka backend tests: a fresh stream name and a backend opener.

The broker (`kafka_url`, shared with the engine tests) comes from tests/conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

import conveyor
from conveyor.options import split_options
from conveyor_kafka import KafkaBackend

OpenKafka = Callable[..., Awaitable[KafkaBackend]]


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
