"""The shared conformance suite on Redis Streams.

(Named ``test_redis_conformance.py``, not ``test_conformance.py``: test directories have
no ``__init__.py`` — ``tests/redis`` must not become a package shadowing redis-py — so
test module basenames must be unique across backends.)
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

import conveyor
from conveyor.options import split_options
from conveyor.protocol import StreamBackend
from conveyor.testing import Features
from conveyor.testing.conformance import BackendConformance, OpenBackend, RestartableBroker


class TestRedisConformance(BackendConformance):
    """Every conformance test, through ``conveyor.connect("redis://...")``; the restart
    test on a redis-server of its own (`restartable_redis` in conftest.py)."""

    # Redis orders entries per stream, counts deliveries exactly in the PEL, acks single
    # entries, and keeps data across restarts (AOF in the restart test).
    features = Features(
        ordering="stream", exact_delivery_count=True, contiguous_ack=False, durable=True
    )
    claim_idle = 0.5
    timeout = 10.0

    @pytest.fixture
    def open_backend(self, redis_url: str, key_prefix: str, raw: Redis) -> OpenBackend:
        base, query = split_options(redis_url)

        async def factory() -> StreamBackend:
            # a 1 MiB entry limit, so the size-limit test need not send 512 MiB
            return await conveyor.connect(
                base, **query, key_prefix=key_prefix, max_message_bytes=1_048_576
            )

        return factory

    @pytest.fixture
    def restartable_broker(self, restartable_redis: RestartableBroker) -> RestartableBroker:
        return restartable_redis
