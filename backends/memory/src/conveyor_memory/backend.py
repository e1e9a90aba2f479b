"""The in-process broker: streams, consumer groups and pending lists, with Redis semantics.

State lives in a `MemoryBroker` per name, shared by every `MemoryBackend` opened on
``memory://<name>`` in the process; `reset()` forgets it (for tests). Payloads are checked
and copied through JSON on publish, so tests on memory reject what real brokers reject.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from conveyor.clock import Clock, SystemClock
from conveyor.codec import decode_json, encode_json
from conveyor.errors import BackendClosedError, DecodeError, GroupNotFoundError
from conveyor.message import Message
from conveyor.options import parse_url_options
from conveyor.protocol import Capabilities, ConsumerInfo, GroupInfo, StartPosition

__all__ = ["CAPABILITIES", "MemoryBackend", "MemoryBroker", "MemorySettings", "reset"]

log = logging.getLogger("conveyor.memory")

CAPABILITIES = Capabilities(
    name="memory",
    redelivery="engine",
    claim="engine",
    exact_delivery_count=True,
    ordering="stream",
    durable=False,
)


@dataclass(frozen=True)
class MemorySettings:
    """Options of ``memory://name``.

    Attributes:
        name: The broker name (the URL's host part); backends with the same name share
            state within the process. Empty: ``"default"``.
        maxlen: Keep at most this many entries per stream (oldest trimmed first, like
            Redis ``MAXLEN``); None keeps everything.
        clock: A `conveyor.clock.Clock` for idle times and timestamps (keyword only;
            tests pass `conveyor.testing.FakeClock`).
    """

    name: str = "default"
    maxlen: int | None = None
    clock: Clock | None = None

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> MemorySettings:
        name = url.split("://", 1)[1].strip("/") or "default"
        kwargs = parse_url_options("memory", cls, options, exclude=("name",))
        settings = cls(name=name, **kwargs)
        if settings.maxlen is not None and settings.maxlen < 1:
            raise ValueError(f"memory:// option maxlen={settings.maxlen}: must be >= 1")
        return settings


@dataclass(slots=True)
class _Entry:
    seq: int
    payload: str  # JSON text: every read decodes a fresh copy
    published_at: float


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    count: int


@dataclass
class _Group:
    last_seq: int
    pending: dict[int, _Pending] = field(default_factory=dict)
    consumers: dict[str, float] = field(default_factory=dict)


@dataclass
class _Stream:
    seqs: list[int] = field(default_factory=list)
    entries: dict[int, _Entry] = field(default_factory=dict)
    last_seq: int = 0
    groups: dict[str, _Group] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class MemoryBroker:
    """All streams of one ``memory://name``."""

    def __init__(self, name: str, clock: Clock | None = None) -> None:
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self.streams: dict[str, _Stream] = {}

    def stream(self, name: str) -> _Stream:
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = _Stream()
        return stream


_BROKERS: dict[str, MemoryBroker] = {}


def _broker(name: str, clock: Clock | None) -> MemoryBroker:
    broker = _BROKERS.get(name)
    if broker is None:
        broker = _BROKERS[name] = MemoryBroker(name, clock)
    elif clock is not None:
        broker.clock = clock
    return broker


def reset(name: str | None = None) -> None:
    """Forget the state of ``memory://name`` (every memory broker when None)."""
    if name is None:
        _BROKERS.clear()
    else:
        _BROKERS.pop(name, None)


class MemoryBackend:
    """``memory://`` backend: real consumer-group semantics inside the process."""

    capabilities = CAPABILITIES

    def __init__(self, settings: MemorySettings | None = None) -> None:
        self.settings = settings or MemorySettings()
        self.broker = _broker(self.settings.name, self.settings.clock)
        self._closed = False
        # (stream, group, consumer) -> seq cursor while re-reading own pending entries
        self._recovering: dict[tuple[str, str, str], int] = {}
        self._started: set[tuple[str, str, str]] = set()

    def __repr__(self) -> str:
        return f"MemoryBackend(name={self.settings.name!r})"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> MemoryBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for stream in self.broker.streams.values():
            stream.wake()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosedError(f"{self!r} is closed")

    # -- helpers -----------------------------------------------------------------------

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        state = self.broker.streams.get(stream)
        found = state.groups.get(group) if state is not None else None
        if state is None or found is None:
            raise GroupNotFoundError(f"no group {group!r} on stream {stream!r}")
        return state, found

    def _message(self, stream: str, entry: _Entry, count: int) -> Message:
        try:
            data = decode_json(entry.payload)
        except DecodeError as exc:
            return Message(
                id=str(entry.seq),
                stream=stream,
                data={},
                delivery_count=count,
                published_at=entry.published_at,
                decode_error=str(exc),
                raw=entry.payload,
            )
        return Message(
            id=str(entry.seq),
            stream=stream,
            data=data,
            delivery_count=count,
            published_at=entry.published_at,
        )

    def _drop_trimmed(self, stream: str, group: str, state: _Group, seq: int) -> None:
        state.pending.pop(seq, None)
        log.warning(
            "entry %s of stream %r was trimmed while pending in group %r: acknowledged",
            seq,
            stream,
            group,
        )

    def _trim(self, state: _Stream) -> None:
        maxlen = self.settings.maxlen
        if maxlen is None or len(state.seqs) <= maxlen:
            return
        cut = len(state.seqs) - maxlen
        for seq in state.seqs[:cut]:
            del state.entries[seq]
        del state.seqs[:cut]

    # -- the seed protocol -------------------------------------------------------------

    async def create_group(self, stream_name: str, group_name: str) -> None:
        await self.ensure_group(stream_name, group_name)

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        messages = await self.read(stream_name, group_name, consumer_name, count=count, block=None)
        return [(m.id, m.data) for m in messages]

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        self._check_open()
        state = self.broker.streams.get(stream_name)
        group = state.groups.get(group_name) if state else None
        if group is not None and message_id.isdigit():
            group.pending.pop(int(message_id), None)

    # -- the backend interface ---------------------------------------------------------

    async def ensure_group(
        self,
        stream: str,
        group: str,
        *,
        start: StartPosition = "earliest",
        claim_idle: float | None = None,
        max_deliveries: int | None = None,
        consumer: str | None = None,
    ) -> None:
        self._check_open()
        # a (re)starting consumer re-reads its own pending entries on its next read
        self._started = {
            k
            for k in self._started
            if k[:2] != (stream, group) or (consumer is not None and k[2] != consumer)
        }
        state = self.broker.stream(stream)
        if group not in state.groups:
            state.groups[group] = _Group(last_seq=0 if start == "earliest" else state.last_seq)

    async def publish(self, stream: str, data: dict[str, Any]) -> str:
        return (await self.publish_many(stream, [data]))[0]

    async def publish_many(self, stream: str, items: Sequence[dict[str, Any]]) -> list[str]:
        self._check_open()
        payloads = [encode_json(item) for item in items]  # validate all before storing any
        state = self.broker.stream(stream)
        now = self.broker.clock.time()
        ids: list[str] = []
        for payload in payloads:
            state.last_seq += 1
            seq = state.last_seq
            state.seqs.append(seq)
            state.entries[seq] = _Entry(seq, payload, now)
            ids.append(str(seq))
        self._trim(state)
        state.wake()
        return ids

    def _read_own_pending(
        self, stream: str, group: str, consumer: str, count: int
    ) -> list[Message] | None:
        key = (stream, group, consumer)
        cursor = self._recovering.get(key)
        if cursor is None:
            return None
        state, grp = self._group(stream, group)
        now = self.broker.clock.monotonic()
        out: list[Message] = []
        for seq in sorted(
            s for s, p in grp.pending.items() if p.consumer == consumer and s > cursor
        ):
            entry = state.entries.get(seq)
            cursor = seq
            if entry is None:
                self._drop_trimmed(stream, group, grp, seq)
                continue
            pending = grp.pending[seq]
            pending.count += 1
            pending.delivered_at = now
            out.append(self._message(stream, entry, pending.count))
            if len(out) >= count:
                break
        if out:
            self._recovering[key] = cursor
            return out
        del self._recovering[key]
        return None

    def _read_new(self, stream: str, group: str, consumer: str, count: int) -> list[Message]:
        state, grp = self._group(stream, group)
        start = bisect.bisect_right(state.seqs, grp.last_seq)
        seqs = state.seqs[start : start + count]
        if not seqs:
            return []
        now = self.broker.clock.monotonic()
        out = []
        for seq in seqs:
            grp.pending[seq] = _Pending(consumer, now, 1)
            out.append(self._message(stream, state.entries[seq], 1))
        grp.last_seq = seqs[-1]
        return out

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None
    ) -> list[Message]:
        self._check_open()
        key = (stream, group, consumer)
        state, grp = self._group(stream, group)
        grp.consumers[consumer] = self.broker.clock.monotonic()
        if key not in self._started:
            self._started.add(key)
            self._recovering[key] = 0
        own = self._read_own_pending(stream, group, consumer, count)
        if own:
            return own
        messages = self._read_new(stream, group, consumer, count)
        if messages or not block:
            return messages
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, block)
        except asyncio.TimeoutError:
            return []
        finally:
            if waiter in state.waiters:
                state.waiters.remove(waiter)
        self._check_open()
        return self._read_new(stream, group, consumer, count)

    async def ack(self, stream: str, group: str, messages: Sequence[Message]) -> None:
        self._check_open()
        state = self.broker.streams.get(stream)
        grp = state.groups.get(group) if state else None
        if grp is None:
            return
        for message in messages:
            if message.id.isdigit():
                grp.pending.pop(int(message.id), None)

    def _take(self, stream: str, group: str, consumer: str, seqs: Sequence[int]) -> list[Message]:
        state, grp = self._group(stream, group)
        now = self.broker.clock.monotonic()
        out = []
        for seq in seqs:
            pending = grp.pending.get(seq)
            if pending is None:
                continue
            entry = state.entries.get(seq)
            if entry is None:
                self._drop_trimmed(stream, group, grp, seq)
                continue
            pending.consumer = consumer
            pending.delivered_at = now
            pending.count += 1
            out.append(self._message(stream, entry, pending.count))
        return out

    async def redeliver(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> list[Message]:
        self._check_open()
        return self._take(stream, group, consumer, [int(m.id) for m in messages if m.id.isdigit()])

    async def nack(self, stream: str, group: str, message: Message, *, delay: float) -> None:
        raise NotImplementedError("memory:// redelivers through redeliver() (redelivery='engine')")

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Message]:
        self._check_open()
        _, grp = self._group(stream, group)
        now = self.broker.clock.monotonic()
        stale = [s for s, p in grp.pending.items() if now - p.delivered_at >= min_idle]
        stale.sort()
        return self._take(stream, group, consumer, stale[:count])

    async def heartbeat(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> None:
        self._check_open()
        _, grp = self._group(stream, group)
        now = self.broker.clock.monotonic()
        grp.consumers[consumer] = now
        for message in messages:
            pending = grp.pending.get(int(message.id)) if message.id.isdigit() else None
            if pending is not None and pending.consumer == consumer:
                pending.delivered_at = now

    async def dead_letter(
        self,
        stream: str,
        group: str,
        message: Message,
        *,
        dead_letter_stream: str,
        record: dict[str, Any],
    ) -> str:
        self._check_open()
        payload = encode_json(record)
        _, grp = self._group(stream, group)
        # no await between the write and the ack: atomic for every other task
        dead = self.broker.stream(dead_letter_stream)
        dead.last_seq += 1
        seq = dead.last_seq
        dead.seqs.append(seq)
        dead.entries[seq] = _Entry(seq, payload, self.broker.clock.time())
        if message.id.isdigit():
            grp.pending.pop(int(message.id), None)
        dead.wake()
        return str(seq)

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        self._check_open()
        state, grp = self._group(stream, group)
        now = self.broker.clock.monotonic()
        lag = len(state.seqs) - bisect.bisect_right(state.seqs, grp.last_seq)
        per_consumer: dict[str, int] = dict.fromkeys(grp.consumers, 0)
        for pending in grp.pending.values():
            per_consumer[pending.consumer] = per_consumer.get(pending.consumer, 0) + 1
        consumers = tuple(
            ConsumerInfo(name, n, max(0.0, now - grp.consumers.get(name, now)))
            for name, n in sorted(per_consumer.items())
        )
        return GroupInfo(stream, group, len(grp.pending), lag, len(state.seqs), consumers)

    async def peek(self, stream: str, *, count: int) -> list[Message]:
        self._check_open()
        state = self.broker.streams.get(stream)
        if state is None:
            return []
        return [self._message(stream, state.entries[s], 0) for s in state.seqs[-count:]]

    # -- memory-only conveniences for tests ------------------------------------------

    async def delete_stream(self, stream: str) -> None:
        """Delete a stream with its groups (like Redis ``DEL``)."""
        self._check_open()
        state = self.broker.streams.pop(stream, None)
        if state is not None:
            state.wake()

    async def publish_raw(self, stream: str, text: str) -> str:
        """Append `text` unvalidated, as a foreign producer could (tests of bad input)."""
        self._check_open()
        state = self.broker.stream(stream)
        state.last_seq += 1
        state.seqs.append(state.last_seq)
        state.entries[state.last_seq] = _Entry(state.last_seq, text, self.broker.clock.time())
        state.wake()
        return str(state.last_seq)

    async def delete_entries(self, stream: str, ids: Sequence[str]) -> None:
        """Delete entries (like Redis ``XDEL``); pending references stay dangling."""
        self._check_open()
        state = self.broker.streams.get(stream)
        if state is None:
            return
        for raw in ids:
            seq = int(raw)
            if state.entries.pop(seq, None) is not None:
                state.seqs.remove(seq)


async def open_backend(url: str, options: dict[str, Any]) -> MemoryBackend:
    """Entry point for ``memory://name``."""
    return MemoryBackend(MemorySettings.from_url(url, options))
