"""`map_error`: the one place where nats-py exceptions become `conveyor.errors`.

JetStream API errors are classified by their ``err_code`` (nats-server's
``server/errors.json``), connection trouble by exception class; never by message text.
"""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

from conveyor.errors import (
    BackendError,
    BrokerUnavailableError,
    ConfigConflictError,
    ConveyorError,
    GroupNotFoundError,
)

__all__ = [
    "CONSUMER_ALREADY_EXISTS",
    "CONSUMER_NAME_EXISTS",
    "CONSUMER_NOT_FOUND",
    "MESSAGE_NOT_FOUND",
    "STREAM_NAME_IN_USE",
    "STREAM_NOT_FOUND",
    "STREAM_SUBJECT_OVERLAP",
    "map_error",
]

# JetStream API error codes (nats-server's server/errors.json).
CONSUMER_NAME_EXISTS = 10013
CONSUMER_NOT_FOUND = 10014
MESSAGE_NOT_FOUND = 10037
STREAM_NAME_IN_USE = 10058
STREAM_NOT_FOUND = 10059
STREAM_SUBJECT_OVERLAP = 10065
CONSUMER_ALREADY_EXISTS = 10148

_NOT_FOUND = {CONSUMER_NOT_FOUND, STREAM_NOT_FOUND}
_CONFLICT = {
    CONSUMER_NAME_EXISTS,
    STREAM_NAME_IN_USE,
    STREAM_SUBJECT_OVERLAP,
    CONSUMER_ALREADY_EXISTS,
}
_UNREACHABLE = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.UnexpectedEOF,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.TooManyStalledMsgsError,
    asyncio.TimeoutError,
    OSError,
)


def map_error(exc: BaseException, action: str) -> ConveyorError:
    """Translate a nats-py exception raised while doing `action` into `conveyor.errors`."""
    if isinstance(exc, ConveyorError):
        return exc
    if isinstance(exc, nats.js.errors.APIError) and not isinstance(
        exc, nats.js.errors.ServiceUnavailableError
    ):
        detail = f"{action}: JetStream error {exc.err_code} ({exc.description})"
        if exc.err_code in _NOT_FOUND:
            return GroupNotFoundError(detail)
        if exc.err_code in _CONFLICT:
            return ConfigConflictError(
                f"{detail}; an existing stream or consumer was configured differently:"
                " delete it or adjust the options to match"
            )
        return BackendError(detail)
    if isinstance(exc, nats.errors.NoRespondersError):
        return GroupNotFoundError(f"{action}: nothing answers (stream or consumer deleted?)")
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return GroupNotFoundError(f"{action}: no JetStream stream stores this subject")
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return BrokerUnavailableError(
            f"{action}: JetStream is unavailable (is the server running with -js?)"
        )
    if isinstance(exc, _UNREACHABLE):
        return BrokerUnavailableError(f"{action}: NATS unreachable ({type(exc).__name__})")
    return BackendError(f"{action}: {type(exc).__name__}: {exc}")
