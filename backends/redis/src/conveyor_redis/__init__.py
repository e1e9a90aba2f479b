"""conveyor's Redis Streams backend: ``redis://``, ``rediss://`` and ``redis+cluster://``.

`open_backend` is the entry point `conveyor.connect()` finds; a `RedisBackend` opens a
`RedisSession` per consumer; `StreamConsumer` is the old module's three-method storage
over a caller's own ``redis.asyncio.Redis``.
"""

from conveyor_redis.backend import CAPABILITIES, RedisBackend, open_backend
from conveyor_redis.consumer import StreamConsumer
from conveyor_redis.session import RedisSession
from conveyor_redis.settings import RedisSettings

__all__ = [
    "CAPABILITIES",
    "RedisBackend",
    "RedisSession",
    "RedisSettings",
    "StreamConsumer",
    "open_backend",
]
