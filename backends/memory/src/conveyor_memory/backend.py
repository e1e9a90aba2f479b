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
from typing import Any

from conveyor.base import BaseBackend, BaseSession, ConsumerOptions, check_sizes
from conveyor.clock import Clock, SystemClock
from conveyor.codec import decode_json, encode_json
from conveyor.discovery import StreamInfo
from conveyor.errors import ConfigurationError, DecodeError, GroupNotFoundError
from conveyor.message import Message
from conveyor.options import parse_url_options
from conveyor.protocol import Capabilities, ConsumerInfo, GroupInfo

__all__ = [
    "CAPABILITIES",
    "MemoryBackend",
    "MemoryBroker",
    "MemorySession",
    "MemorySettings",
    "open_backend",
    "reset",
]

log = logging.getLogger("conveyor.memory")

CAPABILITIES = Capabilities(name="memory", redelivery="engine", claim="engine")


@dataclass(frozen=True)
class MemorySettings:
    """Options of ``memory://name``.

    Attributes:
        name: The broker name (the URL's host part); backends with the same name share
            state within the process. Empty: ``"default"``.
        maxlen: Keep at most this many entries per stream (oldest trimmed first, like
            Redis ``MAXLEN``); None keeps everything.
        max_age: Seconds an entry is kept: older entries are trimmed when the stream is
            next published to (by the backend's clock); None keeps them forever.
        max_message_bytes: Largest message (JSON payload and headers, UTF-8) accepted;
            a larger publish raises `PayloadTooLargeError`. Default 1 MiB, NATS's
            default ``max_payload``, so tests on memory refuse what it would.
        clock: A `conveyor.clock.Clock` for idle times and timestamps (keyword only;
            tests pass `conveyor.testing.FakeClock`).
    """

    name: str = "default"
    maxlen: int | None = None
    max_age: float | None = None
    max_message_bytes: int = 1_048_576
    clock: Clock | None = None

    @classmethod
    def from_url(cls, url: str, options: dict[str, Any]) -> MemorySettings:
        name = url.split("://", 1)[1].strip("/") or "default"
        kwargs = parse_url_options("memory", cls, options, exclude=("name",))
        settings = cls(name=name, **kwargs)
        if settings.maxlen is not None and settings.maxlen < 1:
            raise ConfigurationError(f"memory:// option maxlen={settings.maxlen}: must be >= 1")
        if settings.max_age is not None and not settings.max_age > 0:
            raise ConfigurationError(f"memory:// option max_age={settings.max_age}: must be > 0")
        if settings.max_message_bytes < 1:
            raise ConfigurationError(
                f"memory:// option max_message_bytes={settings.max_message_bytes}: must be >= 1"
            )
        return settings


@dataclass(slots=True)
class _Entry:
    seq: int
    payload: str  # JSON text: every read decodes a fresh copy
    published_at: float
    headers: dict[str, str] | None = None


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


def _message(stream: str, entry: _Entry, count: int) -> Message:
    headers = dict(entry.headers) if entry.headers else {}
    try:
        data = decode_json(entry.payload)
    except DecodeError as exc:
        return Message(
            str(entry.seq), stream, {}, count, entry.published_at, str(exc), entry.payload,
            headers=headers,
        )  # fmt: skip
    return Message(str(entry.seq), stream, data, count, entry.published_at, headers=headers)


def _seq(message_id: str) -> int | None:
    return int(message_id) if message_id.isdigit() else None


class MemoryBackend(BaseBackend):
    """``memory://`` backend: real consumer-group semantics inside the process."""

    capabilities = CAPABILITIES

    def __init__(self, settings: MemorySettings | None = None) -> None:
        super().__init__()
        self.settings = settings or MemorySettings()
        self.broker = _broker(self.settings.name, self.settings.clock)

    def __repr__(self) -> str:
        return f"MemoryBackend(name={self.settings.name!r})"

    async def _close(self) -> None:
        for stream in self.broker.streams.values():
            stream.wake()

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        state = self.broker.streams.get(stream)
        found = state.groups.get(group) if state is not None else None
        if state is None or found is None:
            raise GroupNotFoundError(f"no group {group!r} on stream {stream!r}")
        return state, found

    def _append(self, stream: str, payload: str, headers: dict[str, str] | None) -> str:
        state = self.broker.stream(stream)
        state.last_seq += 1
        seq = state.last_seq
        state.seqs.append(seq)
        state.entries[seq] = _Entry(seq, payload, self.broker.clock.time(), headers or None)
        return str(seq)

    def _check_sizes(
        self, stream: str, payloads: list[str], headers: list[dict[str, str]] | None
    ) -> None:
        def size(index: int, payload: str) -> int:
            extra = headers[index] if headers else {}
            return len(payload.encode()) + sum(len(k) + len(v.encode()) for k, v in extra.items())

        sizes = (size(i, p) for i, p in enumerate(payloads))
        check_sizes(stream, sizes, self.settings.max_message_bytes, "max_message_bytes")

    def _trim(self, state: _Stream) -> None:
        """Apply `maxlen` and `max_age` (pending entries trimmed away are acknowledged
        when a consumer meets them, as on Redis)."""
        maxlen, max_age = self.settings.maxlen, self.settings.max_age
        cut = 0 if maxlen is None else max(0, len(state.seqs) - maxlen)
        if max_age is not None:
            oldest = self.broker.clock.time() - max_age
            while cut < len(state.seqs) and state.entries[state.seqs[cut]].published_at < oldest:
                cut += 1
        if not cut:
            return
        for seq in state.seqs[:cut]:
            del state.entries[seq]
        del state.seqs[:cut]

    # -- the backend interface ---------------------------------------------------------

    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> MemorySession:
        state = self.broker.stream(stream)
        if group not in state.groups:
            start = 0 if options.start == "earliest" else state.last_seq
            state.groups[group] = _Group(last_seq=start)
        return MemorySession(self, stream, group, consumer)

    async def _publish_many(
        self, stream: str, items: list[dict[str, Any]], headers: list[dict[str, str]] | None
    ) -> list[str]:
        payloads = [encode_json(item) for item in items]  # validate all before storing any
        self._check_sizes(stream, payloads, headers)
        ids = [
            self._append(stream, payload, headers[i] if headers else None)
            for i, payload in enumerate(payloads)
        ]
        state = self.broker.stream(stream)
        self._trim(state)
        state.wake()
        return ids

    async def _group_info(self, stream: str, group: str) -> GroupInfo:
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

    async def _peek(self, stream: str, count: int) -> list[Message]:
        state = self.broker.streams.get(stream)
        if state is None:
            return []
        return [_message(stream, state.entries[s], 0) for s in state.seqs[-count:]]

    async def _range(self, stream: str, after: str | None, count: int) -> list[Message]:
        state = self.broker.streams.get(stream)
        if state is None:
            return []
        cursor = 0 if after is None else _seq(after)
        if cursor is None:
            raise ConfigurationError(f"{after!r} is not an entry id of {stream!r}")
        start = bisect.bisect_right(state.seqs, cursor)
        return [_message(stream, state.entries[s], 0) for s in state.seqs[start : start + count]]

    async def _streams(self) -> list[StreamInfo]:
        """Every stream a publish or a group created, empty ones included."""
        return [
            StreamInfo(
                name,
                len(state.seqs),
                tuple(sorted(state.groups)),
                state.entries[state.seqs[0]].published_at if state.seqs else None,
            )
            for name, state in self.broker.streams.items()
        ]

    async def _groups(self, stream: str) -> list[str]:
        state = self.broker.streams.get(stream)
        return [] if state is None else list(state.groups)

    async def _delete(self, stream: str, ids: list[str]) -> int:
        state = self.broker.streams.get(stream)
        if state is None:
            return 0
        deleted = 0
        for seq in (_seq(i) for i in ids):
            if seq is not None and state.entries.pop(seq, None) is not None:
                state.seqs.remove(seq)
                for group in state.groups.values():
                    group.pending.pop(seq, None)
                deleted += 1
        return deleted

    async def _ack_by_id(self, stream: str, group: str, message_id: str) -> None:
        state = self.broker.streams.get(stream)
        grp = state.groups.get(group) if state is not None else None
        seq = _seq(message_id)
        if grp is not None and seq is not None:
            grp.pending.pop(seq, None)

    async def _delete_stream(self, stream: str) -> bool:
        """Drop a stream with its groups (like Redis ``DEL``); blocked readers wake up."""
        state = self.broker.streams.pop(stream, None)
        if state is not None:
            state.wake()
        return state is not None

    # -- memory-only conveniences for tests ------------------------------------------

    async def publish_raw(self, stream: str, text: str) -> str:
        """Append `text` unvalidated, as a foreign producer could (tests of bad input)."""
        self._check_open()
        entry_id = self._append(stream, text, None)
        self.broker.stream(stream).wake()
        return entry_id

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


class MemorySession(BaseSession):
    """One consumer of a memory group. A new session re-reads the consumer's own pending
    entries first (like Redis ``XREADGROUP ... 0``)."""

    backend: MemoryBackend

    def __init__(self, backend: MemoryBackend, stream: str, group: str, consumer: str) -> None:
        super().__init__(backend, stream, group, consumer)
        self._broker = backend.broker
        self._cursor: int | None = 0  # own pending entries re-read up to here; None: done
        self._waiter: asyncio.Future[None] | None = None

    async def _close(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # a blocked read returns

    def _state(self) -> tuple[_Stream, _Group]:
        self._check_open()
        return self.backend._group(self.stream, self.group)

    def _drop_trimmed(self, group: _Group, seq: int) -> None:
        group.pending.pop(seq, None)
        log.warning(
            "entry %s of stream %r was trimmed while pending in group %r: acknowledged",
            seq,
            self.stream,
            self.group,
        )

    def _read_own(self, state: _Stream, group: _Group, count: int) -> list[Message]:
        cursor = self._cursor or 0
        now = self._broker.clock.monotonic()
        out: list[Message] = []
        mine = sorted(
            s for s, p in group.pending.items() if p.consumer == self.consumer and s > cursor
        )
        for seq in mine:
            cursor = seq
            entry = state.entries.get(seq)
            if entry is None:
                self._drop_trimmed(group, seq)
                continue
            pending = group.pending[seq]
            pending.count += 1
            pending.delivered_at = now
            out.append(_message(self.stream, entry, pending.count))
            if len(out) >= count:
                break
        self._cursor = cursor if out else None
        return out

    def _read_new(self, state: _Stream, group: _Group, count: int) -> list[Message]:
        start = bisect.bisect_right(state.seqs, group.last_seq)
        seqs = state.seqs[start : start + count]
        if not seqs:
            return []
        now = self._broker.clock.monotonic()
        out = []
        for seq in seqs:
            group.pending[seq] = _Pending(self.consumer, now, 1)
            out.append(_message(self.stream, state.entries[seq], 1))
        group.last_seq = seqs[-1]
        return out

    async def read(self, *, count: int, block: float | None) -> list[Message]:
        state, group = self._state()
        group.consumers[self.consumer] = self._broker.clock.monotonic()
        if self._cursor is not None:
            own = self._read_own(state, group, count)
            if own:
                return own
        messages = self._read_new(state, group, count)
        if messages or not block:
            return messages
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        state.waiters.append(waiter)
        self._waiter = waiter
        # a timer, not asyncio.wait_for: on Python 3.11 wait_for returns instead of raising
        # when it is cancelled just as the waiter is resolved (a stopping reader went on)
        timer = loop.call_later(block, _time_up, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
            if waiter in state.waiters:
                state.waiters.remove(waiter)
        state, group = self._state()  # woken by a publish, the timer or a close
        return self._read_new(state, group, count)

    async def ack(self, messages: Sequence[Message]) -> None:
        self._check_open()
        state = self._broker.streams.get(self.stream)
        group = state.groups.get(self.group) if state else None
        if group is None:
            return
        for message in messages:
            seq = _seq(message.id)
            if seq is not None:
                group.pending.pop(seq, None)

    def _take(self, seqs: Sequence[int]) -> list[Message]:
        state, group = self._state()
        now = self._broker.clock.monotonic()
        out = []
        for seq in seqs:
            pending = group.pending.get(seq)
            if pending is None:
                continue
            entry = state.entries.get(seq)
            if entry is None:
                self._drop_trimmed(group, seq)
                continue
            pending.consumer = self.consumer
            pending.delivered_at = now
            pending.count += 1
            out.append(_message(self.stream, entry, pending.count))
        return out

    async def redeliver(self, messages: Sequence[Message]) -> list[Message]:
        return self._take([s for s in (_seq(m.id) for m in messages) if s is not None])

    async def claim_stale(self, *, min_idle: float, count: int) -> list[Message]:
        _, group = self._state()
        now = self._broker.clock.monotonic()
        stale = sorted(s for s, p in group.pending.items() if now - p.delivered_at >= min_idle)
        return self._take(stale[:count])

    async def heartbeat(self, messages: Sequence[Message]) -> None:
        _, group = self._state()
        now = self._broker.clock.monotonic()
        group.consumers[self.consumer] = now
        for message in messages:
            seq = _seq(message.id)
            pending = group.pending.get(seq) if seq is not None else None
            if pending is not None and pending.consumer == self.consumer:
                pending.delivered_at = now

    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str:
        payload = encode_json(record)
        self.backend._check_sizes(dead_letter_stream, [payload], [message.headers])
        _, group = self._state()
        # no await between the write and the ack: atomic for every other task
        dead_id = self.backend._append(dead_letter_stream, payload, message.headers or None)
        seq = _seq(message.id)
        if seq is not None:
            group.pending.pop(seq, None)
        self._broker.stream(dead_letter_stream).wake()
        return dead_id


async def open_backend(url: str, options: dict[str, Any]) -> MemoryBackend:
    """Entry point for ``memory://name``."""
    return MemoryBackend(MemorySettings.from_url(url, options))


def _time_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
