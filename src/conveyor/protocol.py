"""The storage seam: the seed's three-method protocol and the richer backend interface.

`StreamStorageProtocol` is the original contract and stays exactly as it was: any object
with these three methods drives a `StreamProcessor`. `StreamBackend` is what a backend
package implements on top of it; the engine uses it when a storage offers it (see
`is_backend`) and falls back to the three seed methods otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

from conveyor.message import Message

__all__ = [
    "Capabilities",
    "ConsumerInfo",
    "GroupInfo",
    "StartPosition",
    "StreamBackend",
    "StreamStorageProtocol",
    "is_backend",
]

StartPosition = Literal["earliest", "latest"]


@runtime_checkable
class StreamStorageProtocol(Protocol):
    """The seed contract: create a group, read a batch, acknowledge one entry."""

    async def create_group(self, stream_name: str, group_name: str) -> None:
        """Create `group_name` on `stream_name` (and the stream if needed).

        Idempotent: an existing group is success. A new group starts at the beginning of
        the stream.
        """

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Return up to `count` entries not yet delivered to the group, as `(id, payload)`.

        An empty list means nothing is available right now.
        """

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        """Acknowledge one entry. Acknowledging an unknown or already-acked id is a no-op."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, and where it differs. The conformance suite reads it.

    Attributes:
        name: Human-readable backend name.
        redelivery: ``"engine"``: after a failure the engine waits the retry delay, then
            asks the backend to `redeliver` (Redis, memory, Kafka). ``"broker"``: the
            engine calls `nack(delay)` and the broker redelivers through `read` (JetStream).
        claim: ``"engine"``: the engine calls `claim_stale` to take messages from stopped
            consumers. ``"broker"``: the broker reassigns them itself (JetStream ack_wait,
            Kafka rebalance); `claim_stale` returns nothing. ``"none"``: nobody claims.
        exact_delivery_count: False where counts are emulated (Kafka: a count restarts at
            1 when a partition moves to another member).
        ordering: ``"stream"``, ``"partition"`` or ``"none"``: the unit within which one
            consumer with concurrency 1 sees entries in publish order.
        ack_from_reader: True where acks must travel on the connection that read the
            message (JetStream); the engine always acks through the same backend object.
        contiguous_ack: True where only a contiguous prefix can be committed (Kafka).
        durable: False where data does not outlive the process (memory).
        blocking_read: False where `read` cannot wait for new entries; the engine then
            sleeps `poll_interval` between empty reads.
        claim_granularity: Seconds of resolution of idle-time checks on the broker.
    """

    name: str
    redelivery: Literal["engine", "broker"] = "engine"
    claim: Literal["engine", "broker", "none"] = "engine"
    exact_delivery_count: bool = True
    ordering: Literal["stream", "partition", "none"] = "stream"
    ack_from_reader: bool = False
    contiguous_ack: bool = False
    durable: bool = True
    blocking_read: bool = True
    claim_granularity: float = 0.0


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """One consumer of a group: its pending count and idle time in seconds."""

    name: str
    pending: int
    idle: float


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """Inspection of one group on one stream.

    Attributes:
        stream: Stream name.
        group: Group name.
        pending: Entries delivered but not acknowledged.
        lag: Entries not yet delivered to the group, or None where the broker cannot say.
        length: Entries in the stream, or None where unknown.
        consumers: Per-consumer pending counts, where the broker tracks them.
    """

    stream: str
    group: str
    pending: int
    lag: int | None
    length: int | None = None
    consumers: tuple[ConsumerInfo, ...] = field(default_factory=tuple)


@runtime_checkable
class StreamBackend(StreamStorageProtocol, Protocol):
    """The full backend interface. A backend package's object returned by `connect()`.

    All stream, group and consumer names are conveyor names; each backend maps them onto
    its broker (valid characters, key prefixes) itself.
    """

    capabilities: Capabilities

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
        """Create the group (and stream) if missing; an existing group is success.

        It also re-arms the own-pending re-read (see `read`) of `consumer` on this backend
        object (of every consumer of the group when None): the engine calls it with its
        consumer name whenever a processor starts, so a restarted consumer re-reads its
        own pending entries without disturbing other consumers sharing the backend.
        `claim_idle` and `max_deliveries` are hints for brokers that enforce them
        themselves (JetStream's ack_wait and max_deliver); others ignore them.
        """

    async def publish(self, stream: str, data: dict[str, Any]) -> str:
        """Append one payload and return its id once the broker has stored it."""

    async def publish_many(self, stream: str, items: Sequence[dict[str, Any]]) -> list[str]:
        """Append payloads in one round trip where the broker allows; ids in order."""

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None
    ) -> list[Message]:
        """Return up to `count` messages for `consumer`.

        The first reads after the consumer (re)starts return its own pending entries;
        then entries never delivered to the group. Waits up to `block` seconds for one
        to arrive (None: do not wait). Empty list: nothing arrived.
        """

    async def ack(self, stream: str, group: str, messages: Sequence[Message]) -> None:
        """Acknowledge messages in as few round trips as possible. Unknown ids: no-op."""

    async def redeliver(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> list[Message]:
        """Deliver failed messages again to `consumer`, with delivery counts + 1.

        Used when ``capabilities.redelivery == "engine"``. Entries that no longer exist
        (trimmed, deleted, already acked) are left out of the result.
        """

    async def nack(self, stream: str, group: str, message: Message, *, delay: float) -> None:
        """Ask the broker to deliver `message` again no sooner than `delay` seconds.

        Used when ``capabilities.redelivery == "broker"``.
        """

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Message]:
        """Take up to `count` pending messages idle for `min_idle` seconds from any consumer.

        Delivery counts go up by one. Used when ``capabilities.claim == "engine"``.
        """

    async def heartbeat(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> None:
        """Mark messages held by a live consumer as busy so nobody claims them.

        Does not change their delivery counts.
        """

    async def dead_letter(
        self,
        stream: str,
        group: str,
        message: Message,
        *,
        dead_letter_stream: str,
        record: dict[str, Any],
    ) -> str:
        """Write `record` to `dead_letter_stream` and acknowledge `message`, atomically
        where the broker allows (never losing the message between the two steps).
        Returns the dead-letter entry id."""

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        """Pending count, lag and consumers of a group."""

    async def peek(self, stream: str, *, count: int) -> list[Message]:
        """Return up to the last `count` entries of `stream`, oldest first, outside any group."""

    async def aclose(self) -> None:
        """Flush outstanding acks and close connections. Idempotent."""

    async def __aenter__(self) -> StreamBackend: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def is_backend(storage: object) -> bool:
    """True when `storage` implements the full `StreamBackend` interface."""
    return isinstance(storage, StreamBackend)
