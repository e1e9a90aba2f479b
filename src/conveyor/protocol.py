"""The storage seam: the seed's three-method protocol, the backend and its consumer sessions.

* `StreamStorageProtocol` is the original contract and stays exactly as it was: any object
  with these three methods drives a `StreamProcessor`.
* `StreamBackend` is what ``conveyor.connect()`` returns: publishing, inspection, and
  `open_consumer`, which gives one consumer of one group its `ConsumerSession`.
* `ConsumerSession` is everything the engine does as that consumer: read, acknowledge,
  redeliver or nack, heartbeat, claim, dead-letter. Closing it releases what the broker
  ties to a member (Kafka leaves the group, NATS stops its puller) and never acknowledges
  anything.

`conveyor.base.BaseBackend` and `BaseSession` implement the lifecycle once; a backend may
use them or implement these Protocols itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from conveyor.message import Message
from conveyor.typed import Payload

if TYPE_CHECKING:
    from conveyor.opening import Opening

__all__ = [
    "Capabilities",
    "ConsumerInfo",
    "ConsumerSession",
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
    """What changes the engine's behaviour on a backend.

    Descriptive differences that only tests need (ordering unit, exact delivery counts,
    durability...) live in `conveyor.testing.Features`; the backend pages document them.

    Attributes:
        name: Backend name, for logs.
        redelivery: ``"engine"``: after a failure the engine waits the retry delay, then
            calls the session's `redeliver` (Redis, memory, Kafka). ``"broker"``: the
            engine calls `nack(delay)` and the broker redelivers through `read` (JetStream).
        claim: ``"engine"``: the engine calls `claim_stale` to take messages from stopped
            consumers. ``"broker"``: the broker reassigns them itself (JetStream ack_wait,
            Kafka rebalance). ``"none"``: nobody claims.
        blocking_read: False where `read` cannot wait for new entries; the engine then
            sleeps `poll_interval` between empty reads.
    """

    name: str
    redelivery: Literal["engine", "broker"] = "engine"
    claim: Literal["engine", "broker", "none"] = "engine"
    blocking_read: bool = True


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
class ConsumerSession(Protocol):
    """One consumer of one group on one stream, as opened by `StreamBackend.open_consumer`.

    A session is used by one engine (one `StreamProcessor`); its methods may be called
    concurrently from that engine's tasks. After `aclose()` (or the backend's) every
    method raises `BackendClosedError`.
    """

    stream: str
    group: str
    consumer: str

    async def read(self, *, count: int, block: float | None) -> list[Message]:
        """Return up to `count` messages for this consumer.

        Where the broker keeps pending entries per consumer (Redis, memory), a new
        session first returns this consumer's own pending entries (left by an earlier life
        of the same consumer name); elsewhere they come back through the broker (after
        JetStream's ack wait, from Kafka's committed offsets). Then entries never
        delivered to the group. Waits up to `block` seconds for one to arrive (None or 0:
        do not wait). Empty list: nothing arrived.

        Raises:
            GroupNotFoundError: the group or its stream was deleted (open a new session
                to recreate it).
            BrokerUnavailableError: the broker cannot be reached; nothing delivered is
                lost.
        """

    async def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge messages in as few round trips as possible. Unknown ids: no-op."""

    async def redeliver(self, messages: Sequence[Message]) -> list[Message]:
        """Deliver failed messages again to this consumer, with delivery counts + 1.

        Used when ``capabilities.redelivery == "engine"``. Entries that no longer exist
        (trimmed, deleted, already acked) are left out of the result.
        """

    async def nack(self, message: Message, *, delay: float) -> None:
        """Ask the broker to deliver `message` again no sooner than `delay` seconds.

        Used when ``capabilities.redelivery == "broker"``.
        """

    async def claim_stale(self, *, min_idle: float, count: int) -> list[Message]:
        """Take up to `count` pending messages idle for `min_idle` seconds from any consumer.

        Delivery counts go up by one. Used when ``capabilities.claim == "engine"``;
        otherwise returns ``[]``.
        """

    async def heartbeat(self, messages: Sequence[Message]) -> None:
        """Mark messages held by this live consumer as busy so nobody claims them.

        Does not change their delivery counts.
        """

    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str:
        """Write `record` (with `message`'s headers) to `dead_letter_stream` and
        acknowledge `message`, atomically where the broker allows and never losing the
        message between the two steps. Returns the dead-letter entry id."""

    async def aclose(self) -> None:
        """Release the membership (never acknowledging anything). Idempotent."""

    async def __aenter__(self) -> ConsumerSession: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class StreamBackend(StreamStorageProtocol, Protocol):
    """The backend interface: what a backend package's `connect()` factory returns.

    All stream, group and consumer names are conveyor names; each backend maps them onto
    its broker (valid characters, key prefixes) itself.
    """

    capabilities: Capabilities

    def open_consumer(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        start: StartPosition = "earliest",
        claim_idle: float | None = None,
        max_deliveries: int | None = None,
    ) -> Opening[ConsumerSession]:
        """Create the group (and stream) if missing and open `consumer`'s session.

        An existing group is success; `start` only applies when the group is created.
        `claim_idle` and `max_deliveries` are hints for brokers that enforce them
        themselves (JetStream's ack_wait and max_deliver, Kafka's session timeout).

        Raises:
            ConfigConflictError: the broker's group or stream is configured differently.
            BrokerUnavailableError: the broker cannot be reached.
        """

    async def publish(
        self, stream: str, data: Payload, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Append one payload (with `headers`) and return its id once the broker stored it.

        `data` is a dict of JSON values; `BaseBackend` also takes typed payloads
        (pydantic models, msgspec Structs, dataclasses: see `conveyor.typed`).

        Raises:
            UnserializablePayloadError: the payload would not survive a JSON round trip.
            InvalidHeaderError: a header no backend can carry, or a reserved name.
        """

    async def publish_many(
        self,
        stream: str,
        items: Sequence[Payload],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[str]:
        """Append payloads in as few round trips as the broker allows; ids in order.

        `headers`, when given, holds one mapping (or None) per item. Everything is
        validated before anything is sent.
        """

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        """Pending count, lag and consumers of a group."""

    async def peek(self, stream: str, *, count: int) -> list[Message]:
        """Return up to the last `count` entries of `stream`, oldest first, outside any group.

        ``count < 1`` returns ``[]``; a missing stream returns ``[]``.
        """

    async def aclose(self) -> None:
        """Close every session opened on this backend, then the connections. Idempotent."""

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
