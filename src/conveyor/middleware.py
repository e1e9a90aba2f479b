"""Middleware: code that runs around handling a message and around publishing.

A middleware subclasses `Middleware` and overrides what it needs:

```python
class Timing(conveyor.Middleware):
    async def handle(self, message, call_next, context):
        started = time.perf_counter()
        try:
            await call_next(message)          # the next middleware, then the handler
        finally:
            print(context.stream, message.id, time.perf_counter() - started)

    async def publish(self, request, call_next):
        request.set_header("x-sent-by", "billing")
        return await call_next(request)       # the next middleware, then the broker
```

Where they run, outermost first (Starlette's order: the first registered sees a message
first and its result last):

* handling: the `App`'s middleware in the order added, then the handler's own
  (``@app.handler(..., middleware=[...])``, the same as ``StreamProcessor(...,
  middleware=[...])``), then the handler. A handler that raises makes `call_next` raise;
  a middleware that swallows the exception makes the message count as handled (acked).
* publishing: the middleware added to a backend (`BaseBackend.add_middleware`) in order;
  an `App` adds its own to the backend it runs on while it runs, after those already
  there. Every `publish` and `publish_many` through that backend goes through them.

The chain is composed once, when a processor starts: a processor without middleware calls
its handler directly, and a middleware that does not override `handle` (or `wrap`) adds
nothing to the handling path. `bind` is called then too, once per processor, with its
`HandlerContext`: the place to prepare per-processor state (labels, instruments), kept in
``context.state[self]``. `wrap` is how a middleware joins a processor's chain; its
default calls `handle`, and a middleware may override it instead, to build the function
that handles messages once per processor (as Starlette's pure ASGI middleware wrap the
app once): the built-in metrics do, to keep their cost per message down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from conveyor.errors import PayloadValidationError
from conveyor.message import Message

if TYPE_CHECKING:
    from conveyor.clock import Clock
    from conveyor.protocol import StreamBackend
    from conveyor.stats import ProcessorStats

__all__ = [
    "CallNext",
    "HandlerContext",
    "Middleware",
    "Outcome",
    "PublishNext",
    "PublishRequest",
    "check_middleware",
    "compose_handler",
    "compose_publish",
]

#: Calls the rest of the handling chain (the next middleware, at the end the handler).
CallNext = Callable[[Message], Awaitable[Any]]

#: What became of a handled message: acked, delivered again later, or dead-lettered.
Outcome = Literal["success", "retry", "dead_letter"]


@dataclass(frozen=True, slots=True, eq=False)
class HandlerContext:
    """Where a handling chain runs: one `StreamProcessor` (from one `start()` to its
    `stop()`). Compared and hashed by identity, so it can key per-processor state.

    Attributes:
        stream: The stream consumed.
        group: The consumer group.
        consumer: This consumer's name in the group.
        system: The backend's name (``capabilities.name``: ``redis``, ``nats``...).
        max_deliveries: Deliveries before a failing message is dead-lettered.
        dead_letter_stream: Where dead letters of `stream` go.
        backend: The processor's backend (for inspection: `group_info`).
        stats: The processor's live counters.
        clock: The processor's clock (`time()` is comparable with
            `Message.published_at` on its backend).
        state: Per-processor data of middleware, each under its own key (itself):
            filled in `Middleware.bind`, read in `Middleware.handle`, gone with the
            processor's chain when it stops.
    """

    stream: str
    group: str
    consumer: str
    system: str
    max_deliveries: int
    dead_letter_stream: str
    backend: StreamBackend
    stats: ProcessorStats
    clock: Clock
    state: dict[object, Any] = field(default_factory=dict)

    def failure_outcome(self, message: Message, error: BaseException | None = None) -> Outcome:
        """What happens to `message` when its handler raises `error` now:
        ``"dead_letter"`` at its last delivery or for an invalid typed payload
        (`PayloadValidationError`), else ``"retry"``."""
        if message.delivery_count >= self.max_deliveries:
            return "dead_letter"
        return "dead_letter" if isinstance(error, PayloadValidationError) else "retry"


@dataclass(slots=True)
class PublishRequest:
    """One `publish` or `publish_many` call, as the publish middleware see it.

    Attributes:
        stream: Target stream.
        items: The payloads, in order.
        headers: One header dict per item, or None when no item has headers. Middleware
            may change them (`set_header` is the easy way); what they add must follow
            the header rules of `conveyor.headers`, which are checked again after the
            chain.
        system: The backend's name (``capabilities.name``).
    """

    stream: str
    items: list[dict[str, Any]]
    headers: list[dict[str, str]] | None
    system: str

    def set_header(self, name: str, value: str) -> None:
        """Set header `name` to `value` on every item."""
        if self.headers is None:
            self.headers = [{name: value} for _ in self.items]
            return
        for item in self.headers:
            item[name] = value


#: Calls the rest of the publishing chain (at the end, the broker); returns the ids.
PublishNext = Callable[[PublishRequest], Awaitable[list[str]]]


class Middleware:
    """Base class of middleware: override `handle`, `publish`, `bind`, or any of them.

    One instance may serve many processors and backends at once: keep per-processor
    state in ``context.state[self]``, prepared in `bind`.
    """

    def bind(self, context: HandlerContext) -> None:
        """Called once when a processor that uses this middleware starts, before it
        handles anything."""

    async def handle(self, message: Message, call_next: CallNext, context: HandlerContext) -> None:
        """Handle `message`: call ``await call_next(message)`` to run the rest of the
        chain (exceptions of the handler come out of it)."""
        await call_next(message)

    async def publish(self, request: PublishRequest, call_next: PublishNext) -> list[str]:
        """Publish `request`: ``return await call_next(request)`` sends it."""
        return await call_next(request)

    def wrap(self, call_next: CallNext, context: HandlerContext) -> CallNext:
        """Join one processor's handling chain, once, when it starts (after `bind`):
        return what handles a message there, calling `call_next` for the rest of the
        chain. The default calls `handle`; override this instead of `handle` to build
        that function once per processor."""
        return _link(self, call_next, context)


def check_middleware(middleware: Iterable[object]) -> tuple[Middleware, ...]:
    """The middleware as a tuple, each checked to be a `Middleware`.

    Raises:
        TypeError: one is not a `Middleware` (or `middleware` is a single one).
    """
    if isinstance(middleware, (Middleware, str)) or not isinstance(middleware, Iterable):
        raise TypeError(f"middleware must be a list of conveyor.Middleware, got {middleware!r}")
    out: list[Middleware] = []
    for item in middleware:
        if not isinstance(item, Middleware):
            raise TypeError(
                f"middleware {item!r} is a {type(item).__name__}, not a conveyor.Middleware"
            )
        out.append(item)
    return tuple(out)


def _overrides(middleware: Middleware, name: str) -> bool:
    return getattr(type(middleware), name) is not getattr(Middleware, name)


def _link(middleware: Middleware, call_next: CallNext, context: HandlerContext) -> CallNext:
    handle = middleware.handle

    def step(message: Message) -> Awaitable[None]:  # no frame of its own: returns handle's
        return handle(message, call_next, context)

    return step


def compose_handler(
    middleware: Iterable[Middleware], handler: CallNext, context: HandlerContext
) -> CallNext:
    """Bind each middleware to `context` and chain them around `handler` (outermost
    first) with their `wrap`; middleware that override neither `handle` nor `wrap` are
    left out."""
    chain = tuple(middleware)
    for item in chain:
        item.bind(context)
    call = handler
    for item in reversed(chain):
        if _overrides(item, "handle") or _overrides(item, "wrap"):
            call = item.wrap(call, context)
    return call


def compose_publish(middleware: Iterable[Middleware], send: PublishNext) -> PublishNext | None:
    """Chain the middleware's `publish` around `send` (outermost first); None when none
    of them overrides `publish`."""
    call = send
    found = False
    for item in reversed(tuple(middleware)):
        if not _overrides(item, "publish"):
            continue
        found = True
        call = _link_publish(item, call)
    return call if found else None


def _link_publish(middleware: Middleware, call_next: PublishNext) -> PublishNext:
    publish = middleware.publish

    def step(request: PublishRequest) -> Awaitable[list[str]]:
        return publish(request, call_next)

    return step
