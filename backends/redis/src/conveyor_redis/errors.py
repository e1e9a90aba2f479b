"""The one place where redis-py exceptions become `conveyor.errors`.

redis-py gives classes to some reply errors (``LOADING``, ``READONLY``, ``NOAUTH``...) and
keeps their leading token in ``status_code``; others (``NOGROUP``, ``BUSYGROUP``,
``WRONGTYPE``) arrive as a plain `ResponseError` whose text starts with the token. Both
are classified here by that token, never by searching the rest of the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from conveyor.errors import (
    BackendError,
    BrokerUnavailableError,
    ConveyorError,
    GroupNotFoundError,
    WrongTypeError,
)
from redis import exceptions as rx

__all__ = ["reply_token", "translate", "translating"]

#: Reply tokens of a server that is there but cannot serve right now: retry later.
_UNAVAILABLE = frozenset({"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY"})


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


def translate(exc: BaseException, context: str) -> ConveyorError:
    """Map a redis-py (or socket) exception to the conveyor error tree.

    `context` says what was being done (``"XREADGROUP on 'orders'"``); it must not hold
    credentials. The client's text is kept after it for diagnosis.
    """
    if isinstance(exc, ConveyorError):
        return exc
    detail = f"{context}: {type(exc).__name__}: {exc}"
    if isinstance(exc, (rx.AuthenticationError, rx.AuthorizationError)):
        return BackendError(f"{context}: authentication failed ({type(exc).__name__})")
    if isinstance(exc, (rx.ConnectionError, rx.TimeoutError, OSError, TimeoutError)):
        return BrokerUnavailableError(detail)
    token = reply_token(exc)
    if token == "NOGROUP":
        return GroupNotFoundError(detail)
    if token == "WRONGTYPE":
        return WrongTypeError(detail)
    if token in _UNAVAILABLE:
        return BrokerUnavailableError(detail)
    if token in {"MOVED", "ASK"}:
        return BackendError(
            f"{context}: the server is a Redis Cluster node ({token}): use a"
            " redis+cluster:// (or rediss+cluster://) URL"
        )
    if token in {"NOAUTH", "WRONGPASS", "NOPERM"}:
        return BackendError(f"{context}: not allowed ({token})")
    return BackendError(detail)


@contextmanager
def translating(context: str) -> Iterator[None]:
    """Re-raise redis-py and socket errors inside the block as conveyor errors."""
    try:
        yield
    except (rx.RedisError, OSError) as exc:
        raise translate(exc, context) from exc
