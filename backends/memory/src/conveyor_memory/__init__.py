"""conveyor's in-process ``memory://`` backend: the embedded default and the test double."""

from conveyor_memory.backend import (
    CAPABILITIES,
    MemoryBackend,
    MemoryBroker,
    MemorySession,
    MemorySettings,
    open_backend,
    reset,
)

__all__ = [
    "CAPABILITIES",
    "MemoryBackend",
    "MemoryBroker",
    "MemorySession",
    "MemorySettings",
    "open_backend",
    "reset",
]
