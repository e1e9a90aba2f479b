"""`App`: declare handlers once, run them on any backend URL.

```python
app = conveyor.App("billing")

@app.handler("orders", group="billing", concurrency=16, max_deliveries=5)
async def handle(payload: dict) -> None: ...

# conveyor run billing:app --url redis://localhost:6379/0
```

Middleware (`conveyor.middleware`) given to the app run around every handler, outside
each handler's own; while the app runs on a backend, their `publish` also wraps the
publishes through that backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from conveyor.base import BaseBackend, check_name
from conveyor.clock import Clock
from conveyor.errors import ConfigurationError
from conveyor.handlers import bind_handler
from conveyor.middleware import Middleware, check_middleware
from conveyor.naming import default_consumer_name
from conveyor.processor import ProcessorOptions, StreamProcessor
from conveyor.protocol import StreamBackend
from conveyor.registry import connect

__all__ = ["App", "HandlerSpec"]

log = logging.getLogger("conveyor.app")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
T = TypeVar("T")


@dataclass(frozen=True)
class HandlerSpec:
    """One registered handler: where it consumes and with which processor options."""

    stream: str
    group: str
    consumer: str | None
    handler: Callable[..., Awaitable[Any]]
    options: dict[str, Any] = field(default_factory=dict)


class App:
    """A set of stream handlers that run together.

    Args:
        name: Application name; the default group and part of default consumer names.
        middleware: Run around every handler (outermost first), outside the handlers'
            own middleware; see `conveyor.middleware`.

    Raises:
        TypeError: a middleware is not a `conveyor.Middleware`.
    """

    def __init__(self, name: str = "conveyor", *, middleware: Iterable[Middleware] = ()) -> None:
        if not name:
            raise ConfigurationError(f"App name must be a non-empty str, got {name!r}")
        self.name = name
        self._specs: list[HandlerSpec] = []
        self._middleware = check_middleware(middleware)

    def __repr__(self) -> str:
        return f"<conveyor.App {self.name!r} handlers={len(self._specs)}>"

    @property
    def handlers(self) -> tuple[HandlerSpec, ...]:
        """The registered handlers, in registration order."""
        return tuple(self._specs)

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The app's middleware, outermost first."""
        return self._middleware

    def add_middleware(self, middleware: Middleware) -> None:
        """Add `middleware` inside those already added (it runs after them, closer to
        the handlers); processors built from then on use it.

        Raises:
            TypeError: `middleware` is not a `conveyor.Middleware`.
        """
        self._middleware = (*self._middleware, *check_middleware([middleware]))

    def add_handler(
        self,
        stream: str,
        handler: Callable[..., Awaitable[Any]],
        *,
        group: str | None = None,
        consumer: str | None = None,
        **options: Any,
    ) -> None:
        """Register `handler` for `stream` (see `handler`).

        Raises:
            ConfigurationError: an empty stream or group name, an unknown or bad option,
                or a second handler for the same stream and group.
        """
        check_name("stream name", stream)
        if group is not None:
            check_name("group name", group)
        ProcessorOptions.from_mapping(options)  # refuse unknown or bad options early
        bind_handler(handler, message=options.get("message"))  # refuse non-async early
        group = group or self.name
        for spec in self._specs:
            if spec.stream == stream and spec.group == group:
                raise ConfigurationError(
                    f"stream {stream!r} group {group!r} already has handler"
                    f" {spec.handler.__qualname__}; use a conveyor.Router to dispatch by type"
                )
        self._specs.append(HandlerSpec(stream, group, consumer, handler, dict(options)))

    def handler(
        self,
        stream: str,
        *,
        group: str | None = None,
        consumer: str | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Decorator: consume `stream` as `group` (default: the app name) with `handler`.

        `options` are `StreamProcessor` keyword options (concurrency, retry_delay,
        claim_idle, max_deliveries, dead_letter_stream, shutdown_timeout, ...).
        `consumer` defaults to ``<host>-<app name>[-<index>]`` (stable across restarts).
        """

        def decorate(func: F) -> F:
            self.add_handler(stream, func, group=group, consumer=consumer, **options)
            return func

        return decorate

    def processors(
        self,
        backend: StreamBackend,
        *,
        consumer: str | None = None,
        index: int | None = None,
        clock: Clock | None = None,
    ) -> list[StreamProcessor]:
        """Build one processor per handler on `backend` (not started); `clock` replaces
        every handler's clock (tests pass a `conveyor.testing.FakeClock`)."""
        if not self._specs:
            raise ConfigurationError(f"{self!r} has no handlers")
        base = consumer or default_consumer_name(self.name, index)
        out = []
        for spec in self._specs:
            options = dict(spec.options)
            options["middleware"] = (*self._middleware, *options.get("middleware", ()))
            if clock is not None:
                options["clock"] = clock
            processor = StreamProcessor(
                backend, spec.stream, spec.group, spec.consumer or base, **options
            )
            processor.set_callback(spec.handler)
            out.append(processor)
        return out

    async def run(
        self,
        target: str | StreamBackend,
        *,
        consumer: str | None = None,
        index: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Run every handler until `stop` is set (or forever), then stop gracefully.

        A `stop` set while the backend is still connecting or the processors are still
        starting (retrying an unreachable broker, say) ends the start at once: the
        pending connect or start is cancelled, the processors already started are
        stopped gracefully, the backend is closed, and `run` returns normally.

        Args:
            target: A backend URL (opened and closed here) or an open backend.
            consumer: Consumer name for every handler without its own.
            index: Worker index appended to default consumer names.
            stop: Set it to stop; None runs until cancelled.

        Cancelling `run` stops gracefully too. Cancelling it again while it stops (or
        setting `stop`, then cancelling) stops at once: the running handlers are
        cancelled and their messages stay pending, to be delivered again.

        Raises:
            RuntimeError: a processor crashed (after the others were stopped).
        """
        if not isinstance(target, str):
            await self._run(target, consumer, index, stop)
            return
        opening = await _before_stop(lambda: connect(target), stop, lambda b: b.aclose())
        if opening is None:
            log.info("stop asked while connecting: stopped before the app had started")
            return
        backend = opening.result()
        try:
            await self._run(backend, consumer, index, stop)
        finally:
            await backend.aclose()

    async def _run(
        self,
        backend: StreamBackend,
        consumer: str | None,
        index: int | None,
        stop: asyncio.Event | None,
    ) -> None:
        processors = self.processors(backend, consumer=consumer, index=index)
        started: list[StreamProcessor] = []
        uninstall = self._wrap_publishes(backend)
        try:
            if await self._start(processors, started, stop):
                await self._wait(started, stop)
        finally:
            stopping = asyncio.gather(*(p.stop() for p in started))
            try:
                await asyncio.shield(stopping)
            except asyncio.CancelledError:
                # cancelled again while stopping: at once (each stop() cancels its running
                # handlers, acks what finished and closes its session)
                stopping.cancel()
                await asyncio.wait([stopping])
                if not stopping.cancelled():
                    stopping.exception()  # retrieved (gather ends with CancelledError set)
                raise
            finally:
                uninstall()
        for processor in started:
            await processor.wait()  # raises if one crashed

    async def _start(
        self,
        processors: list[StreamProcessor],
        started: list[StreamProcessor],
        stop: asyncio.Event | None,
    ) -> bool:
        """Start `processors` in turn, adding each to `started`; False when `stop` came
        first (the start in progress is cancelled)."""
        for processor in processors:
            started.append(processor)  # stopped afterwards whatever happens (a no-op if idle)
            starting = await _before_stop(processor.start, stop)
            if starting is None:
                log.info(
                    "stop asked while starting (%d of %d handler(s) started):"
                    " stopped before the app had started",
                    len(started) - 1,
                    len(processors),
                )
                return False
            starting.result()
        return True

    async def _wait(self, started: list[StreamProcessor], stop: asyncio.Event | None) -> None:
        """Until `stop` is set or a processor stops by itself (a crash)."""
        waits = [asyncio.ensure_future(p.wait()) for p in started]
        stopper = asyncio.ensure_future((stop or asyncio.Event()).wait())
        try:
            await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            for task in waits:
                task.cancel()
            await asyncio.wait([stopper, *waits])
            for task in waits:
                if not task.cancelled():
                    task.exception()  # retrieved here, re-raised by wait() in _run

    def _wrap_publishes(self, backend: StreamBackend) -> Callable[[], None]:
        """Add the app's middleware to `backend`'s publishes (those not there yet);
        return what removes them again."""
        if not isinstance(backend, BaseBackend):
            return lambda: None  # a backend written without BaseBackend: no publish middleware
        added = [m for m in self._middleware if m not in backend.middleware]
        for middleware in added:
            backend.add_middleware(middleware)

        def uninstall() -> None:
            for middleware in added:
                backend.remove_middleware(middleware)

        return uninstall


async def _before_stop(
    work: Callable[[], Awaitable[T]],
    stop: asyncio.Event | None,
    undo: Callable[[T], Awaitable[object]] | None = None,
) -> asyncio.Future[T] | None:
    """Run ``work()`` until it ends or `stop` is set: its finished task (``.result()``
    returns what it returned or raises what it raised), or None when `stop` came first
    (``work()`` was then cancelled, or not called at all when `stop` was set already).
    A cancellation of the caller cancels ``work()`` too; what ``work()`` returned but
    is not handed back (the caller was cancelled as it finished) goes to `undo`."""
    if stop is not None and stop.is_set():
        return None
    task = asyncio.ensure_future(work())
    stopper = asyncio.ensure_future((stop or asyncio.Event()).wait())
    handed = False
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopped_first = not task.done()
        stopper.cancel()
        task.cancel()  # does nothing when it has finished
        await asyncio.wait([task, stopper])
        if task.cancelled():
            return None
        if stopped_first and task.exception() is not None:
            # a client that turned our cancellation into an error of its own
            log.debug("cancelled by the stop: %r", task.exception())
            return None
        handed = True
        return task
    finally:
        if not handed:
            stopper.cancel()
            task.cancel()
            await asyncio.shield(asyncio.wait([task, stopper]))
            if undo is not None and not task.cancelled() and task.exception() is None:
                await asyncio.shield(undo(task.result()))
