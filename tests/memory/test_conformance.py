"""memory:// passes the conformance suite."""

from __future__ import annotations

import uuid

import pytest

import conveyor
from conveyor.protocol import StreamBackend
from conveyor.testing import Features
from conveyor.testing.conformance import BackendConformance, OpenBackend


class TestMemoryConformance(BackendConformance):
    features = Features(durable=False)
    claim_idle = 0.3
    timeout = 5.0

    @pytest.fixture
    def open_backend(self) -> OpenBackend:
        name = f"conformance-{uuid.uuid4().hex[:8]}"

        async def factory() -> StreamBackend:
            return await conveyor.connect(f"memory://{name}")

        return factory
