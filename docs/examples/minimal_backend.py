"""A complete conveyor backend in one small file: streams kept in a Python dict.

It passes the whole conformance suite (tests/core/test_writing_a_backend.py runs it).
A real backend talks to a broker where this one touches dicts; the shape is the same.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor import Capabilities, GroupInfo, Message
from conveyor.base import BaseBackend, BaseSession, ConsumerOptions, check_sizes
from conveyor.codec import decode_json, encode_json
from conveyor.errors import GroupNotFoundError

MAX_BYTES = 1 << 20  # the largest message this "broker" stores


@dataclass
class Entry:
    payload: str  # JSON text: a fresh copy on every read
    headers: dict[str, str]


@dataclass
class Pending:
    consumer: str
    count: int
    since: float  # time.monotonic() of the last delivery or heartbeat


@dataclass
class Stream:
    entries: list[Entry] = field(default_factory=list)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class DictBackend(BaseBackend):
    """``BaseBackend`` gives lifecycle, validation, `publish` and the seed methods."""

    capabilities = Capabilities(name="dict", redelivery="engine", claim="engine")

    def __init__(self, streams: dict[str, Stream] | None = None) -> None:
        super().__init__()
        self.store = {} if streams is None else streams  # share it to share "the broker"

    def stream(self, name: str) -> Stream:
        return self.store.setdefault(name, Stream())

    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> DictSession:
        state = self.stream(stream)
        start = 0 if options.start == "earliest" else len(state.entries)
        state.groups.setdefault(group, {"next": start, "pending": {}})
        return DictSession(self, stream, group, consumer)

    async def _publish_many(
        self, stream: str, items: list[dict[str, Any]], headers: list[dict[str, str]] | None
    ) -> list[str]:
        payloads = [encode_json(item) for item in items]  # validates all before storing
        check_sizes(stream, (len(p.encode()) for p in payloads), MAX_BYTES, "MAX_BYTES")
        state = self.stream(stream)
        first = len(state.entries)
        for index, payload in enumerate(payloads):
            state.entries.append(Entry(payload, headers[index] if headers else {}))
        state.arrived.set()
        return [str(first + i) for i in range(len(payloads))]

    async def _group_info(self, stream: str, group: str) -> GroupInfo:
        state = self.store.get(stream)
        if state is None or group not in state.groups:
            raise GroupNotFoundError(f"no group {group!r} on {stream!r}")
        info = state.groups[group]
        lag = len(state.entries) - info["next"]
        return GroupInfo(stream, group, len(info["pending"]), lag, len(state.entries))

    async def _peek(self, stream: str, count: int) -> list[Message]:
        entries = self.store[stream].entries if stream in self.store else []
        first = max(0, len(entries) - count)
        return [message(stream, i, entries[i], 0) for i in range(first, len(entries))]


def message(stream: str, index: int, entry: Entry, count: int) -> Message:
    data = decode_json(entry.payload)
    return Message(str(index), stream, data, count, headers=dict(entry.headers))


class DictSession(BaseSession):
    """One consumer: ``BaseSession`` gives ``async with``, `aclose` and closed checks."""

    backend: DictBackend

    def __init__(self, backend: DictBackend, stream: str, group: str, consumer: str) -> None:
        super().__init__(backend, stream, group, consumer)
        self.own_pending_first = True  # a new session re-reads its consumer's pending

    def state(self) -> tuple[Stream, dict[str, Any]]:
        self._check_open()
        state = self.backend.store.get(self.stream)
        if state is None or self.group not in state.groups:
            raise GroupNotFoundError(f"no group {self.group!r} on {self.stream!r}")
        return state, state.groups[self.group]

    def deliver(self, indexes: Sequence[int]) -> list[Message]:
        state, info = self.state()
        out = []
        for index in indexes:
            pending = info["pending"].setdefault(index, Pending(self.consumer, 0, 0.0))
            pending.consumer, pending.since = self.consumer, time.monotonic()
            pending.count += 1
            out.append(message(self.stream, index, state.entries[index], pending.count))
        return out

    async def read(self, *, count: int, block: float | None) -> list[Message]:
        state, info = self.state()
        if self.own_pending_first:
            self.own_pending_first = False
            mine = sorted(i for i, p in info["pending"].items() if p.consumer == self.consumer)
            if mine:
                return self.deliver(mine[:count])
        if info["next"] >= len(state.entries) and block:
            state.arrived.clear()
            try:
                await asyncio.wait_for(state.arrived.wait(), block)
            except asyncio.TimeoutError:
                return []
            state, info = self.state()
        indexes = list(range(info["next"], min(len(state.entries), info["next"] + count)))
        info["next"] += len(indexes)
        return self.deliver(indexes)

    async def ack(self, messages: Sequence[Message]) -> None:
        self._check_open()
        state = self.backend.store.get(self.stream)
        if state is not None and self.group in state.groups:
            for msg in messages:
                state.groups[self.group]["pending"].pop(int(msg.id), None)

    async def redeliver(self, messages: Sequence[Message]) -> list[Message]:
        _, info = self.state()
        return self.deliver([int(m.id) for m in messages if int(m.id) in info["pending"]])

    async def claim_stale(self, *, min_idle: float, count: int) -> list[Message]:
        _, info = self.state()
        now = time.monotonic()
        stale = sorted(i for i, p in info["pending"].items() if now - p.since >= min_idle)
        return self.deliver(stale[:count])

    async def heartbeat(self, messages: Sequence[Message]) -> None:
        _, info = self.state()
        for msg in messages:
            pending = info["pending"].get(int(msg.id))
            if pending is not None and pending.consumer == self.consumer:
                pending.since = time.monotonic()

    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str:
        self._check_open()
        # no await between the write and the ack: nothing can come between them
        dead = self.backend.stream(dead_letter_stream)
        dead.entries.append(Entry(encode_json(record), dict(message.headers)))
        dead.arrived.set()
        _, info = self.state()
        info["pending"].pop(int(message.id), None)
        return str(len(dead.entries) - 1)

    async def _close(self) -> None:
        state = self.backend.store.get(self.stream)
        if state is not None:
            state.arrived.set()  # a blocked read returns (and finds the session closed)
