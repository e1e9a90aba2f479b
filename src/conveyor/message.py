"""The message a handler receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Message"]


@dataclass(slots=True)
class Message:
    """One delivery of one stream entry.

    Attributes:
        id: Backend-issued, opaque identifier (Redis entry id, JetStream sequence, Kafka
            ``topic/partition/offset``). Only ever compared for equality.
        stream: The conveyor stream name the entry was read from.
        data: The decoded payload.
        delivery_count: How many times this entry has been delivered to the group,
            this delivery included (1 on first delivery).
        published_at: Broker timestamp of the entry in seconds since the epoch, when the
            backend knows it.
        decode_error: Set instead of `data` when the stored entry could not be decoded; the
            engine dead-letters such messages at once.
        raw: The undecoded entry, kept for dead letters of undecodable messages.
        handle: Backend-private delivery handle (e.g. a JetStream message); not part of
            equality or repr.
        headers: The message's headers (str → str), as published; empty when none.
            They survive retries, claims and dead letters.
    """

    id: str
    stream: str
    data: dict[str, Any]
    delivery_count: int = 1
    published_at: float | None = None
    decode_error: str | None = None
    raw: Any = field(default=None, repr=False, compare=False)
    handle: Any = field(default=None, repr=False, compare=False)
    headers: dict[str, str] = field(default_factory=dict)
