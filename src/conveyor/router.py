"""Dispatch by the payload's ``type`` field, with optional filters (the seed's dispatcher).

```python
router = Router()

@router.route("order.paid")
async def on_paid(payload: dict) -> None: ...

@router.route("order.paid", filter=lambda p: p["amount"] > 1000)
async def on_big_payment(payload: dict) -> None: ...

processor.set_callback(router)
```
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from conveyor.errors import ConveyorError
from conveyor.handlers import bind_handler
from conveyor.message import Message

__all__ = ["Filter", "Router", "UnroutableMessageError"]

log = logging.getLogger("conveyor.router")

Filter = Callable[[dict[str, Any]], bool]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class UnroutableMessageError(ConveyorError):
    """Raised by a strict `Router` for a payload whose type has no handler.

    Like any handler error it leads to retries and then a dead letter.
    """


@dataclass(frozen=True)
class _Route:
    event_type: str
    handler: Callable[[Message], Awaitable[Any]]
    filter: Filter | None
    name: str


class Router:
    """Call the handlers registered for a payload's type; usable as a processor callback.

    Args:
        type_field: Payload key holding the event type.
        strict: Raise `UnroutableMessageError` (retry, then dead-letter) for a type with no
            handler; by default such messages are acknowledged and logged at debug level.

    Every handler registered for a type whose filter accepts the payload is awaited, in
    registration order. A handler's failure fails the message (and its retry calls every
    matching handler again, so handlers should be idempotent: at-least-once delivery).
    """

    def __init__(self, *, type_field: str = "type", strict: bool = False) -> None:
        self.type_field = type_field
        self.strict = strict
        self._routes: dict[str, list[_Route]] = {}

    def add(
        self,
        event_type: str,
        handler: Callable[..., Awaitable[Any]],
        *,
        filter: Filter | None = None,
    ) -> None:
        """Register `handler` for `event_type` (payload- or Message-style)."""
        bound = bind_handler(handler)
        name = getattr(handler, "__qualname__", repr(handler))
        self._routes.setdefault(event_type, []).append(_Route(event_type, bound, filter, name))

    def route(self, event_type: str, *, filter: Filter | None = None) -> Callable[[F], F]:
        """Decorator form of `add`."""

        def decorate(handler: F) -> F:
            self.add(event_type, handler, filter=filter)
            return handler

        return decorate

    @property
    def types(self) -> list[str]:
        """Event types with at least one handler."""
        return sorted(self._routes)

    async def __call__(self, message: Message) -> None:
        event_type = message.data.get(self.type_field)
        routes = self._routes.get(event_type) if isinstance(event_type, str) else None
        if not routes:
            if self.strict:
                raise UnroutableMessageError(
                    f"no handler for {self.type_field}={event_type!r} (known: {self.types})"
                )
            log.debug("no handler for %s=%r; acknowledged", self.type_field, event_type)
            return
        for route in routes:
            if route.filter is None or route.filter(message.data):
                await route.handler(message)
