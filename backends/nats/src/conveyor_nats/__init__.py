"""conveyor's NATS JetStream backend: ``nats://`` and ``tls://`` URLs."""

from conveyor_nats.backend import CAPABILITIES, NatsBackend, open_backend
from conveyor_nats.errors import ERRORS
from conveyor_nats.names import escape_name, unescape_name
from conveyor_nats.session import NatsSession
from conveyor_nats.settings import NatsSettings

__all__ = [
    "CAPABILITIES",
    "ERRORS",
    "NatsBackend",
    "NatsSession",
    "NatsSettings",
    "open_backend",
    "escape_name",
    "unescape_name",
]
