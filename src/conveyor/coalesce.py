"""`Coalescer`: concurrent one-message publishes to a stream, sent one batch per round trip.

Applications publish one message per request or event, often from many tasks at once;
one awaited broker round trip per message caps any broker at a few thousand messages per
second. A backend's `publish` therefore goes through a `Coalescer` ("natural batching",
no timers):

* a publish to a stream with no batch in flight goes out at once, by itself: a lone
  publish waits for nothing;
* publishes arriving while a batch is in flight queue up, and go out together as the next
  batch (one ``_publish_many`` call: one pipeline, one set of gathered acks, one
  transaction) as soon as the one in flight is done;
* each caller awaits its own id. A payload error (`PayloadError`: raised before anything
  is sent) fails only its own caller: the batch is split until the bad payload is alone,
  and the others are sent. Any other error fails the whole batch (what was sent of it may
  be stored, as with any failed publish);
* at most `max_outstanding` publishes are queued or in flight per backend; beyond that,
  callers wait for room (first come, first served);
* a caller cancelled while its message is queued takes it out; once sent, the message may
  be stored (a cancelled publish never says whether it was);
* `aclose` fails the queued publishes and those waiting for room with
  `BackendClosedError`, and lets the batches in flight finish (for at most `grace`
  seconds).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from conveyor.errors import BackendClosedError, PayloadError
from conveyor.gate import Gate

__all__ = ["MAX_BATCH", "MAX_OUTSTANDING", "Coalescer", "SendMany"]

log = logging.getLogger("conveyor.publish")

#: ``_publish_many(stream, items, headers)``: the backend's batch publish.
SendMany = Callable[[str, list[dict[str, Any]], list[dict[str, str]] | None], Awaitable[list[str]]]

#: Most messages one batch carries (a larger queue goes out in several batches).
MAX_BATCH = 1000
#: Most publishes queued or in flight per backend before callers wait for room.
MAX_OUTSTANDING = 10_000


@dataclass(eq=False, slots=True)
class _Queued:
    data: dict[str, Any]
    headers: dict[str, str]
    future: asyncio.Future[str]


class Coalescer:
    """Gathers concurrent `publish` calls per stream into batches for `send`.

    Args:
        send: The backend's ``_publish_many``.
        max_batch: Most messages per batch.
        max_outstanding: Most publishes queued or in flight before callers wait.
        grace: Seconds `aclose` lets batches in flight finish.
    """

    def __init__(
        self,
        send: SendMany,
        *,
        max_batch: int = MAX_BATCH,
        max_outstanding: int = MAX_OUTSTANDING,
        grace: float = 10.0,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._room = Gate(max_outstanding)  # queued or in flight; then callers wait
        self._busy: set[str] = set()  # streams with a batch in flight
        self._queues: dict[str, deque[_Queued]] = {}  # of busy streams, when any queued
        self._flushers: set[asyncio.Task[None]] = set()
        self._grace = grace
        self._closed = False

    @property
    def outstanding(self) -> int:
        """Publishes queued or in flight (diagnostics and tests)."""
        return self._room.held

    async def publish(self, stream: str, data: dict[str, Any], headers: dict[str, str]) -> str:
        """Publish one message (`headers` checked, ``{}`` for none); its id.

        Raises:
            BackendClosedError: the backend was closed before the message was sent.
            ConveyorError: as the backend's ``_publish_many`` raises for this message.
        """
        if self._closed:
            raise BackendClosedError("the backend is closed")
        if not self._room.try_enter():
            await self._room.enter()
        try:
            if stream not in self._busy:  # nothing in flight: go out at once, alone
                self._busy.add(stream)
                try:
                    ids = await self._send(stream, [data], [headers] if headers else None)
                finally:
                    self._next(stream)
                return ids[0]
            queue = self._queues.get(stream)
            if queue is None:
                queue = self._queues[stream] = deque()
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            queued = _Queued(data, headers, future)
            queue.append(queued)
            try:
                return await future
            except asyncio.CancelledError:
                if not future.done() or future.cancelled():
                    try:
                        queue.remove(queued)  # still queued: never sent
                    except ValueError:
                        pass
                raise
        finally:
            self._room.leave()

    def _next(self, stream: str) -> None:
        """A batch of `stream` is done: start a flusher for what queued meanwhile, or
        let the stream go idle."""
        if self._queues.get(stream) and not self._closed:
            task = asyncio.get_running_loop().create_task(
                self._flush(stream), name=f"conveyor:publish:{stream}"
            )
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
            return
        self._busy.discard(stream)
        self._queues.pop(stream, None)

    async def _flush(self, stream: str) -> None:
        """Send `stream`'s queue batch after batch until it stays empty, then go idle."""
        queue = self._queues[stream]
        batch: list[_Queued] = []
        try:
            while True:
                if not queue:
                    await asyncio.sleep(0)  # callers just woken publish again: join them
                    if not queue:
                        break
                batch = []
                while queue and len(batch) < self._max_batch:
                    queued = queue.popleft()
                    if not queued.future.done():  # cancelled callers are skipped
                        batch.append(queued)
                if batch:
                    await self._send_batch(stream, batch)
                batch = []
        except BaseException:  # cancelled (by `aclose` after its grace)
            for queued in batch:
                if self._closed:
                    _fail(queued.future, BackendClosedError("the backend was closed"))
                else:
                    queued.future.cancel()
            raise
        finally:
            for queued in queue:  # only after a failure or close: fail the rest
                _fail(queued.future, BackendClosedError("the backend was closed"))
            queue.clear()
            self._busy.discard(stream)
            if self._queues.get(stream) is queue:
                del self._queues[stream]

    async def _send_batch(self, stream: str, batch: list[_Queued]) -> None:
        """Send `batch`; set each caller's id or error. A `PayloadError` (nothing sent)
        splits the batch until it is down to the payloads that caused it."""
        headers = [q.headers for q in batch] if any(q.headers for q in batch) else None
        try:
            ids = await self._send(stream, [q.data for q in batch], headers)
        except PayloadError as exc:
            if len(batch) == 1:
                _fail(batch[0].future, exc)
                return
            half = len(batch) // 2
            await self._send_batch(stream, batch[:half])
            await self._send_batch(stream, batch[half:])
            return
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            for queued in batch:
                _fail(queued.future, exc)
            return
        for queued, entry_id in zip(batch, ids, strict=True):
            if not queued.future.done():
                queued.future.set_result(entry_id)

    # -- room ------------------------------------------------------------------------

    # -- closing ---------------------------------------------------------------------

    async def aclose(self) -> None:
        """Fail queued publishes and callers waiting for room with `BackendClosedError`;
        let batches in flight finish (at most `grace` seconds), then cancel them."""
        self._closed = True
        closed = BackendClosedError("the backend was closed before this message was sent")
        self._room.fail_waiters(lambda waiter: _fail(waiter, closed))
        for queue in self._queues.values():
            while queue:
                _fail(queue.popleft().future, closed)
        flushers = list(self._flushers)
        if not flushers:
            return
        _, late = await asyncio.wait(flushers, timeout=self._grace)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d publish batch(es) still in flight at close: cancelled", len(late))
            await asyncio.wait(late)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail `future` with its own copy of `exc` (many callers re-raising one exception
    object would each add their frames to its one traceback)."""
    if future.done():
        return
    own = exc
    try:
        own = copy.copy(exc)
        own.__cause__, own.__context__ = exc.__cause__, exc.__context__
        own.__traceback__ = exc.__traceback__
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is shared
        own = exc
    future.set_exception(own)
