"""The backend's producer: every publish of every task, packed into record batches.

aiokafka's `send_batch` (and `send` once a batch is full) queues at most one batch per
partition and makes every other caller wait for that batch to be drained, each waiter
woken at every drain and every wait charged against ``request_timeout_ms`` (in
``add_batch`` the elapsed time is subtracted from the start each time, so the budget
shrinks quadratically). A thousand concurrent one-record publishes therefore queue a
thousand one-record batches that are sent one round trip at a time and most of them fail
with ``KafkaTimeoutError``; past about 10⁵ concurrent `send` calls the wake-ups alone
exhaust the timeout.

So publishes do not go to aiokafka one by one: each adds a request to its topic's queue,
and one flusher task per topic packs the queued requests into full batches (partitions in
turn, one batch each) and hands them to `send_batch` one at a time. Only the flusher waits
inside aiokafka, for at most the partition's previous batch; requests arriving meanwhile
share the next batches, so under load a round trip carries a full batch instead of one
record. A caller awaits its own request, whose ids are filled in as its batches are
acknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors

from conveyor.errors import BackendClosedError, BackendError, BrokerUnavailableError
from conveyor_kafka.errors import ERRORS
from conveyor_kafka.settings import KafkaSettings

__all__ = ["Producer", "RecordHeaders"]

log = logging.getLogger("conveyor.kafka")

#: Native headers of one record, as aiokafka's batch builder takes them.
RecordHeaders = list[tuple[str, bytes | None]]

_CLOSE_GRACE = 5.0  # seconds queued publishes get to finish when the backend closes


@dataclass(eq=False, slots=True)
class _Request:
    """One `publish_many` call (or one `publish`): its records, and the ids as they come."""

    values: list[bytes]
    headers: list[RecordHeaders] | None
    future: asyncio.Future[list[str]]
    ids: list[str] = field(default_factory=list)
    missing: int = 0  # records not yet acknowledged by the broker
    unsent: int = 0  # records not yet handed to aiokafka

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


# a run of one request's records inside one batch: (request, first index, count, position)
_Span = tuple[_Request, int, int, int]


class Producer:
    """An `AIOKafkaProducer` started on first use, with one flusher task per busy topic.

    The backend owns it: `aclose()` lets queued publishes finish (a few seconds at most),
    then cancels the flushers and stops the client.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        closed: Callable[[], bool],
        prepare: Callable[[str], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._closed = closed
        self._prepare = prepare  # makes sure a topic exists
        self._client: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._queues: dict[str, list[_Request]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._round_robin = itertools.count()

    async def send(
        self, topic: str, values: list[bytes], headers: list[RecordHeaders] | None
    ) -> list[str]:
        """Append `values` (non-empty, with `headers` per value or None) to `topic`, in
        order; return their ``topic/partition/offset`` ids once the broker stored them.

        Nothing is awaited before the request is queued, so gathered publishes all join
        the first round; the flusher creates the topic and starts the client."""
        loop = asyncio.get_running_loop()
        size = len(values)
        request = _Request(values, headers, loop.create_future(), [""] * size, size, size)
        queue = self._queues.get(topic)
        if queue is None:
            self._queues[topic] = [request]
        else:
            queue.append(request)
        if topic not in self._flushers:
            self._flushers[topic] = loop.create_task(
                self._flush(topic), name=f"conveyor:kafka:produce:{topic}"
            )
        with ERRORS.mapping(f"kafka produce to {topic!r}", closed=self._closed):
            return await request.future

    async def _started(self) -> AIOKafkaProducer:
        if self._client is not None:
            return self._client
        async with self._starting:
            if self._client is None:
                self._client = await self._start()
        return self._client

    async def _start(self) -> AIOKafkaProducer:
        if self._closed():
            raise BackendClosedError("the kafka backend is closed")
        settings = self._settings
        client = AIOKafkaProducer(
            acks="all",
            enable_idempotence=settings.idempotent,
            max_request_size=settings.max_request_size,
            **settings.client_kwargs(),
        )
        try:
            with ERRORS.mapping("kafka start producer"):
                await client.start()
        except BackendError as exc:
            await client.stop()
            if settings.idempotent and not isinstance(exc, BrokerUnavailableError):
                raise BackendError(
                    f"{exc} (the broker may not support idempotent producers;"
                    " Tansu's memory storage does not: set idempotent=false)"
                ) from exc
            raise
        except BaseException:
            await client.stop()
            raise
        if self._closed():  # closed while starting
            await client.stop()
            raise BackendClosedError("the kafka backend was closed")
        return client

    async def aclose(self) -> None:
        """Let queued publishes finish (bounded), then stop the flushers and the client."""
        flushers = list(self._flushers.values())
        if flushers:
            _, late = await asyncio.wait(flushers, timeout=_CLOSE_GRACE)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        client, self._client = self._client, None
        if client is not None:
            await client.stop()  # waits for batches in flight: their callers get their ids

    def _failure(self, exc: BaseException) -> BaseException:
        if isinstance(exc, Exception) and not self._closed():
            return exc
        return BackendClosedError("the kafka backend was closed")

    # -- the flusher ---------------------------------------------------------------------

    async def _flush(self, topic: str) -> None:
        """Create the topic if needed, then send its queue round after round until it is
        empty, and exit (the next publish starts a new flusher). Fails the waiting
        requests rather than leave them hanging when it cannot go on."""
        try:
            await self._prepare(topic)
            client = await self._started()
            while True:
                if self._settings.linger_ms:
                    await asyncio.sleep(self._settings.linger_ms / 1000)
                requests = self._queues.pop(topic, None)
                if not requests:
                    break
                await self._send_round(client, topic, requests)
        except BaseException as exc:
            failure = self._failure(exc)
            for request in self._queues.pop(topic, []):
                request.fail(failure)
            if not isinstance(exc, Exception):
                raise  # cancelled: the backend is closing
        finally:
            del self._flushers[topic]

    async def _send_round(
        self, client: AIOKafkaProducer, topic: str, requests: list[_Request]
    ) -> None:
        live = [r for r in requests if not r.future.done()]  # callers cancelled meanwhile
        try:
            partitions = sorted(await client.partitions_for(topic))
            if not partitions:
                raise kafka_errors.UnknownTopicOrPartitionError(topic)
            batch = client.create_batch()
            spans: list[_Span] = []
            size = 0  # records in `batch`
            for request in live:
                values, headers = request.values, request.headers
                first = index = 0
                start = size  # where this request's run starts in `batch`
                while index < len(values):
                    if headers is None:
                        added = batch.append(key=None, value=values[index], timestamp=None)
                    else:
                        added = batch.append(
                            key=None, value=values[index], timestamp=None, headers=headers[index]
                        )
                    if added is None:  # full (a batch's first record always fits)
                        if index > first:
                            spans.append((request, first, index - first, start))
                        await self._submit(client, topic, partitions, batch, spans)
                        batch, spans, size, first, start = client.create_batch(), [], 0, index, 0
                        continue
                    index += 1
                    size += 1
                if index > first:
                    spans.append((request, first, index - first, start))
            if spans:
                await self._submit(client, topic, partitions, batch, spans)
        except BaseException as exc:
            # a request whose records were all handed over learns its fate from its
            # batches; the others fail, though some of their records may be stored
            failure = self._failure(exc)
            for request in live:
                if request.unsent:
                    request.fail(failure)
            if not isinstance(exc, Exception):
                raise

    async def _submit(
        self,
        client: AIOKafkaProducer,
        topic: str,
        partitions: list[int],
        batch: Any,
        spans: list[_Span],
    ) -> None:
        batch.close()
        partition = partitions[next(self._round_robin) % len(partitions)]
        delivered = await client.send_batch(batch, topic, partition=partition)
        delivered.add_done_callback(functools.partial(_delivered, spans))
        for request, _, count, _ in spans:
            request.unsent -= count


def _delivered(spans: list[_Span], delivered: asyncio.Future[Any]) -> None:
    """A batch was acknowledged (or failed): fill in its records' ids."""
    if delivered.cancelled():
        error: BaseException | None = BackendClosedError("the kafka producer was stopped")
    else:
        error = delivered.exception()
    if error is not None:
        for request, *_ in spans:
            request.fail(error)
        return
    result = delivered.result()
    prefix = f"{result.topic}/{result.partition}/"
    base = result.offset
    for request, first, count, position in spans:
        if request.future.done():
            continue
        start = base + position
        request.ids[first : first + count] = [f"{prefix}{start + i}" for i in range(count)]
        request.missing -= count
        if not request.missing:
            request.future.set_result(request.ids)
