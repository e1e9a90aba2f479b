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
from conveyor.testing.conformance import BackendConformance, OpenBackend


class TestRedisConformance(BackendConformance):
    """Every conformance test, through ``conveyor.connect("redis://...")``."""

    claim_idle = 0.5
    timeout = 10.0

    @pytest.fixture
    def open_backend(self, redis_url: str, key_prefix: str, raw: Redis) -> OpenBackend:
        base, query = split_options(redis_url)

        async def factory() -> StreamBackend:
            return await conveyor.connect(base, **query, key_prefix=key_prefix)

        return factory
