"""`App`: declare handlers once, run them on any backend URL.

```python
app = conveyor.App("billing")

@app.handler("orders", group="billing", concurrency=16, max_deliveries=5)
async def handle(payload: dict) -> None: ...

# conveyor run billing:app --url redis://localhost:6379/0
```
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from conveyor.handlers import bind_handler
from conveyor.naming import default_consumer_name
from conveyor.processor import ProcessorOptions, StreamProcessor
from conveyor.protocol import StreamBackend
from conveyor.registry import connect

__all__ = ["App", "HandlerSpec"]

log = logging.getLogger("conveyor.app")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


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
    """

    def __init__(self, name: str = "conveyor") -> None:
        if not name:
            raise ValueError("App name must be a non-empty str")
        self.name = name
        self._specs: list[HandlerSpec] = []

    def __repr__(self) -> str:
        return f"<conveyor.App {self.name!r} handlers={len(self._specs)}>"

    @property
    def handlers(self) -> tuple[HandlerSpec, ...]:
        """The registered handlers, in registration order."""
        return tuple(self._specs)

    def add_handler(
        self,
        stream: str,
        handler: Callable[..., Awaitable[Any]],
        *,
        group: str | None = None,
        consumer: str | None = None,
        **options: Any,
    ) -> None:
        """Register `handler` for `stream` (see `handler`)."""
        ProcessorOptions.from_mapping(options)  # refuse unknown or bad options early
        bind_handler(handler, message=options.get("message"))  # refuse non-async early
        group = group or self.name
        for spec in self._specs:
            if spec.stream == stream and spec.group == group:
                raise ValueError(
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
        self, backend: StreamBackend, *, consumer: str | None = None, index: int | None = None
    ) -> list[StreamProcessor]:
        """Build one processor per handler on `backend` (not started)."""
        if not self._specs:
            raise ValueError(f"{self!r} has no handlers")
        base = consumer or default_consumer_name(self.name, index)
        out = []
        for spec in self._specs:
            processor = StreamProcessor(
                backend, spec.stream, spec.group, spec.consumer or base, **spec.options
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

        Args:
            target: A backend URL (opened and closed here) or an open backend.
            consumer: Consumer name for every handler without its own.
            index: Worker index appended to default consumer names.
            stop: Set it to stop; None runs until cancelled.

        Raises:
            RuntimeError: a processor crashed (after the others were stopped).
        """
        if isinstance(target, str):
            async with connect(target) as backend:
                await self._run(backend, consumer, index, stop)
        else:
            await self._run(target, consumer, index, stop)

    async def _run(
        self,
        backend: StreamBackend,
        consumer: str | None,
        index: int | None,
        stop: asyncio.Event | None,
    ) -> None:
        processors = self.processors(backend, consumer=consumer, index=index)
        started: list[StreamProcessor] = []
        try:
            for processor in processors:
                await processor.start()
                started.append(processor)
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
                        task.exception()  # retrieved here, re-raised by wait() below
        finally:
            await asyncio.shield(asyncio.gather(*(p.stop() for p in started)))
        for processor in started:
            await processor.wait()  # raises if one crashed
