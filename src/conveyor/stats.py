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
        dead_letter_failures: Messages that could not be dead-lettered (left pending).
        outages: Times the broker became unreachable (the first failed call of a run).
        outage_seconds: Total real seconds from each outage's first failed call to the
            next call that succeeded.
    """

    handled: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    in_flight: int = 0
    acked: int = 0
    reconnects: int = 0
    dead_letter_failures: int = 0
    outages: int = 0
    outage_seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        """The counters as a plain dict."""
        return asdict(self)
