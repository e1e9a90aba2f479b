"""`StreamProcessor`: consume one stream as one consumer of a group, at least once.

One processor owns a supervisor task and its children: a reader that keeps one read in
flight while handlers run (bounded prefetch), `concurrency` workers, an acker that batches
acknowledgements, a retry timer for failed messages, and a maintenance loop that heartbeats
held messages and claims those of stopped consumers. Delivery semantics: DESIGN §4.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any

from conveyor.backoff import backoff_delay
from conveyor.clock import Clock, SystemClock
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    GroupNotFoundError,
)
from conveyor.handlers import check_handler
from conveyor.message import Message
from conveyor.protocol import StartPosition, StreamBackend, StreamStorageProtocol, is_backend
from conveyor.seed import SeedStorageAdapter
from conveyor.stats import ProcessorStats

__all__ = ["ErrorHook", "StreamProcessor", "dead_letter_stream_for"]

log = logging.getLogger("conveyor.processor")

ErrorHook = Callable[[Message, BaseException], None]

#: Cap for the reconnect backoff of the read/ack loops (seconds).
_RECONNECT_CAP = 10.0


def dead_letter_stream_for(stream: str) -> str:
    """Default dead-letter stream of `stream`: ``<stream>.dead``."""
    return f"{stream}.dead"


def _positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    if value < 0 or (not allow_zero and value == 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


class StreamProcessor:
    """Consume `stream_name` as `consumer_name` of `consumer_group_name`.

    The first four arguments and `batch_count`/`poll_interval` are the seed module's;
    everything else is keyword-only.

    Args:
        storage: A conveyor backend (from `conveyor.connect`) or any object with the three
            `StreamStorageProtocol` methods.
        stream_name: Stream to consume.
        consumer_group_name: Consumer group; created at start if missing.
        consumer_name: This consumer's name in the group. Keep it stable across restarts
            of the same worker so it re-reads its own pending messages.
        batch_count: Messages fetched per read (and the unit of ack batches).
        poll_interval: Longest a read waits for new messages (blocking backends) or the
            sleep between empty reads (storages that cannot block).
        concurrency: Handler calls in flight at once.
        retry_delay: Seconds before a failed message is delivered again; doubles with
            each delivery (with jitter) up to `max_retry_delay`.
        max_retry_delay: Cap of the retry delay.
        claim_idle: Seconds after which pending messages of a consumer that stopped
            heartbeating may be taken by this one. A live consumer keeps its messages
            however long its handler runs (heartbeats every `claim_idle / 3`).
        max_deliveries: Deliveries before a failing message is dead-lettered.
        dead_letter_stream: Where dead letters go; default ``<stream>.dead``.
        shutdown_timeout: Seconds `stop()` waits for running handlers before cancelling
            them (their messages stay pending).
        start: ``"earliest"`` (default: a new group sees messages published before it
            existed) or ``"latest"``.
        connect_attempts: Attempts to create the group at start before `start()` raises
            `BrokerUnavailableError`.
        on_error: Called with (message, exception) for every handler failure.
        message: Force Message-style (True) or payload-style (False) handlers; None
            detects it from the handler's first annotation.
        clock: Time source (tests pass `conveyor.testing.FakeClock`).
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
    ) -> None:
        if not isinstance(storage, StreamStorageProtocol):
            raise TypeError(
                f"storage {storage!r} must implement StreamStorageProtocol"
                " (create_group, read_events, ack_event) or come from conveyor.connect()"
            )
        for name, value in (
            ("stream_name", stream_name),
            ("consumer_group_name", consumer_group_name),
            ("consumer_name", consumer_name),
        ):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty str, got {value!r}")
        if batch_count < 1:
            raise ValueError(f"batch_count must be >= 1, got {batch_count!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, got {max_deliveries!r}")
        if connect_attempts < 1:
            raise ValueError(f"connect_attempts must be >= 1, got {connect_attempts!r}")
        if start not in ("earliest", "latest"):
            raise ValueError(f"start must be 'earliest' or 'latest', got {start!r}")
        self.poll_interval = _positive("poll_interval", poll_interval, allow_zero=False)
        self.retry_delay = _positive("retry_delay", retry_delay)
        self.max_retry_delay = _positive("max_retry_delay", max_retry_delay)
        self.claim_idle = _positive("claim_idle", claim_idle, allow_zero=False)
        self.shutdown_timeout = _positive("shutdown_timeout", shutdown_timeout)

        self.storage = storage
        self.backend: StreamBackend = (
            storage if is_backend(storage) else SeedStorageAdapter(storage)  # type: ignore[assignment]
        )
        self.capabilities = self.backend.capabilities
        self.stream_name = stream_name
        self.consumer_group_name = consumer_group_name
        self.consumer_name = consumer_name
        self.batch_count = batch_count
        self.concurrency = concurrency
        self.max_deliveries = max_deliveries
        self.dead_letter_stream = dead_letter_stream or dead_letter_stream_for(stream_name)
        self.start_position: StartPosition = start
        self.connect_attempts = connect_attempts
        self.on_error = on_error
        self.clock: Clock = clock or SystemClock()
        self.stats = ProcessorStats()
        self._message_style = message
        self._handler: Callable[[Any], Awaitable[Any]] | None = None
        self._handler_takes_message = False

        self._state = "idle"  # idle -> running -> stopping -> idle
        self._tasks: set[asyncio.Task[None]] = set()
        self._workers: set[asyncio.Task[None]] = set()
        # loops stop() handles one by one; the supervisor watches all of self._tasks
        self._fetchers: list[asyncio.Task[None]] = []  # reader and retry timer
        self._acker: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._crash: BaseException | None = None
        # messages this consumer holds: buffered, in a handler, or waiting for a retry
        self._held: dict[str, Message] = {}
        self._inbox: deque[Message] = deque()
        self._inbox_ready = asyncio.Event()
        self._room = asyncio.Event()
        self._to_ack: list[Message] = []
        self._ack_ready = asyncio.Event()
        self._acks_idle = asyncio.Event()
        self._retries: list[tuple[float, int, Message]] = []
        self._retry_changed = asyncio.Event()
        self._seq = itertools.count()
        self._prefetch = max(batch_count, concurrency) * 2
        self._stopped = asyncio.Event()
        self._stopped.set()

    # -- configuration -----------------------------------------------------------------

    def set_callback(self, callback: Callable[..., Awaitable[Any]]) -> None:
        """Set the handler: ``async def handler(payload: dict)`` or ``(msg: Message)``.

        Raises:
            TypeError: `callback` is not an async function.
        """
        self._handler, self._handler_takes_message = check_handler(
            callback, message=self._message_style
        )

    @property
    def is_running(self) -> bool:
        """True between a successful `start()` and `stop()`."""
        return self._state == "running"

    @property
    def idle(self) -> bool:
        """True when nothing is buffered, running or waiting to be acknowledged."""
        return (
            not self._inbox
            and self.stats.in_flight == 0
            and not self._to_ack
            and self._acks_idle.is_set()
        )

    @property
    def next_retry_at(self) -> float | None:
        """Clock time of the earliest scheduled retry, or None."""
        return self._retries[0][0] if self._retries else None

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
        """Create the group if needed and start consuming.

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
        await self._ensure_group_at_start()
        self._state = "running"
        self._stopped.clear()
        self._crash = None
        self._room.set()
        self._acks_idle.set()
        self._fetchers = [
            self._spawn(self._read_loop(), "reader"),
            self._spawn(self._retry_loop(), "retries"),
        ]
        self._acker = self._spawn(self._ack_loop(), "acker")
        self._spawn(self._maintenance_loop(), "maintenance")
        for index in range(self.concurrency):
            self._workers.add(self._spawn(self._worker(), f"worker-{index}"))
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"conveyor:{self.stream_name}:supervisor"
        )
        log.info(
            "started %s/%s as %s (concurrency=%d, backend=%s)",
            self.stream_name,
            self.consumer_group_name,
            self.consumer_name,
            self.concurrency,
            self.capabilities.name,
        )

    async def stop(self) -> None:
        """Stop fetching, let running handlers finish (up to `shutdown_timeout`), ack what
        finished, leave the rest pending. Idempotent; safe to call concurrently."""
        if self._state == "stopping":
            await self._stopped.wait()
            return
        if self._state != "running":
            return
        self._state = "stopping"
        self._stopped.clear()
        try:
            await self._shutdown()
        finally:
            self._state = "idle"
            self._stopped.set()
            supervisor, self._supervisor = self._supervisor, None
            if supervisor is not None and supervisor is not asyncio.current_task():
                supervisor.cancel()
                await asyncio.wait([supervisor])
            log.info(
                "stopped %s/%s as %s",
                self.stream_name,
                self.consumer_group_name,
                self.consumer_name,
            )

    @property
    def error(self) -> BaseException | None:
        """The exception that crashed one of the processor's loops, if any."""
        return self._crash

    async def wait(self) -> None:
        """Wait until the processor stops; raise if one of its loops crashed.

        Raises:
            RuntimeError: from the exception that crashed the processor.
        """
        if self._state != "idle":
            await self._stopped.wait()
        if self._crash is not None:
            raise RuntimeError(f"{self!r} crashed: {self._crash!r}") from self._crash

    async def _shutdown(self) -> None:
        for task in self._fetchers:
            task.cancel()
        self._inbox_ready.set()  # wake idle workers so they see the stop
        workers = list(self._workers)
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self.shutdown_timeout)
            if pending:
                log.warning(
                    "%d handler(s) still running after shutdown_timeout=%ss: cancelled,"
                    " their messages stay pending",
                    len(pending),
                    self.shutdown_timeout,
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)
        # flush what finished; shielded so a cancelled stop() still acks finished work
        await asyncio.shield(self._final_flush())
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        self._tasks.clear()
        self._workers.clear()
        self._inbox.clear()
        self._held.clear()
        self._retries.clear()

    async def _final_flush(self) -> None:
        self._ack_ready.set()
        deadline = self.clock.monotonic() + max(self.shutdown_timeout, 1.0)
        while (self._to_ack or not self._acks_idle.is_set()) and self.clock.monotonic() < deadline:
            if self._acker is None or self._acker.done():
                break
            self._ack_ready.set()
            try:
                await asyncio.wait_for(self._acks_idle.wait(), 0.5)
            except asyncio.TimeoutError:
                continue
            if not self._to_ack:
                break
        if self._to_ack:
            log.warning(
                "%d finished message(s) could not be acked before shutdown; they will"
                " be delivered again",
                len(self._to_ack),
            )

    def _spawn(self, coro: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro,
            name=f"conveyor:{self.stream_name}:{self.consumer_name}:{role}",
        )
        self._tasks.add(task)
        return task

    async def _supervise(self) -> None:
        """Own the loops: if one crashes (a bug or an unexpected error), log it loudly
        and stop the processor rather than carry on half-working."""
        while self._state == "running":
            done, _ = await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
            if self._state != "running":
                return
            crashed = next(iter(done))
            exc = None if crashed.cancelled() else crashed.exception()
            self._crash = exc or RuntimeError(f"{crashed.get_name()} exited unexpectedly")
            log.critical("%s crashed; stopping %r", crashed.get_name(), self, exc_info=self._crash)
            await self.stop()

    # -- broker calls with reconnect backoff ------------------------------------------

    async def _ensure_group_at_start(self) -> None:
        last: BaseException | None = None
        for attempt in range(1, self.connect_attempts + 1):
            try:
                await self.backend.ensure_group(
                    self.stream_name,
                    self.consumer_group_name,
                    start=self.start_position,
                    claim_idle=self.claim_idle,
                    max_deliveries=self.max_deliveries,
                    consumer=self.consumer_name,
                )
                return
            except BrokerUnavailableError as exc:
                last = exc
                if attempt < self.connect_attempts:
                    delay = backoff_delay(attempt, 0.2, 5.0)
                    log.warning("broker unavailable (%s); retrying in %.2fs", exc, delay)
                    await asyncio.sleep(delay)
        raise BrokerUnavailableError(
            f"could not create group {self.consumer_group_name!r} on stream"
            f" {self.stream_name!r} after {self.connect_attempts} attempts: {last}"
        ) from last

    async def _recover(self, exc: BaseException, attempt: int) -> None:
        """React to a failed broker call: recreate a vanished group, else back off."""
        if isinstance(exc, GroupNotFoundError):
            log.warning(
                "group %r on stream %r disappeared (%s): recreating it; entries pending in"
                " the old group are lost to it",
                self.consumer_group_name,
                self.stream_name,
                exc,
            )
            try:
                await self.backend.ensure_group(
                    self.stream_name,
                    self.consumer_group_name,
                    start="earliest",
                    claim_idle=self.claim_idle,
                    max_deliveries=self.max_deliveries,
                    consumer=self.consumer_name,
                )
                return
            except BackendError as again:
                exc = again
        self.stats.reconnects += 1
        delay = backoff_delay(attempt, 0.1, _RECONNECT_CAP)
        log.warning(
            "broker call failed (%s: %s); retrying in %.2fs", type(exc).__name__, exc, delay
        )
        await asyncio.sleep(delay)

    # -- the loops ---------------------------------------------------------------------

    def _enqueue(self, messages: Sequence[Message], *, front: bool = False) -> None:
        fresh = []
        for message in messages:
            if message.id in self._held:
                continue  # already held here (e.g. own-pending re-read after reconnect)
            self._held[message.id] = message
            fresh.append(message)
        if not fresh:
            return
        if front:
            self._inbox.extendleft(reversed(fresh))
        else:
            self._inbox.extend(fresh)
        if len(self._inbox) >= self._prefetch:
            self._room.clear()
        self._inbox_ready.set()

    async def _read_loop(self) -> None:
        backend = self.backend
        blocking = self.capabilities.blocking_read
        attempt = 0
        while self._state == "running":
            if not self._room.is_set():
                await self._room.wait()
            room = self._prefetch - len(self._inbox)
            count = max(1, min(self.batch_count, room))
            try:
                messages = await backend.read(
                    self.stream_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    count=count,
                    block=self.poll_interval if blocking else None,
                )
            except BackendClosedError:
                raise
            except BackendError as exc:
                attempt += 1
                await self._recover(exc, attempt)
                continue
            attempt = 0
            if messages:
                self._enqueue(messages)
            elif not blocking:
                await asyncio.sleep(self.poll_interval)

    async def _worker(self) -> None:
        """Take messages from the inbox and run the handler; the hot path, kept flat."""
        inbox = self._inbox
        handler = self._handler
        assert handler is not None  # start() checked it
        takes_message = self._handler_takes_message
        stats = self.stats
        refill_at = max(0, self._prefetch - self.batch_count)
        while True:
            while not inbox:
                if self._state != "running":
                    return
                self._ack_ready.set()  # idle: flush what is done
                self._inbox_ready.clear()
                await self._inbox_ready.wait()
            if self._state != "running":
                return
            message = inbox.popleft()
            if len(inbox) <= refill_at:
                self._room.set()
            if message.decode_error is not None:
                await self._dead_letter(message, "DecodeError", message.decode_error)
                continue
            stats.in_flight += 1
            try:
                await (handler(message) if takes_message else handler(message.data))
            except asyncio.CancelledError:
                raise  # shutdown/cancellation never acknowledges an unfinished message
            except Exception as exc:  # noqa: BLE001 - a handler failure is data, not a crash
                stats.failed += 1
                self._report(message, exc)
                await self._handle_failure(message, exc)
            else:
                stats.handled += 1
                to_ack = self._to_ack
                to_ack.append(message)
                if len(to_ack) >= self.batch_count:
                    self._ack_ready.set()
            finally:
                stats.in_flight -= 1

    def _report(self, message: Message, exc: BaseException) -> None:
        log.warning(
            "handler failed for %s %s (delivery %d/%d): %s: %s",
            self.stream_name,
            message.id,
            message.delivery_count,
            self.max_deliveries,
            type(exc).__name__,
            exc,
        )
        if self.on_error is not None:
            self.on_error(message, exc)

    async def _handle_failure(self, message: Message, exc: BaseException) -> None:
        if message.delivery_count >= self.max_deliveries:
            await self._dead_letter(message, type(exc).__name__, str(exc))
            return
        delay = backoff_delay(message.delivery_count, self.retry_delay, self.max_retry_delay)
        self.stats.retried += 1
        if self.capabilities.redelivery == "broker":
            try:
                await self.backend.nack(
                    self.stream_name, self.consumer_group_name, message, delay=delay
                )
            except BackendError as nack_exc:
                log.warning(
                    "nack of %s failed (%s); the broker redelivers it after its ack wait",
                    message.id,
                    nack_exc,
                )
            self._held.pop(message.id, None)
            return
        heapq.heappush(self._retries, (self.clock.monotonic() + delay, next(self._seq), message))
        self._retry_changed.set()

    async def _dead_letter(self, message: Message, error_type: str, error: str) -> None:
        record: dict[str, Any] = {
            "original": message.data if message.decode_error is None else None,
            "original_raw": None if message.decode_error is None else repr(message.raw),
            "error_type": error_type,
            "error": error,
            "delivery_count": message.delivery_count,
            "original_id": message.id,
            "stream": self.stream_name,
            "group": self.consumer_group_name,
            "consumer": self.consumer_name,
            "dead_lettered_at": self.clock.time(),
        }
        attempt = 0
        while True:
            try:
                await self.backend.dead_letter(
                    self.stream_name,
                    self.consumer_group_name,
                    message,
                    dead_letter_stream=self.dead_letter_stream,
                    record=record,
                )
                break
            except BrokerUnavailableError as exc:
                attempt += 1
                if attempt >= 5 or self._state != "running":
                    log.error("could not dead-letter %s (%s); it stays pending", message.id, exc)
                    self._held.pop(message.id, None)
                    return
                await self._recover(exc, attempt)
        self.stats.dead_lettered += 1
        self._held.pop(message.id, None)
        log.error(
            "dead-lettered %s %s to %s after %d deliveries: %s: %s",
            self.stream_name,
            message.id,
            self.dead_letter_stream,
            message.delivery_count,
            error_type,
            error,
        )

    async def _ack_loop(self) -> None:
        attempt = 0
        while True:
            if not self._to_ack:
                self._acks_idle.set()
                self._ack_ready.clear()
                await self._ack_ready.wait()
                continue
            self._acks_idle.clear()
            batch, self._to_ack = self._to_ack, []
            try:
                await self.backend.ack(self.stream_name, self.consumer_group_name, batch)
            except BackendError as exc:
                self._to_ack[:0] = batch  # keep them; retry after a backoff
                attempt += 1
                await self._recover(exc, attempt)
                continue
            attempt = 0
            self.stats.acked += len(batch)
            held = self._held
            for message in batch:
                held.pop(message.id, None)

    async def _retry_loop(self) -> None:
        clock = self.clock
        while True:
            self._retry_changed.clear()
            if not self._retries:
                await self._retry_changed.wait()
                continue
            wait = self._retries[0][0] - clock.monotonic()
            if wait > 0:
                await _sleep_unless(clock, wait, self._retry_changed)
                continue
            due: list[Message] = []
            now = clock.monotonic()
            while self._retries and self._retries[0][0] <= now:
                due.append(heapq.heappop(self._retries)[2])
            try:
                fresh = await self.backend.redeliver(
                    self.stream_name, self.consumer_group_name, self.consumer_name, due
                )
            except BackendError as exc:
                for message in due:
                    heapq.heappush(self._retries, (now + 1.0, next(self._seq), message))
                await self._recover(exc, 1)
                continue
            fresh_ids = {m.id for m in fresh}
            for message in due:
                if message.id not in fresh_ids:
                    self._held.pop(message.id, None)  # gone (acked elsewhere, trimmed)
                    log.info(
                        "message %s is gone from %s; not retried", message.id, self.stream_name
                    )
            for message in fresh:
                self._held.pop(message.id, None)
            self._enqueue(fresh, front=True)

    async def _maintenance_loop(self) -> None:
        interval = self.claim_idle / 3
        claims = self.capabilities.claim == "engine"
        attempt = 0
        while True:
            try:
                if self._held:
                    await self.backend.heartbeat(
                        self.stream_name,
                        self.consumer_group_name,
                        self.consumer_name,
                        list(self._held.values()),
                    )
                if claims and len(self._inbox) < self._prefetch:
                    claimed = await self.backend.claim_stale(
                        self.stream_name,
                        self.consumer_group_name,
                        self.consumer_name,
                        min_idle=self.claim_idle,
                        count=self.batch_count,
                    )
                    if claimed:
                        self.stats.claimed += len(claimed)
                        log.info(
                            "claimed %d stale message(s) on %s", len(claimed), self.stream_name
                        )
                        self._enqueue(claimed)
                attempt = 0
            except BackendError as exc:
                attempt += 1
                await self._recover(exc, attempt)
                continue
            await self.clock.sleep(interval)


async def _sleep_unless(clock: Clock, seconds: float, event: asyncio.Event) -> None:
    """Sleep `seconds` on `clock`, or less if `event` is set meanwhile."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, waiter):
            task.cancel()
        await asyncio.wait({sleeper, waiter})
