"""The shared conformance suite on NATS JetStream."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

import conveyor
from conveyor.protocol import StreamBackend
from conveyor.testing.conformance import BackendConformance, OpenBackend


class TestNatsConformance(BackendConformance):
    """Every conformance test, through ``conveyor.connect("nats://...")``."""

    # JetStream's ack_wait (= claim_idle): claim and heartbeat tests run on it.
    claim_idle = 1.0
    timeout = 15.0

    @pytest.fixture
    def open_backend(
        self, nats_url: str, prefix_options: dict[str, str], stream_cleanup: None
    ) -> OpenBackend:
        async def factory() -> StreamBackend:
            return await conveyor.connect(f"{nats_url}?{urlencode(prefix_options)}")

        return factory
