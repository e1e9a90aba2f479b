"""`BaseBackend` and `BaseSession`: the lifecycle every backend shares, written once.

httpx's ``AsyncBaseTransport`` is the model: a backend subclasses `BaseBackend` and writes
only what talks to its broker (`_open_consumer`, `_publish_many`, `_group_info`,
`_peek`, `_close`; optionally `_range`, `_delete`, `_delete_stream`, `_streams`,
`_groups`); sessions subclass `BaseSession`. The base gives them ``async with``,
idempotent closing (a backend closes its sessions first), closed-state checks, argument
validation, `publish` over `_publish_many` (concurrent publishes gathered into batches by
`conveyor.coalesce`), and the seed's three methods over sessions.
A backend may also implement `conveyor.protocol.StreamBackend` without this class.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from typing_extensions import Self

from conveyor.coalesce import Coalescer
from conveyor.discovery import StreamInfo
from conveyor.errors import (
    BackendClosedError,
    ConfigurationError,
    ConveyorError,
    PayloadTooLargeError,
)
from conveyor.headers import check_headers, check_headers_list
from conveyor.message import Message
from conveyor.middleware import (
    Middleware,
    PublishNext,
    PublishRequest,
    check_middleware,
    compose_publish,
)
from conveyor.opening import Opening
from conveyor.protocol import Capabilities, ConsumerSession, GroupInfo, StartPosition
from conveyor.typed import Payload, to_payload

__all__ = [
    "SEED_CONSUMER",
    "SEED_MEMORY",
    "BaseBackend",
    "BaseSession",
    "ConsumerOptions",
    "check_name",
    "check_sizes",
]

log = logging.getLogger("conveyor.backend")

#: Consumer name of the session behind `create_group`.
SEED_CONSUMER = "conveyor-seed"


def check_name(kind: str, value: object) -> str:
    """A stream, group or consumer name: a non-empty str.

    Raises:
        ConfigurationError: naming `kind` and the value.
    """
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{kind} must be a non-empty str, got {value!r}")
    return value


def check_sizes(stream: str, sizes: Iterable[int], limit: int | None, limit_name: str) -> None:
    """Refuse, before anything is sent, a message whose encoded size (payload and
    headers, as the broker counts them) is over `limit` bytes (None: no limit).

    Raises:
        PayloadTooLargeError: naming the stream, the item, both sizes and the limit.
    """
    if limit is None:
        return
    for index, size in enumerate(sizes):
        if size > limit:
            raise PayloadTooLargeError(
                f"message {index} for stream {stream!r} is {size:,} bytes encoded; the"
                f" broker accepts at most {limit:,} ({limit_name}); nothing was published"
            )


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """What `open_consumer` was asked for, besides the names."""

    start: StartPosition = "earliest"
    claim_idle: float | None = None
    max_deliveries: int | None = None


class _Lifecycle:
    """``async with`` and idempotent `aclose()` around a `_close()` hook."""

    _closed: bool = False

    @property
    def closed(self) -> bool:
        """True once `aclose()` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self.closed:
            raise BackendClosedError(f"{self!r} is closed")

    async def aclose(self) -> None:
        """Close; later operations raise `BackendClosedError`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    async def _close(self) -> None:
        """Release resources (called once, by `aclose`)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class BaseSession(_Lifecycle, ABC):
    """One consumer's session (see `conveyor.protocol.ConsumerSession`).

    Subclasses implement `read`, `ack` and `dead_letter`, plus `redeliver` (engine
    redelivery) or `nack` (broker redelivery), and `claim_stale`/`heartbeat` where the
    broker needs them; `_close` releases the membership. Every method should start with
    ``self._check_open()``.
    """

    def __init__(self, backend: BaseBackend, stream: str, group: str, consumer: str) -> None:
        self.backend = backend
        self.stream = stream
        self.group = group
        self.consumer = consumer

    @property
    def closed(self) -> bool:
        """True once this session or its backend was closed."""
        return self._closed or self.backend.closed

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.stream!r} group={self.group!r}"
            f" consumer={self.consumer!r}{' closed' if self.closed else ''}>"
        )

    async def aclose(self) -> None:
        """Release the membership; never acknowledges anything. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.backend._forget(self)
        await self._close()

    @abstractmethod
    async def read(self, *, count: int, block: float | None) -> list[Message]: ...

    @abstractmethod
    async def ack(self, messages: Sequence[Message]) -> None: ...

    async def redeliver(self, messages: Sequence[Message]) -> list[Message]:
        raise NotImplementedError(f"{self.backend.capabilities.name} redelivers through nack()")

    async def nack(self, message: Message, *, delay: float) -> None:
        raise NotImplementedError(
            f"{self.backend.capabilities.name} redelivers through redeliver()"
        )

    async def claim_stale(self, *, min_idle: float, count: int) -> list[Message]:
        """``[]``: brokers that claim by themselves need nothing here."""
        self._check_open()
        return []

    async def heartbeat(self, messages: Sequence[Message]) -> None:
        """No-op by default (brokers whose clients heartbeat by themselves)."""
        self._check_open()

    @abstractmethod
    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str: ...


class BaseBackend(_Lifecycle, ABC):
    """A backend's lifecycle, validation and seed methods (see the module docstring)."""

    capabilities: Capabilities

    def __init__(self) -> None:
        self._sessions: dict[int, ConsumerSession] = {}
        self._seed = _SeedSessions(self)

    # -- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Fail queued publishes (`BackendClosedError`) and let those in flight finish,
        close every open session (never acknowledging anything), then the backend's
        connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._coalescer is not None:  # queued publishes fail, those in flight finish
            await self._coalescer.aclose()
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            try:
                await session.aclose()
            except ConveyorError as exc:  # closing the others and the backend goes on
                log.warning("closing %r: %s", session, exc)
        await self._close()

    def _forget(self, session: ConsumerSession) -> None:
        self._sessions.pop(id(session), None)

    # -- consumer sessions -----------------------------------------------------------

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
        """Create the group if missing and open `consumer`'s session (see
        `conveyor.protocol.StreamBackend.open_consumer`)."""
        check_name("stream name", stream)
        check_name("group name", group)
        check_name("consumer name", consumer)
        if start not in ("earliest", "latest"):
            raise ConfigurationError(f"start must be 'earliest' or 'latest', got {start!r}")
        if claim_idle is not None and not claim_idle > 0:
            raise ConfigurationError(f"claim_idle must be > 0, got {claim_idle!r}")
        if max_deliveries is not None and max_deliveries < 1:
            raise ConfigurationError(f"max_deliveries must be >= 1, got {max_deliveries!r}")
        options = ConsumerOptions(start, claim_idle, max_deliveries)

        async def open_session() -> ConsumerSession:
            self._check_open()
            session = await self._open_consumer(stream, group, consumer, options)
            if self._closed:  # closed while opening
                await session.aclose()
                raise BackendClosedError(f"{self!r} was closed while opening {session!r}")
            self._sessions[id(session)] = session
            return session

        return Opening(open_session, f"consumer {consumer!r} of {group!r} on {stream!r}")

    @abstractmethod
    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> ConsumerSession:
        """Create the group (and stream) if missing; return a new session."""

    # -- publishing and inspection ---------------------------------------------------

    async def publish(
        self, stream: str, data: Payload, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Append one payload (with `headers`); return its id once the broker stored it.

        `data` is a dict, or a pydantic model, msgspec Struct or dataclass instance
        (`conveyor.typed`), sent as its JSON-mode dict."""
        self._check_open()
        check_name("stream name", stream)
        if type(data) is not dict:
            data = to_payload(data)
        checked = check_headers(headers)
        if self._publish_chain is not None:
            request = PublishRequest(stream, [data], [checked], self.capabilities.name)
            return (await self._publish_chain(request))[0]
        return await self._publish_one(stream, data, checked)

    async def publish_many(
        self,
        stream: str,
        items: Sequence[Payload],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[str]:
        """Append payloads (as `publish` takes them) in as few round trips as the broker
        allows; ids in order."""
        self._check_open()
        check_name("stream name", stream)
        checked = check_headers_list(headers, len(items))
        if not items:
            return []
        items = [item if type(item) is dict else to_payload(item) for item in items]
        if self._publish_chain is not None:
            request = PublishRequest(stream, list(items), checked, self.capabilities.name)
            return await self._publish_chain(request)
        return await self._publish_many(stream, list(items), checked)

    # -- publish middleware (see conveyor.middleware) --------------------------------

    _middleware: tuple[Middleware, ...] = ()
    _publish_chain: PublishNext | None = None

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The publish middleware of this backend, outermost first."""
        return self._middleware

    def add_middleware(self, middleware: Middleware) -> None:
        """Run `middleware.publish` around every publish through this backend; the
        first added runs outermost."""
        self._use_middleware((*self._middleware, *check_middleware([middleware])))

    def remove_middleware(self, middleware: Middleware) -> None:
        """Stop running `middleware` here (a no-op when it is not here)."""
        self._use_middleware(tuple(m for m in self._middleware if m is not middleware))

    def _use_middleware(self, middleware: tuple[Middleware, ...]) -> None:
        self._middleware = middleware
        self._publish_chain = compose_publish(middleware, self._publish_request)

    async def _publish_request(self, request: PublishRequest) -> list[str]:
        headers = check_headers_list(request.headers, len(request.items))  # theirs too
        if len(request.items) == 1:
            one = headers[0] if headers else {}
            return [await self._publish_one(request.stream, request.items[0], one)]
        return await self._publish_many(request.stream, request.items, headers)

    # -- publish coalescing (see conveyor.coalesce) ----------------------------------

    #: Gather concurrent one-message publishes into one `_publish_many` per round trip
    #: (`conveyor.coalesce.Coalescer`). A backend whose client already batches
    #: concurrent sends itself may set it to False.
    coalesce_publishes: bool = True
    _coalescer: Coalescer | None = None

    async def _publish_one(self, stream: str, data: dict[str, Any], headers: dict[str, str]) -> str:
        """One message (`headers` checked, ``{}`` for none), with the concurrent others."""
        if not self.coalesce_publishes:
            return (await self._publish_many(stream, [data], [headers] if headers else None))[0]
        coalescer = self._coalescer
        if coalescer is None:
            coalescer = self._coalescer = Coalescer(self._publish_many)
        return await coalescer.publish(stream, data, headers)

    @abstractmethod
    async def _publish_many(
        self, stream: str, items: list[dict[str, Any]], headers: list[dict[str, str]] | None
    ) -> list[str]:
        """Validate and append `items` (non-empty; `headers` checked, one per item, or
        None); ids in order."""

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        """Pending count, lag, length and consumers of a group.

        Raises:
            GroupNotFoundError: no such stream or group.
        """
        self._check_open()
        return await self._group_info(check_name("stream name", stream), group)

    @abstractmethod
    async def _group_info(self, stream: str, group: str) -> GroupInfo: ...

    async def peek(self, stream: str, *, count: int) -> list[Message]:
        """Up to the last `count` entries of `stream`, oldest first; ``[]`` when
        ``count < 1`` or the stream does not exist."""
        self._check_open()
        check_name("stream name", stream)
        if count < 1:
            return []
        return await self._peek(stream, count)

    @abstractmethod
    async def _peek(self, stream: str, count: int) -> list[Message]: ...

    async def range(
        self, stream: str, *, after: str | None = None, count: int = 100
    ) -> list[Message]:
        """Up to `count` entries of `stream` after id `after` (from the first when None),
        oldest first, outside any group; ``[]`` past the end or for a missing stream.
        Used by the dead-letter tools (`conveyor.dlq`) to page through a stream.

        Raises:
            NotImplementedError: the backend cannot read a stream by position.
        """
        self._check_open()
        check_name("stream name", stream)
        if count < 1:
            return []
        return await self._range(stream, after, count)

    async def _range(self, stream: str, after: str | None, count: int) -> list[Message]:
        raise NotImplementedError(f"{self.capabilities.name} cannot read a stream by position")

    async def delete(self, stream: str, ids: Sequence[str]) -> int:
        """Delete entries of `stream` by id (for every group); unknown ids are skipped.
        Returns how many were deleted.

        Raises:
            NotImplementedError: the broker cannot delete single entries (Kafka); the
                dead-letter tools then mark entries done instead.
        """
        self._check_open()
        check_name("stream name", stream)
        if not ids:
            return 0
        return await self._delete(stream, list(ids))

    async def _delete(self, stream: str, ids: list[str]) -> int:
        raise NotImplementedError(f"{self.capabilities.name} cannot delete single entries")

    async def delete_stream(self, stream: str) -> bool:
        """Delete `stream` with all its entries and consumer groups; True when it existed.
        Sessions open on it get `GroupNotFoundError` from their next call, as for a stream
        deleted by anyone (a `StreamProcessor` then recreates its group).

        Raises:
            NotImplementedError: the backend cannot delete streams.
        """
        self._check_open()
        return await self._delete_stream(check_name("stream name", stream))

    async def _delete_stream(self, stream: str) -> bool:
        raise NotImplementedError(f"{self.capabilities.name} cannot delete streams")

    # -- discovery (see conveyor.discovery) ------------------------------------------

    async def streams(self) -> list[StreamInfo]:
        """Every stream this backend can address, sorted by name: its length, groups and
        oldest entry's time where the broker says (`conveyor.discovery.StreamInfo`).
        Dead-letter streams are listed too (`StreamInfo.dead_letter_of`).

        Raises:
            NotImplementedError: the backend cannot list its streams.
        """
        self._check_open()
        return sorted(await self._streams(), key=lambda info: info.name)

    async def _streams(self) -> list[StreamInfo]:
        raise NotImplementedError(f"{self.capabilities.name} cannot list its streams")

    async def groups(self, stream: str) -> list[str]:
        """The names of `stream`'s consumer groups, sorted; ``[]`` for a missing stream.

        Raises:
            NotImplementedError: the backend cannot list groups.
        """
        self._check_open()
        return sorted(await self._groups(check_name("stream name", stream)))

    async def _groups(self, stream: str) -> list[str]:
        """By default the groups `_streams` lists for `stream`; override where one
        stream's groups cost less to ask for."""
        found = next((i for i in await self._streams() if i.name == stream), None)
        return [] if found is None else list(found.groups)

    # -- the seed protocol, over sessions --------------------------------------------

    async def create_group(self, stream_name: str, group_name: str) -> None:
        """Create the group at the start of the stream; an existing group is success."""
        async with self.open_consumer(stream_name, group_name, SEED_CONSUMER):
            pass

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to `count` entries for the consumer, without waiting, as ``(id, payload)``.

        Entries that cannot be decoded are logged and left pending (the seed protocol
        cannot report them); a `StreamProcessor` on this backend dead-letters them.
        """
        return await self._seed.read(stream_name, group_name, consumer_name, count)

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        """Acknowledge one entry; unknown or already-acked ids are a no-op."""
        await self._seed.ack(stream_name, group_name, message_id)

    async def _ack_by_id(self, stream: str, group: str, message_id: str) -> None:
        """`ack_event` of an id no `read_events` of this backend handed out (an earlier
        process read it). Brokers that acknowledge by id override this; the default is a
        no-op, for brokers that can only acknowledge what their own connection delivered
        (whose unacknowledged messages come back after their ack wait)."""


#: Messages `read_events` returned and not acked yet, remembered per (stream, group) for
#: `ack_event`; past this the oldest are forgotten (then acked by id, where the broker can).
SEED_MEMORY = 10_000


class _SeedSessions:
    """The sessions behind the seed methods: one per (stream, group, consumer), and the
    messages they returned, so `ack_event` acks through the session that read them."""

    def __init__(self, backend: BaseBackend) -> None:
        self._backend = backend
        self._sessions: dict[tuple[str, str, str], ConsumerSession] = {}
        self._delivered: dict[tuple[str, str], dict[str, tuple[ConsumerSession, Message]]] = {}

    async def _session(self, stream: str, group: str, consumer: str) -> ConsumerSession:
        key = (stream, group, consumer)
        session = self._sessions.get(key)
        if session is None or getattr(session, "closed", False):
            session = await self._backend.open_consumer(stream, group, consumer)
            self._sessions[key] = session
        return session

    async def read(
        self, stream: str, group: str, consumer: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        session = await self._session(stream, group, consumer)
        messages = await session.read(count=count, block=None)
        delivered = self._delivered.setdefault((stream, group), {})
        out: list[tuple[str, dict[str, Any]]] = []
        for message in messages:
            if message.decode_error is not None:
                log.error(
                    "entry %s of stream %r cannot be decoded (%s): left pending",
                    message.id,
                    stream,
                    message.decode_error,
                )
                continue
            delivered[message.id] = (session, message)
            out.append((message.id, message.data))
        while len(delivered) > SEED_MEMORY:
            del delivered[next(iter(delivered))]
        return out

    async def ack(self, stream: str, group: str, message_id: str) -> None:
        found = self._delivered.get((stream, group), {}).pop(message_id, None)
        if found is not None and not getattr(found[0], "closed", False):
            await found[0].ack([found[1]])
            return
        await self._backend._ack_by_id(stream, group, message_id)
