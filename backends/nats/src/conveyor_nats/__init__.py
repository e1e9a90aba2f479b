"""conveyor's NATS JetStream backend: ``nats://`` and ``tls://`` URLs."""

from conveyor_nats.backend import CAPABILITIES, NatsBackend, open_backend
from conveyor_nats.errors import map_error
from conveyor_nats.names import escape_name, unescape_name
from conveyor_nats.settings import NatsSettings

__all__ = [
    "CAPABILITIES",
    "NatsBackend",
    "NatsSettings",
    "open_backend",
    "map_error",
    "escape_name",
    "unescape_name",
]
