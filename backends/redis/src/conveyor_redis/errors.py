"""The one table that turns redis-py exceptions into `conveyor.errors`.

redis-py gives classes to some reply errors (``LOADING``, ``READONLY``, ``NOAUTH``...) and
keeps their leading token in ``status_code``; others (``NOGROUP``, ``BUSYGROUP``,
``WRONGTYPE``) arrive as a plain `ResponseError` whose text starts with the token. Rules
match by class or by that token (`reply_token`), never by searching the rest of the text.
Every call to Redis in this backend runs inside ``with ERRORS.mapping(action):``;
``BUSYGROUP`` (success when a group is created) is the one token handled where it occurs.
"""

from __future__ import annotations

from conveyor.errormap import ErrorMap, Rule
from conveyor.errors import (
    BackendError,
    BrokerUnavailableError,
    GroupNotFoundError,
    WrongTypeError,
)
from redis import exceptions as rx

__all__ = [
    "ERRORS",
    "UNREACHABLE",
    "HandshakeTimeoutError",
    "NotRedisServerError",
    "SentinelHandshakeTimeoutError",
    "error_code",
    "reply_token",
]

#: Reply tokens of a server that is there but cannot serve right now: retry later.
_UNAVAILABLE = frozenset({"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY"})

#: `error_code` of a cluster client error raised because no node could be reached.
UNREACHABLE = "UNREACHABLE"


class HandshakeTimeoutError(rx.RedisError):
    """Raised by this backend's connection handshake (`conveyor_redis.client`): the server
    accepted the TCP connection but did not answer it in time.

    Not a redis-py ``ConnectionError`` or ``TimeoutError`` on purpose: redis-py retries
    those, each attempt waiting as long again, while the engine retries the
    `BrokerUnavailableError` this becomes with a backoff of its own.
    """


class SentinelHandshakeTimeoutError(rx.TimeoutError):
    """Raised by the handshake of a connection to a Sentinel (`conveyor_redis.client`): the
    Sentinel accepted the TCP connection but did not answer in time.

    A redis-py ``TimeoutError``, unlike `HandshakeTimeoutError`, so that redis-py's
    discovery of the primary goes on to the next Sentinel; the clients that ask the
    Sentinels do not retry (the engine retries the discovery with its own backoff).
    """


class NotRedisServerError(rx.InvalidResponse):
    """Raised by this backend's connection handshake: the server answered with something
    that is not the Redis protocol (another service listens on that port)."""


_CONNECTION = (rx.ConnectionError, rx.TimeoutError, HandshakeTimeoutError, OSError)


def reply_token(exc: BaseException) -> str:
    """The leading token of a Redis error reply (``"NOGROUP"``, ``"ERR"``...), or ``""``."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code:
        return code.upper()
    if not isinstance(exc, rx.ResponseError) or not exc.args:
        return ""
    text = exc.args[0]
    if not isinstance(text, str):
        return ""
    token = text.split(" ", 1)[0]
    return token if token.isupper() and token.isalpha() else ""


def error_code(exc: BaseException) -> str:
    """What `ERRORS` matches on: the `reply_token`, except for the cluster client's own
    `RedisClusterException` raised *because of* a connection failure (no node answered
    while it refreshed the topology), which is `UNREACHABLE`: redis-py gives that case
    no class of its own, only the cause it chains."""
    if isinstance(exc, rx.RedisClusterException) and isinstance(exc.__cause__, _CONNECTION):
        return UNREACHABLE
    return reply_token(exc)


def _unreachable_cluster() -> BaseException:
    exc = rx.RedisClusterException("Redis Cluster cannot be connected")
    exc.__cause__ = rx.ConnectionError("Error 111 connecting to 127.0.0.1:7000.")
    return exc


ERRORS = ErrorMap(
    "redis",
    catch=(rx.RedisError, rx.RedisClusterException, OSError),
    rules=[
        # first: redis-py's auth errors are ConnectionErrors, but must not be retried as
        # outages, and their text is replaced (it may echo what was sent)
        Rule(
            BackendError,
            types=(
                rx.AuthenticationError,
                rx.AuthorizationError,
                rx.AuthenticationWrongNumberOfArgsError,
            ),
            message="authentication failed",
            example=lambda: rx.AuthenticationError("invalid username-password pair"),
        ),
        Rule(
            BackendError,
            codes=frozenset({"NOAUTH", "WRONGPASS", "NOPERM"}),
            message="not allowed ({code})",
            example=lambda: rx.ResponseError("NOPERM this user has no permissions"),
        ),
        Rule(
            BrokerUnavailableError,
            types=_CONNECTION,
            example=lambda: rx.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
        ),
        Rule(
            BackendError,
            types=(NotRedisServerError,),
            example=lambda: NotRedisServerError(
                "127.0.0.1:4222 does not speak the Redis protocol (it answered:"
                ' Protocol error, got "I" as reply type byte)'
            ),
        ),
        Rule(
            BrokerUnavailableError,
            types=(rx.RedisClusterException,),
            codes=frozenset({UNREACHABLE}),
            example=_unreachable_cluster,
        ),
        Rule(
            BrokerUnavailableError,
            types=(rx.SlotNotCoveredError,),
            example=lambda: rx.SlotNotCoveredError('Slot "42" is not covered by the cluster.'),
        ),
        Rule(
            GroupNotFoundError,
            codes=frozenset({"NOGROUP"}),
            example=lambda: rx.ResponseError("NOGROUP No such key 'k' or consumer group 'g'"),
        ),
        # a blocked XREADGROUP whose stream was deleted (also CLIENT UNBLOCK ... ERROR, where
        # re-opening the group is harmless): the engine recreates the group
        Rule(
            GroupNotFoundError,
            codes=frozenset({"UNBLOCKED"}),
            example=lambda: rx.ResponseError("UNBLOCKED the stream key no longer exists"),
        ),
        Rule(
            WrongTypeError,
            codes=frozenset({"WRONGTYPE"}),
            example=lambda: rx.ResponseError("WRONGTYPE Operation against a key holding"),
        ),
        Rule(
            BrokerUnavailableError,
            codes=_UNAVAILABLE,
            example=lambda: rx.ResponseError("MASTERDOWN Link with MASTER is down"),
        ),
        Rule(
            BackendError,
            codes=frozenset({"MOVED", "ASK"}),
            message=(
                "the server is a Redis Cluster node ({code}): use a redis+cluster://"
                " (or rediss+cluster://) URL"
            ),
            example=lambda: rx.ResponseError("MOVED 3999 127.0.0.1:6381"),
        ),
    ],
    code_of=error_code,
)
