"""The shared conformance suite on NATS JetStream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

import conveyor
from conveyor.protocol import StreamBackend
from conveyor.testing import Features
from conveyor.testing.conformance import BackendConformance, OpenBackend, RestartableBroker

StartNats = Callable[..., Any]  # the start_nats fixture of conftest.py


class TestNatsConformance(BackendConformance):
    """Every conformance test, through ``conveyor.connect("nats://...")``."""

    features = Features()
    # JetStream's ack_wait (= claim_idle): claim and heartbeat tests run on it.
    claim_idle = 1.0
    timeout = 15.0

    @pytest.fixture
    def open_backend(
        self, nats_url: str, prefix_options: dict[str, str], stream_cleanup: None
    ) -> OpenBackend:
        options = prefix_options

        async def factory() -> StreamBackend:
            return await conveyor.connect(f"{nats_url}?{urlencode(options)}")

        return factory

    @pytest.fixture
    def restartable_broker(self, start_nats: StartNats) -> RestartableBroker:
        """A private ``nats-server -js`` (free port, temporary store), killed by its PID and
        started again on the same port and store."""
        server = start_nats()
        return RestartableBroker(open_backend=server.open_backend, restart=server.arestart)
