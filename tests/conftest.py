"""Shared fixtures: a fresh memory:// broker per test, and a fake clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import conveyor
from conveyor.testing import FakeClock
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
