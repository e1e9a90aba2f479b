"""Handler adaptation: payload-style (plain or typed) or Message-style callables,
checked up front."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.message import Message
from conveyor.typed import first_annotation, payload_adapter, typed_handler

__all__ = ["Handler", "bind_handler", "check_handler", "message_style", "wants_message"]

Handler = Callable[[Any], Awaitable[Any]]


def _is_async_callable(func: object) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async __call__ on an object
    )


def _name(func: object) -> str:
    """A handler's name for a message: its qualified name, a partial's repr, or the
    class of a callable object."""
    if isinstance(func, functools.partial):
        return repr(func)
    name = getattr(func, "__qualname__", None)
    return name if isinstance(name, str) else type(func).__qualname__


def _check_one_argument(func: object) -> None:
    """Refuse a handler that cannot be called with one positional argument."""
    try:
        # the callable's own parameters: a functools.wraps wrapper may supply the rest
        signature = inspect.signature(typing.cast(Callable[..., Any], func), follow_wrapped=False)
    except (TypeError, ValueError):  # no signature to read: it will be called and see
        return
    try:
        signature.bind(object())
    except TypeError:
        raise ConfigurationError(
            f"handler {_name(func)}{signature} cannot be called with one argument (the"
            " payload or the Message): it must take one positional parameter, and any other"
            " a default"
        ) from None


def wants_message(func: Callable[..., Any]) -> bool:
    """True when the handler's first parameter is annotated as `Message`."""
    annotation = first_annotation(func)
    if isinstance(annotation, str):  # unresolvable: judge by the name
        return annotation.rsplit(".", 1)[-1] == "Message"
    return annotation is Message


def check_handler(
    func: object, *, message: bool | None = None
) -> tuple[Callable[[Any], Awaitable[Any]], bool]:
    """Check that `func` is an async handler; return it and whether it takes a `Message`.

    A payload-style handler whose first parameter is a typed payload (`conveyor.typed`)
    comes back wrapped: it takes the payload dict and converts it before the call.

    Raises:
        TypeError: `func` is not an async callable, or its payload type cannot be
            validated.
        ConfigurationError: `func` cannot be called with one positional argument (its
            other parameters need defaults).
    """
    if not callable(func) or not _is_async_callable(func):
        shown = _name(func) if callable(func) else repr(func)
        raise TypeError(
            f"handler {shown} must be an async function (async def handler(payload): ...);"
            f" got {type(func).__name__}"
        )
    _check_one_argument(func)
    handler = typing.cast(Callable[[Any], Awaitable[Any]], func)
    takes_message = wants_message(handler) if message is None else message
    if not takes_message:
        adapter = payload_adapter(first_annotation(handler))
        if adapter is not None:
            handler = typed_handler(handler, adapter)
    return handler, takes_message


def bind_handler(
    func: object, *, message: bool | None = None
) -> Callable[[Message], Awaitable[Any]]:
    """Return a callable taking a `Message`, checked to be an async handler.

    Args:
        func: ``async def handler(payload: dict)``, ``async def handler(order: Order)``
            (a typed payload, see `conveyor.typed`) or ``async def handler(msg: Message)``.
        message: Force Message-style (True) or payload-style (False); None detects it
            from the first parameter's annotation.

    Raises:
        TypeError: `func` is not an async callable.
        ConfigurationError: `func` cannot be called with one positional argument.
    """
    handler, message = check_handler(func, message=message)
    return message_style(handler, message)


def message_style(
    handler: Callable[[Any], Awaitable[Any]], takes_message: bool
) -> Callable[[Message], Awaitable[Any]]:
    """`handler` as a callable taking a `Message` (payload-style ones get ``msg.data``)."""
    if takes_message:
        return handler

    def payload_style(msg: Message) -> Awaitable[Any]:
        return handler(msg.data)

    return payload_style
