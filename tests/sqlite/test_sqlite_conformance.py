"""The shared conformance suite on ``sqlite://``, a fresh database file per test.

No `RestartableBroker` is declared: there is no broker process to restart. What a
restart checks elsewhere is covered here by the backend's own tests: every connection to
the file closed and reopened (`test_nothing_lost_across_close_and_reopen`, and the
``kill -9`` tests in test_sqlite_processes.py), and an outage (the file locked by another
process past ``busy_timeout``: `BrokerUnavailableError`, retried by the engine) in
test_sqlite_backend.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor
from conveyor.protocol import StreamBackend
from conveyor.testing import Features
from conveyor.testing.conformance import BackendConformance, OpenBackend


class TestSqliteConformance(BackendConformance):
    # Redis semantics in a file: order per stream, exact delivery counts in the pending
    # table, acks per entry, durable across processes.
    features = Features(
        ordering="stream", exact_delivery_count=True, contiguous_ack=False, durable=True
    )
    claim_idle = 0.5
    timeout = 10.0

    @pytest.fixture
    def open_backend(self, tmp_path: Path) -> OpenBackend:
        url = f"sqlite:///{tmp_path / 'conformance.db'}"

        async def factory() -> StreamBackend:
            return await conveyor.connect(url)

        return factory
