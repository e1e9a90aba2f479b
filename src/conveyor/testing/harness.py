"""Helpers for testing an application's handlers on ``memory://``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.message import Message
from conveyor.processor import StreamProcessor
from conveyor.protocol import StreamBackend
from conveyor.testing.clock import FakeClock

if TYPE_CHECKING:
    from conveyor.app import App

__all__ = ["HandlerErrors", "dead_letters", "run_app_until_idle", "run_until_idle", "wait_until"]


class HandlerErrors(AssertionError):
    """Raised by `run_until_idle` when handlers raised; `.errors` holds them all."""

    def __init__(self, errors: list[tuple[Message, BaseException]]) -> None:
        lines = [f"{m.stream} {m.id} (delivery {m.delivery_count}): {e!r}" for m, e in errors]
        super().__init__(f"{len(errors)} handler error(s):\n  " + "\n  ".join(lines))
        self.errors = errors


async def _settled(processor: StreamProcessor) -> bool:
    if not processor.idle:
        return False
    info = await processor.backend.group_info(processor.stream_name, processor.consumer_group_name)
    if info.lag not in (0, None):
        return False
    # where the broker redelivers (a nack with a delay), a retry waits on the broker
    return processor.capabilities.redelivery == "engine" or info.pending == 0


async def run_until_idle(
    processor: StreamProcessor,
    *,
    clock: FakeClock | None = None,
    timeout: float = 10.0,
    raise_errors: bool = True,
) -> list[tuple[Message, BaseException]]:
    """Run a started `processor` until nothing is left to do; return the handler errors.

    "Nothing left" means: nothing buffered, running or unacknowledged, no unread entries
    in the group, and no scheduled retry (where the broker redelivers, no pending entry
    in the group). With a `FakeClock` (the one the processor
    uses), scheduled retries are reached by advancing the clock instead of sleeping.

    Raises:
        HandlerErrors: when `raise_errors` and any handler raised (also the failures that
            were later retried successfully or dead-lettered).
        TimeoutError: when the processor is still busy after `timeout` real seconds.
    """
    if not processor.is_running:
        raise RuntimeError(f"{processor!r} is not running: start it first")
    errors: list[tuple[Message, BaseException]] = []
    previous = processor.on_error

    def record(message: Message, exc: BaseException) -> None:
        errors.append((message, exc))
        if previous is not None:
            previous(message, exc)

    processor.on_error = record
    deadline = time.monotonic() + timeout
    try:
        quiet = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{processor!r} still busy after {timeout}s")
            if await _settled(processor):
                due = processor.next_retry_at
                if due is None:
                    quiet += 1
                    if quiet >= 3:  # stable across a few loop turns: really idle
                        break
                elif clock is not None:
                    await clock.advance(max(0.0, due - clock.monotonic()))
                    quiet = 0
                    continue
                else:
                    quiet = 0
            else:
                quiet = 0
            await asyncio.sleep(0.002)
    finally:
        processor.on_error = previous
    if raise_errors and errors:
        raise HandlerErrors(errors)
    return errors


async def run_app_until_idle(
    app: App,
    backend: StreamBackend,
    *,
    clock: FakeClock | None = None,
    consumer: str = "test",
    timeout: float = 10.0,
    raise_errors: bool = True,
) -> list[tuple[Message, BaseException]]:
    """Start every handler of `app` on `backend`, run them until all are idle together
    (see `run_until_idle`; a handler that publishes to another handler's stream is
    followed), stop them gracefully and return the handler errors.

    Pass the `FakeClock` the backend was opened with (``memory://``) so that retries run
    on fake time; the app's middleware applies to handlers and publishes as in
    `App.run`. `timeout` is in real seconds, for the whole run.

    Raises:
        HandlerErrors: when `raise_errors` and any handler raised.
        TimeoutError: still busy after `timeout`.
    """
    processors = app.processors(backend, consumer=consumer, clock=clock)
    errors: list[tuple[Message, BaseException]] = []
    uninstall = app._wrap_publishes(backend)
    started: list[StreamProcessor] = []
    deadline = time.monotonic() + timeout
    try:
        for processor in processors:
            await processor.start()
            started.append(processor)
        while True:
            for processor in started:
                left = max(0.1, deadline - time.monotonic())
                errors += await run_until_idle(
                    processor, clock=clock, timeout=left, raise_errors=False
                )
            if all([await _settled(p) and p.next_retry_at is None for p in started]):
                break
    finally:
        await asyncio.gather(*(p.stop() for p in started))
        uninstall()
    if raise_errors and errors:
        raise HandlerErrors(errors)
    return errors


async def dead_letters(
    backend: StreamBackend,
    stream: str,
    *,
    dead_letter_stream: str | None = None,
    count: int = 1000,
) -> list[dict[str, Any]]:
    """The dead-letter records of `stream` (``<stream>.dead`` unless given), oldest first."""
    target = dead_letter_stream or f"{stream}.dead"
    return [m.data for m in await backend.peek(target, count=count)]


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.005
) -> None:
    """Wait until `predicate()` is true, checking every `interval` real seconds.

    Raises:
        TimeoutError: still false after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition still false after {timeout}s")
        await asyncio.sleep(interval)
