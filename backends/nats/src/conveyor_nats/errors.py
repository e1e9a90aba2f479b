"""`ERRORS`: the one table that turns nats-py exceptions into `conveyor.errors`.

JetStream API errors are classified by their ``err_code`` (nats-server's
``server/errors.json``), connection trouble by exception class; never by message text.
Every call to NATS is wrapped in ``with ERRORS.mapping(action, closed=...):`` (see
`conveyor.errormap.ErrorMap`); an error raised after the backend or session was closed
becomes `BackendClosedError`.
"""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

from conveyor.errormap import ErrorMap, Rule
from conveyor.errors import BrokerUnavailableError, ConfigConflictError, GroupNotFoundError

__all__ = [
    "CONSUMER_ALREADY_EXISTS",
    "CONSUMER_NAME_EXISTS",
    "CONSUMER_NOT_FOUND",
    "ERRORS",
    "MESSAGE_NOT_FOUND",
    "STREAM_NAME_IN_USE",
    "STREAM_NOT_FOUND",
    "STREAM_SUBJECT_OVERLAP",
]

# JetStream API error codes (nats-server's server/errors.json).
CONSUMER_NAME_EXISTS = 10013
CONSUMER_NOT_FOUND = 10014
MESSAGE_NOT_FOUND = 10037
STREAM_NAME_IN_USE = 10058
STREAM_NOT_FOUND = 10059
STREAM_SUBJECT_OVERLAP = 10065
CONSUMER_ALREADY_EXISTS = 10148


def _err_code(exc: BaseException) -> object:
    """The JetStream ``err_code`` of an API error reply, else None."""
    return exc.err_code if isinstance(exc, nats.js.errors.APIError) else None


_API = nats.js.errors.APIError
_UNREACHABLE = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,  # UnexpectedEOF too
    nats.errors.TimeoutError,
    nats.js.errors.TooManyStalledMsgsError,
    asyncio.TimeoutError,
    OSError,
)

ERRORS = ErrorMap(
    "nats",
    catch=(nats.errors.Error, OSError, asyncio.TimeoutError),
    code_of=_err_code,
    rules=[
        Rule(
            BrokerUnavailableError,
            types=(nats.js.errors.ServiceUnavailableError,),
            message="JetStream is unavailable (is the server running with -js?)",
            example=lambda: nats.js.errors.ServiceUnavailableError(code=503),
        ),
        Rule(
            GroupNotFoundError,
            types=(_API,),
            codes=frozenset({STREAM_NOT_FOUND, CONSUMER_NOT_FOUND}),
            example=lambda: nats.js.errors.NotFoundError(code=404, err_code=STREAM_NOT_FOUND),
        ),
        Rule(
            ConfigConflictError,
            types=(_API,),
            codes=frozenset(
                {
                    CONSUMER_NAME_EXISTS,
                    STREAM_NAME_IN_USE,
                    STREAM_SUBJECT_OVERLAP,
                    CONSUMER_ALREADY_EXISTS,
                }
            ),
            message=(
                "JetStream error {code}: an existing stream or consumer was configured"
                " differently; delete it or adjust the options to match"
            ),
            example=lambda: nats.js.errors.BadRequestError(
                code=400, err_code=STREAM_SUBJECT_OVERLAP
            ),
        ),
        Rule(
            GroupNotFoundError,
            types=(nats.errors.NoRespondersError,),
            message="nothing answers (stream or consumer deleted?)",
            example=nats.errors.NoRespondersError,
        ),
        Rule(
            GroupNotFoundError,
            types=(nats.js.errors.NoStreamResponseError,),
            message="no JetStream stream stores this subject",
            example=nats.js.errors.NoStreamResponseError,
        ),
        Rule(
            BrokerUnavailableError,
            types=_UNREACHABLE,
            example=nats.errors.ConnectionClosedError,
        ),
    ],
)
