"""Live counters of a `StreamProcessor`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ProcessorStats"]


@dataclass
class ProcessorStats:
    """Counters since the processor was created; read them at any time.

    Attributes:
        handled: Handler calls that returned (their messages are acked or being acked).
        failed: Handler calls that raised.
        retried: Failed messages scheduled for another delivery.
        dead_lettered: Messages written to the dead-letter stream.
        claimed: Messages taken over from stopped consumers.
        in_flight: Handler calls running right now.
        acked: Messages acknowledged on the broker.
        reconnects: Broker calls that failed and were retried after a backoff.
    """

    handled: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    in_flight: int = 0
    acked: int = 0
    reconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)
