"""kafka:// passes the conformance suite (on Tansu unless CONVEYOR_TEST_KAFKA_URL is set).

No restartable broker is declared: Tansu keeps its data in memory only, so a restart
would wipe the topics rather than test a reconnect.
"""

from __future__ import annotations

import pytest

import conveyor
from conveyor.options import split_options
from conveyor.protocol import StreamBackend
from conveyor.testing import Features
from conveyor.testing.conformance import BackendConformance, OpenBackend

pytestmark = pytest.mark.slow


class TestKafkaConformance(BackendConformance):
    features = Features(
        ordering="partition",
        exact_delivery_count=False,
        contiguous_ack=True,
        deletes=False,
        lists_idle_groups=False,  # Tansu's ListGroups leaves out groups nobody joined yet
        exact_group_names=False,  # and cuts group ids at "/", percent-encodes "#"
    )
    claim_idle = 2.0
    timeout = 20.0

    @pytest.fixture
    def open_backend(self, kafka_url: str) -> OpenBackend:
        base, options = split_options(kafka_url)

        async def factory() -> StreamBackend:
            return await conveyor.connect(base, **options)

        return factory
