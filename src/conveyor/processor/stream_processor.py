"""`StreamProcessor`: consume one stream as one consumer of a group, at least once.

The processor composes small parts, each with its own state (see the package docstring)
and owns their tasks: a supervisor watches them and stops the processor, loudly, if one
ends unexpectedly. Delivery semantics: docs/concepts.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from conveyor.base import check_name
from conveyor.clock import Clock
from conveyor.handlers import check_handler
from conveyor.middleware import Middleware
from conveyor.protocol import (
    ConsumerSession,
    StartPosition,
    StreamBackend,
    StreamStorageProtocol,
    is_backend,
)
from conveyor.seed import SeedStorageAdapter
from conveyor.stats import ProcessorStats

from .crew import Crew, Switch
from .options import ErrorHook, ProcessorOptions
from .parts import Parts

__all__ = ["StreamProcessor"]

log = logging.getLogger("conveyor.processor")


class StreamProcessor:
    """Consume `stream_name` as `consumer_name` of `consumer_group_name`.

    The first four arguments and `batch_count`/`poll_interval` are the seed module's;
    everything else is keyword-only. The options are validated into `self.options`, a
    `ProcessorOptions`, whose documentation says what each one does.

    Args:
        storage: A conveyor backend (from `conveyor.connect`) or any object with the three
            `StreamStorageProtocol` methods.
        stream_name: Stream to consume.
        consumer_group_name: Consumer group; created at start if missing.
        consumer_name: This consumer's name in the group. Keep it stable across restarts
            of the same worker so it re-reads its own pending messages.
        batch_count: Messages per read and per ack batch (see `ProcessorOptions`, which
            documents this and every keyword option).
        poll_interval: Longest a read waits (see `ProcessorOptions`).

    Raises:
        ConfigurationError: a bad name or option (a `ValueError`).
        TypeError: `storage` implements neither protocol.
    """

    def __init__(
        self,
        storage: StreamStorageProtocol,
        stream_name: str,
        consumer_group_name: str,
        consumer_name: str,
        batch_count: int = 10,
        poll_interval: float = 1.0,
        *,
        concurrency: int = 1,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
        claim_idle: float = 60.0,
        max_deliveries: int = 5,
        dead_letter_stream: str | None = None,
        shutdown_timeout: float = 10.0,
        start: StartPosition = "earliest",
        connect_attempts: int = 5,
        on_error: ErrorHook | None = None,
        message: bool | None = None,
        clock: Clock | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        if not isinstance(storage, StreamStorageProtocol):
            raise TypeError(
                f"storage {storage!r} must implement StreamStorageProtocol"
                " (create_group, read_events, ack_event) or come from conveyor.connect()"
            )
        check_name("stream_name", stream_name)
        check_name("consumer_group_name", consumer_group_name)
        check_name("consumer_name", consumer_name)
        self.options = ProcessorOptions.from_mapping(
            {
                "batch_count": batch_count,
                "poll_interval": poll_interval,
                "concurrency": concurrency,
                "retry_delay": retry_delay,
                "max_retry_delay": max_retry_delay,
                "claim_idle": claim_idle,
                "max_deliveries": max_deliveries,
                "dead_letter_stream": dead_letter_stream,
                "shutdown_timeout": shutdown_timeout,
                "start": start,
                "connect_attempts": connect_attempts,
                "on_error": on_error,
                "message": message,
                "clock": clock,
                "middleware": middleware,
            }
        )
        self.storage = storage
        self.backend: StreamBackend = (
            storage if is_backend(storage) else SeedStorageAdapter(storage)  # type: ignore[assignment]
        )
        self.capabilities = self.backend.capabilities
        self.stream_name = stream_name
        self.consumer_group_name = consumer_group_name
        self.consumer_name = consumer_name
        self.dead_letter_stream = self.options.dead_letter_stream_of(stream_name)
        #: Called with (message, exception) for every handler failure (may be replaced).
        self.on_error: ErrorHook | None = on_error
        self.stats = ProcessorStats()
        self._handler: Callable[[Any], Awaitable[Any]] | None = None
        self._takes_message = False
        names = (stream_name, consumer_group_name, consumer_name)
        self._switch = Switch()
        self._parts = Parts.assemble(self.backend, names, self.options, self.stats, self._switch)
        self._state = "idle"  # idle -> running -> stopping -> idle
        self._crew = Crew(f"conveyor:{stream_name}:{consumer_name}")
        self._supervisor: asyncio.Task[None] | None = None
        self._crash: BaseException | None = None
        self._stopped = asyncio.Event()
        self._stopped.set()
        self._shutdown_task: asyncio.Future[None] | None = None
        #: Set when a stop() is cancelled: the stop goes on without waiting for handlers.
        self._hurry = asyncio.Event()

    # -- configuration -----------------------------------------------------------------

    def set_callback(self, callback: Callable[..., Awaitable[Any]]) -> None:
        """Set the handler: ``async def handler(payload: dict)`` or ``(msg: Message)``.

        Raises:
            TypeError: `callback` is not an async function.
            ConfigurationError: `callback` cannot be called with one positional argument.
        """
        self._handler, self._takes_message = check_handler(callback, message=self.options.message)

    @property
    def is_running(self) -> bool:
        """True between a successful `start()` and `stop()`."""
        return self._state == "running"

    @property
    def session(self) -> ConsumerSession:
        """The consumer session while running (RuntimeError when not running)."""
        return self._parts.calls.session

    @property
    def idle(self) -> bool:
        """True when nothing is buffered, running or waiting to be acknowledged."""
        parts = self._parts
        return not parts.ledger.inbox and self.stats.in_flight == 0 and not parts.acker.busy

    @property
    def next_retry_at(self) -> float | None:
        """Clock time of the earliest scheduled retry, or None."""
        return self._parts.retries.next_due

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the processor, if one of its parts failed."""
        return self._crash

    @property
    def _where(self) -> str:
        return f"{self.stream_name}/{self.consumer_group_name} as {self.consumer_name}"

    def __repr__(self) -> str:
        return (
            f"<StreamProcessor {self.stream_name!r} group={self.consumer_group_name!r}"
            f" consumer={self.consumer_name!r} {self._state}>"
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> StreamProcessor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the consumer (creating the group if needed) and start consuming.

        Raises:
            RuntimeError: no callback set, or already running.
            BrokerUnavailableError: the broker could not be reached after
                `connect_attempts` attempts with backoff.
            ConveyorError: the broker refused the group (wrong type, conflicting config).
        """
        if self._handler is None:
            raise RuntimeError("set_callback() must be called before start()")
        if self._state != "idle":
            raise RuntimeError(f"{self!r} is already started")
        await self._parts.calls.open()
        self._state = "running"
        self._switch.on = True
        self._stopped.clear()
        self._crash = None
        parts, crew = self._parts, self._crew
        worker = parts.worker(self._handler, self._takes_message, lambda: self.on_error)
        crew.spawn("reader", parts.reader.run())
        if parts.retries.has_loop:
            crew.spawn("retries", parts.retries.run())
        crew.spawn("acker", parts.acker.run())
        crew.spawn("keeper", parts.keeper.run())
        for index in range(self.options.concurrency):
            crew.spawn(f"worker-{index}", worker.run())
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"conveyor:{self.stream_name}:supervisor"
        )
        log.info(
            "started %s (concurrency=%d, backend=%s)",
            self._where,
            self.options.concurrency,
            self.capabilities.name,
        )

    async def stop(self) -> None:
        """Stop fetching, let running handlers finish (up to `shutdown_timeout`), ack what
        finished, leave the rest pending, close the session. Idempotent; safe to call
        concurrently.

        Cancelling `stop()` hurries it: the running handlers are cancelled at once (their
        messages stay pending), what finished is still acked (within 1 s) and the session
        closed; the cancellation propagates once that is done."""
        if self._state == "stopping" and self._shutdown_task is not None:
            await _until_done(self._shutdown_task, self._hurry)
            await self._stopped.wait()
            return
        if self._state != "running":
            return
        self._state = "stopping"
        self._switch.on = False
        self._hurry.clear()
        self._shutdown_task = asyncio.ensure_future(self._shutdown())
        try:
            await _until_done(self._shutdown_task, self._hurry)
        finally:
            self._shutdown_task = None
            self._state = "idle"
            self._stopped.set()
            supervisor, self._supervisor = self._supervisor, None
            if supervisor is not None and supervisor is not asyncio.current_task():
                supervisor.cancel()
                await asyncio.wait([supervisor])
            log.info("stopped %s", self._where)

    async def wait(self) -> None:
        """Wait until the processor stops; raise if one of its parts failed.

        Raises:
            RuntimeError: from the exception that stopped the processor.
        """
        if self._state != "idle":
            await self._stopped.wait()
        if self._crash is not None:
            raise RuntimeError(f"{self!r} crashed: {self._crash!r}") from self._crash

    async def _shutdown(self) -> None:
        crew, parts = self._crew, self._parts
        await crew.cancel(["reader", "retries"])  # stop fetching
        parts.ledger.ready.set()  # wake idle workers so they see the stop
        await self._wait_for_handlers(crew.roles("worker-"))
        await self._wind_up(hurried=self._hurry.is_set())

    async def _wait_for_handlers(self, workers: list[asyncio.Task[None]]) -> None:
        """Until the workers end, `shutdown_timeout` passes or the stop is hurried."""
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            loop = asyncio.get_running_loop()
            until = loop.time() + self.options.shutdown_timeout
            pending: set[asyncio.Future[Any]] = set(workers)
            while pending and not hurry.done() and loop.time() < until:
                _, pending = await asyncio.wait(
                    pending | {hurry},
                    timeout=until - loop.time(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                pending.discard(hurry)
        finally:
            hurry.cancel()

    async def _wind_up(self, *, hurried: bool) -> None:
        """Cancel what still runs, ack what finished, close the session; bounded in real
        time. `hurried`: stop() was cancelled before the handlers' `shutdown_timeout`."""
        crew, parts = self._crew, self._parts
        unfinished = [task for task in crew.roles("worker-") if not task.done()]
        if unfinished:
            log.warning(
                "%d handler(s) still running %s: cancelled, their messages stay pending",
                len(unfinished),
                "when stop() was cancelled"
                if hurried
                else f"after shutdown_timeout={self.options.shutdown_timeout}s",
            )
        await crew.cancel(crew.others("acker"))  # keeper, unfinished handlers
        # an ack call in flight is let finish, not cancelled: client libraries may swallow
        # the cancellation (nats-py's publish flush does) and leave the acker waiting
        # one real-time budget for the ack in flight and the final flush together
        budget = 1.0 if hurried else max(self.options.shutdown_timeout, 1.0)
        acks_until = time.monotonic() + budget
        parts.acker.close()
        if parts.acker.sending:
            await crew.wait(["acker"], acks_until - time.monotonic())
        await crew.cancel(["acker"])
        await parts.acker.final_flush(max(0.0, acks_until - time.monotonic()))
        await parts.calls.close()
        parts.acker.clear()
        parts.retries.clear()
        parts.ledger.clear()

    async def _supervise(self) -> None:
        """Own the parts: if one ends while running (a bug, or a backend closed under the
        processor), log it loudly and stop rather than carry on half-working."""
        while self._state == "running":
            ended = await self._crew.first_to_end()
            if self._state != "running":
                return
            exc = None if ended.cancelled() else ended.exception()
            self._crash = exc or RuntimeError(f"{ended.get_name()} exited unexpectedly")
            log.critical("%s failed; stopping %r", ended.get_name(), self, exc_info=self._crash)
            await self.stop()


async def _until_done(task: asyncio.Future[None], hurry: asyncio.Event) -> None:
    """Await `task` (a shutdown, bounded in real time) to its end. A cancellation meanwhile
    sets `hurry` and is raised once `task` has ended, so that a cancelled stop() returns
    only when the processor has really stopped."""
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError as exc:
            cancelled = exc
            hurry.set()
    if cancelled is not None:
        raise cancelled
    task.result()
