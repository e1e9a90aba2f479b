"""`ProcessorOptions`: every tuning knob of a `StreamProcessor`, validated once.

`StreamProcessor` takes them as keyword arguments and `App.handler(...)` passes them
through, so both accept exactly the same names with the same checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.clock import Clock, SystemClock
from conveyor.errors import ConfigurationError
from conveyor.message import Message
from conveyor.middleware import Middleware, check_middleware
from conveyor.protocol import StartPosition

__all__ = ["ErrorHook", "ProcessorOptions", "dead_letter_stream_for"]

ErrorHook = Callable[[Message, BaseException], None]


def dead_letter_stream_for(stream: str) -> str:
    """Default dead-letter stream of `stream`: ``<stream>.dead``."""
    return f"{stream}.dead"


def _number(name: str, value: object, *, minimum: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ConfigurationError(f"{name} must be {bound}, got {value!r}")


def _integer(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ProcessorOptions:
    """How a processor consumes: the keyword options of `StreamProcessor` and of
    `App.handler`.

    Attributes:
        batch_count: Messages fetched per read (and the unit of ack batches).
        poll_interval: Longest a read waits for new messages (blocking backends) or the
            sleep between empty reads (storages that cannot block).
        concurrency: Handler calls in flight at once.
        retry_delay: Seconds before a failed message is delivered again; doubles with
            each delivery (with jitter) up to `max_retry_delay`.
        max_retry_delay: Cap of the retry delay.
        claim_idle: Seconds after which pending messages of a consumer that stopped
            heartbeating may be taken by this one. A live consumer keeps its messages
            however long its handler runs (heartbeats every `claim_idle / 3`).
        max_deliveries: Deliveries before a failing message is dead-lettered.
        dead_letter_stream: Where dead letters go; default ``<stream>.dead``.
        shutdown_timeout: Real seconds `stop()` waits for running handlers (then cancels
            them; their messages stay pending) and again (at least 1 s) for the ack in
            flight and the last acks together.
        start: ``"earliest"`` (default: a new group sees messages published before it
            existed) or ``"latest"``.
        connect_attempts: Attempts to open the consumer at start before `start()` raises
            `BrokerUnavailableError`.
        on_error: Called with (message, exception) for every handler failure; an
            exception it raises is logged and ignored.
        message: Force Message-style (True) or payload-style (False) handlers; None
            detects it from the handler's first annotation.
        clock: Time source for retry delays, heartbeats and backoffs (tests pass
            `conveyor.testing.FakeClock`).
        middleware: `conveyor.Middleware` run around the handler, outermost first
            (an `App`'s own run outside these); see `conveyor.middleware`.

    Raises:
        ConfigurationError: an option out of range or of the wrong type.
    """

    batch_count: int = 10
    poll_interval: float = 1.0
    concurrency: int = 1
    retry_delay: float = 1.0
    max_retry_delay: float = 60.0
    claim_idle: float = 60.0
    max_deliveries: int = 5
    dead_letter_stream: str | None = None
    shutdown_timeout: float = 10.0
    start: StartPosition = "earliest"
    connect_attempts: int = 5
    on_error: ErrorHook | None = None
    message: bool | None = None
    clock: Clock = dataclasses.field(default_factory=SystemClock)
    middleware: tuple[Middleware, ...] = ()

    def __post_init__(self) -> None:
        for name in ("batch_count", "concurrency", "max_deliveries", "connect_attempts"):
            _integer(name, getattr(self, name), minimum=1)
        _number("poll_interval", self.poll_interval, minimum=0, strict=True)
        _number("claim_idle", self.claim_idle, minimum=0, strict=True)
        for name in ("retry_delay", "max_retry_delay", "shutdown_timeout"):
            _number(name, getattr(self, name), minimum=0)
        if self.start not in ("earliest", "latest"):
            raise ConfigurationError(f"start must be 'earliest' or 'latest', got {self.start!r}")
        if self.dead_letter_stream is not None and (
            not isinstance(self.dead_letter_stream, str) or not self.dead_letter_stream
        ):
            raise ConfigurationError(
                f"dead_letter_stream must be a non-empty str, got {self.dead_letter_stream!r}"
            )
        if self.on_error is not None and not callable(self.on_error):
            raise ConfigurationError(f"on_error must be callable, got {self.on_error!r}")
        if self.message not in (None, True, False):
            raise ConfigurationError(f"message must be None, True or False, got {self.message!r}")
        if not isinstance(self.clock, Clock):
            raise ConfigurationError(f"clock must be a conveyor.clock.Clock, got {self.clock!r}")
        try:
            object.__setattr__(self, "middleware", check_middleware(self.middleware))
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from None

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ProcessorOptions:
        """Build options from keyword arguments (``clock=None`` means the system clock).

        Raises:
            ConfigurationError: an unknown option (listing the valid ones) or a bad value.
        """
        unknown = sorted(set(options) - cls.names())
        if unknown:
            raise ConfigurationError(
                f"unknown processor option(s) {', '.join(unknown)}; valid:"
                f" {', '.join(sorted(cls.names()))}"
            )
        given = dict(options)
        if given.get("clock", SystemClock) is None:
            del given["clock"]
        return cls(**given)

    def dead_letter_stream_of(self, stream: str) -> str:
        """Where dead letters of `stream` go."""
        return self.dead_letter_stream or dead_letter_stream_for(stream)
