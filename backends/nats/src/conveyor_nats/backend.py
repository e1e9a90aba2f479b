"""`NatsBackend`: conveyor streams and groups on NATS JetStream (nats-py).

Mapping (names escaped by `conveyor_nats.names`):

* conveyor stream ``s`` → JetStream stream ``<stream_prefix><escaped s>`` with one subject
  ``<subject_prefix>.<escaped s>``, limits retention (every group sees every message);
* group ``g`` → durable pull consumer ``<escaped g>`` with explicit acks; ``claim_idle`` →
  ``ack_wait``, ``max_deliveries`` + margin → ``max_deliver`` (a backstop: the engine
  dead-letters first); start ``earliest`` → DeliverPolicy.ALL, ``latest`` → NEW;
* a worker (conveyor consumer) → one cached pull subscription on the group's consumer;
* message id → the stream sequence; delivery count → ``num_delivered``;
* ack → ``+ACK`` per message, the last of a batch waiting for the server's reply
  (``ack_confirm``); heartbeat → ``+WPI`` (in progress); nack(delay) → ``-NAK {"delay"}``;
  dead letter → publish to the dead-letter stream, wait for its PubAck, then ``+TERM``.

JetStream redelivers unacknowledged messages after ``ack_wait`` itself, so ``claim_stale``
returns nothing and ``redeliver`` is not used (capabilities ``redelivery="broker"``,
``claim="broker"``). nats-py exceptions become `conveyor.errors` in
`conveyor_nats.errors.map_error` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from conveyor.codec import decode_json, encode_json
from conveyor.errors import (
    BackendClosedError,
    BrokerUnavailableError,
    ConfigConflictError,
    ConfigurationError,
    DecodeError,
    GroupNotFoundError,
)
from conveyor.message import Message
from conveyor.protocol import Capabilities, GroupInfo, StartPosition
from conveyor_nats.config import consumer_conflicts, stream_config, stream_conflicts
from conveyor_nats.errors import (
    CONSUMER_NOT_FOUND,
    MESSAGE_NOT_FOUND,
    STREAM_NAME_IN_USE,
    STREAM_NOT_FOUND,
    map_error,
)
from conveyor_nats.names import escape_name
from conveyor_nats.pull import Puller
from conveyor_nats.settings import NatsSettings

__all__ = ["CAPABILITIES", "NatsBackend", "open_backend"]

log = logging.getLogger("conveyor.nats")

CAPABILITIES = Capabilities(
    name="nats",
    redelivery="broker",
    claim="broker",
    exact_delivery_count=True,
    ordering="stream",
    ack_from_reader=True,
    durable=True,
)

_MAX_ASYNC_PENDING = 4000  # publishes awaiting their PubAck per connection
_ANSWER_WITHIN = 0.25  # longest wait for the reply to a no_wait pull request
_PEEK_CHUNK = 256


class NatsBackend:
    """``nats://`` / ``tls://`` backend over one nats-py connection (see the module docstring).

    Build it with `open_backend` or `NatsBackend.connect`; close it with `aclose()` or
    ``async with``.
    """

    capabilities = CAPABILITIES

    def __init__(self, settings: NatsSettings, client: Client) -> None:
        self.settings = settings
        self._nc = client
        self._js = client.jetstream(
            timeout=settings.request_timeout, publish_async_max_pending=_MAX_ASYNC_PENDING
        )
        self._subjects: dict[str, str] = {}  # conveyor streams known to exist -> subject
        self._readers: dict[tuple[str, str, str], Puller] = {}
        self._seed_handles: dict[tuple[str, str], dict[str, Msg]] = {}
        self._closed = False
        self._servers = settings.redacted_servers()
        self._disconnected_at = 0.0  # monotonic time of the last disconnect; 0: connected
        self._errors: dict[str, None] = {}  # distinct connection errors since connected

    @classmethod
    async def connect(cls, settings: NatsSettings) -> NatsBackend:
        """Connect to the servers in `settings`.

        Raises:
            BrokerUnavailableError: no server answered within the connect budget.
            ConfigurationError: TLS or creds files that cannot be used.
        """
        if settings.creds is not None:
            try:
                import nkeys  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
            except ImportError:
                raise ConfigurationError(
                    "nats:// option creds needs the nkeys package: pip install 'nats-py[nkeys]'"
                ) from None
        try:
            tls = settings.ssl_context()
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"nats:// TLS options: {exc}") from None
        client = Client()
        backend = cls(settings, client)
        budget = settings.connect_timeout * len(settings.servers) + settings.reconnect_wait + 1
        try:
            await asyncio.wait_for(
                client.connect(
                    servers=list(settings.servers),
                    name=settings.name,
                    connect_timeout=settings.connect_timeout,  # type: ignore[arg-type]
                    reconnect_time_wait=settings.reconnect_wait,  # type: ignore[arg-type]
                    max_reconnect_attempts=settings.max_reconnect_attempts,
                    user=settings.user,
                    password=settings.password,
                    token=settings.token,
                    user_credentials=settings.creds,
                    tls=tls,
                    tls_hostname=settings.tls_hostname,
                    error_cb=backend._on_error,
                    disconnected_cb=backend._on_disconnect,
                    reconnected_cb=backend._on_reconnect,
                    closed_cb=backend._on_close,
                ),
                timeout=budget,
            )
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            backend._closed = True
            with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
                await client.close()
            seen = "; ".join(backend._errors)
            last = f" (errors: {seen})" if seen else ""
            raise BrokerUnavailableError(
                f"cannot connect to NATS at {settings.redacted_servers()}:"
                f" {type(exc).__name__}{last}"
            ) from None
        backend._errors.clear()
        return backend

    # Connection callbacks: the client reconnects by itself; these make it visible in logs.

    async def _on_error(self, exc: Exception) -> None:
        # Every failed (re)connect attempt reports here: warn once per kind of error.
        text = f"{type(exc).__name__}: {exc}"
        repeated = text in self._errors
        self._errors[text] = None  # insertion-ordered set, reset once connected
        level = logging.DEBUG if self._closed or repeated else logging.WARNING
        log.log(level, "NATS connection error (%s): %s", self._servers, text)

    async def _on_disconnect(self) -> None:
        if not self._closed:
            self._disconnected_at = time.monotonic()
            log.warning("disconnected from NATS (%s); reconnecting", self._servers)

    async def _on_reconnect(self) -> None:
        url = self._nc.connected_url
        where = f"{url.hostname}:{url.port}" if url is not None else self._servers
        down = time.monotonic() - self._disconnected_at if self._disconnected_at else 0.0
        self._disconnected_at = 0.0
        self._errors.clear()
        log.warning("reconnected to NATS at %s after %.1f s", where, down)

    async def _on_close(self) -> None:
        log.log(
            logging.DEBUG if self._closed else logging.ERROR,
            "NATS connection to %s closed",
            self._servers,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"NatsBackend(servers={self.settings.redacted_servers()!r}, {state})"

    # -- names -------------------------------------------------------------------------

    def stream_name(self, stream: str) -> str:
        """The JetStream stream name of conveyor stream `stream`."""
        return self.settings.stream_prefix + escape_name(stream, kind="stream name")

    def subject(self, stream: str) -> str:
        """The subject conveyor stream `stream` is published on."""
        return f"{self.settings.subject_prefix}.{escape_name(stream, kind='stream name')}"

    @staticmethod
    def consumer_name(group: str) -> str:
        """The durable consumer name of conveyor group `group`."""
        return escape_name(group, kind="group name")

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> NatsBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Flush outstanding acks, then close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        readers = list(self._readers.values())
        self._readers.clear()
        self._seed_handles.clear()
        for reader in readers:  # wakes blocked reads, which then raise BackendClosedError
            with contextlib.suppress(nats.errors.Error, OSError):
                await reader.stop()
        try:
            if self._nc.is_connected:
                await self._nc.flush(timeout=max(1, round(self.settings.request_timeout)))
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            log.warning("could not flush acks before closing: %s", type(exc).__name__)
        finally:
            await self._nc.close()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosedError(f"{self!r} is closed")

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            if self._closed:
                raise BackendClosedError(f"{action}: {self!r} is closed") from None
            raise map_error(exc, action) from exc

    # -- streams and groups ------------------------------------------------------------

    def _stream_config(self, stream: str) -> api.StreamConfig:
        return stream_config(self.settings, self.stream_name(stream), self.subject(stream))

    async def _ensure_stream(self, stream: str) -> str:
        """Create `stream` on first use (or check the existing one); return its subject."""
        subject = self._subjects.get(stream)
        if subject is not None:
            return subject
        self._check_open()
        want = self._stream_config(stream)
        name = want.name or ""
        with self._translate(f"create stream {stream!r}"):
            try:
                info = await self._js.stream_info(name)
            except nats.js.errors.NotFoundError as exc:
                if exc.err_code != STREAM_NOT_FOUND:
                    raise
                try:
                    info = await self._js.add_stream(want)
                    log.info("created JetStream stream %s for %r", name, stream)
                except nats.js.errors.APIError as exc2:
                    if exc2.err_code != STREAM_NAME_IN_USE:  # lost a race: check theirs
                        raise
                    info = await self._js.stream_info(name)
        problems = stream_conflicts(info.config, want)
        if problems:
            raise ConfigConflictError(
                f"JetStream stream {name!r} (conveyor stream {stream!r}) exists with a different"
                f" configuration: {'; '.join(problems)}. Fix: edit or delete the stream"
                f" (nats stream edit/rm {name}), pass nats:// options that match it, or set"
                " stream_prefix= to keep conveyor's streams apart"
            )
        subject = self.subject(stream)
        self._subjects[stream] = subject
        return subject

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
        """Create the stream and the group's durable pull consumer if missing.

        An existing consumer is success when it is compatible: explicit acks, this
        stream's subject, ``ack_wait == claim_idle`` (when given) and a ``max_deliver``
        above `max_deliveries` (when given). The start position only applies on creation.

        Raises:
            ConfigConflictError: the existing stream or consumer differs; says what and how
                to fix it.
            BrokerUnavailableError: NATS or JetStream cannot be reached.
        """
        subject = await self._ensure_stream(stream)
        name, durable = self.stream_name(stream), self.consumer_name(group)
        margin = self.settings.max_deliver_margin
        max_deliver = -1 if max_deliveries is None or margin < 0 else max_deliveries + margin
        want = api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            deliver_policy=api.DeliverPolicy.ALL if start == "earliest" else api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=claim_idle if claim_idle is not None else self.settings.ack_wait,
            max_deliver=max_deliver,
            filter_subject=subject,
            max_ack_pending=self.settings.max_ack_pending,
        )
        with self._translate(f"create group {group!r} on stream {stream!r}"):
            try:
                info = await self._js.consumer_info(name, durable)
            except nats.js.errors.NotFoundError as exc:
                if exc.err_code == STREAM_NOT_FOUND:  # deleted since we cached it
                    self._subjects.pop(stream, None)
                    await self._ensure_stream(stream)
                elif exc.err_code != CONSUMER_NOT_FOUND:
                    raise
                await self._js.add_consumer(name, want)
                log.info("created JetStream consumer %s on %s (group %r)", durable, name, group)
                return
        problems = consumer_conflicts(info.config, want, claim_idle, max_deliveries)
        if problems:
            raise ConfigConflictError(
                f"JetStream consumer {durable!r} on stream {name!r} (group {group!r}) exists"
                f" with a different configuration: {'; '.join(problems)}. Fix: delete it"
                f" (nats consumer rm {name} {durable}) so conveyor recreates it, or pass"
                " settings that match it"
            )

    async def create_group(self, stream_name: str, group_name: str) -> None:
        """Seed protocol: `ensure_group` with defaults."""
        await self.ensure_group(stream_name, group_name)

    # -- publishing --------------------------------------------------------------------

    async def publish(self, stream: str, data: dict[str, Any], *, msg_id: str | None = None) -> str:
        """Publish one payload, wait for JetStream's PubAck and return the sequence.

        `msg_id` becomes ``Nats-Msg-Id``: a repeat within ``duplicate_window`` is stored
        once (the original sequence is returned).
        """
        payload = encode_json(data).encode()
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        for attempt in (1, 2):
            subject = await self._ensure_stream(stream)
            with self._translate(f"publish to {stream!r}"):
                try:
                    ack = await self._js.publish(
                        subject, payload, timeout=self.settings.request_timeout, headers=headers
                    )
                except nats.js.errors.NoStreamResponseError:
                    self._subjects.pop(stream, None)  # deleted since we checked: recreate
                    if attempt == 2:
                        raise
                    continue
            return str(ack.seq)
        raise AssertionError("unreachable")  # pragma: no cover

    async def publish_many(
        self,
        stream: str,
        items: Sequence[dict[str, Any]],
        *,
        msg_ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Publish payloads asynchronously and gather their PubAcks; sequences in order.

        All payloads are validated before any is sent. On an error some payloads may have
        been stored; pass `msg_ids` to make a retry of the whole batch safe.
        """
        payloads = [encode_json(item).encode() for item in items]
        if msg_ids is not None and len(msg_ids) != len(payloads):
            raise ConfigurationError("publish_many: msg_ids must match items one to one")
        if not payloads:
            return []
        for attempt in (1, 2):
            subject = await self._ensure_stream(stream)
            results = await self._publish_batch(stream, subject, payloads, msg_ids)
            errors = [r for r in results if isinstance(r, BaseException)]
            if not errors:
                return [str(r.seq) for r in results if isinstance(r, api.PubAck)]
            no_stream = nats.js.errors.NoStreamResponseError
            if attempt == 1 and all(isinstance(e, no_stream) for e in results):
                self._subjects.pop(stream, None)
                continue
            self._check_open()
            raise map_error(errors[0], f"publish {len(payloads)} payloads to {stream!r}")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _publish_batch(
        self,
        stream: str,
        subject: str,
        payloads: list[bytes],
        msg_ids: Sequence[str] | None,
    ) -> list[api.PubAck | BaseException]:
        timeout = self.settings.request_timeout
        futures: list[asyncio.Future[api.PubAck]] = []
        try:
            with self._translate(f"publish to {stream!r}"):
                for index, payload in enumerate(payloads):
                    headers = {"Nats-Msg-Id": msg_ids[index]} if msg_ids else None
                    # Only bound the wait when the window of unacked publishes is full:
                    # a timed wait costs a task per message and flushes every message.
                    full = self._js.publish_async_pending() >= _MAX_ASYNC_PENDING - 1
                    futures.append(
                        await self._js.publish_async(
                            subject, payload, wait_stall=timeout if full else None, headers=headers
                        )
                    )
                gathered = asyncio.gather(*futures, return_exceptions=True)
                return await asyncio.wait_for(gathered, timeout)
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    # -- reading -----------------------------------------------------------------------

    async def _reader(self, stream: str, group: str, consumer: str) -> Puller:
        key = (stream, group, consumer)
        reader = self._readers.get(key)
        if reader is not None:
            return reader
        name, durable = self.stream_name(stream), self.consumer_name(group)
        with self._translate(f"read group {group!r} of stream {stream!r}"):
            await self._js.consumer_info(name, durable)  # GroupNotFoundError when missing
            reader = Puller(self._nc, api.DEFAULT_PREFIX, name, durable)
            await reader.start()
        cached = self._readers.setdefault(key, reader)
        if cached is not reader:  # another read of this worker got there first
            await reader.stop()
        return cached

    async def _drop_reader(self, stream: str, group: str, consumer: str) -> None:
        reader = self._readers.pop((stream, group, consumer), None)
        self._subjects.pop(stream, None)
        if reader is not None:
            with contextlib.suppress(nats.errors.Error):
                await reader.stop()

    async def _check_group(self, stream: str, group: str, consumer: str, reader: Puller) -> None:
        """After an idle fetch (at most every group_check_interval, or at once when the
        server sent an unexpected status): does the group's consumer still exist?"""
        now = time.monotonic()
        if not reader.suspect and now - reader.checked_at < self.settings.group_check_interval:
            return
        reader.checked_at = now
        reader.suspect = False
        try:
            with self._translate(f"check group {group!r} of stream {stream!r}"):
                await self._js.consumer_info(self.stream_name(stream), self.consumer_name(group))
        except GroupNotFoundError:
            await self._drop_reader(stream, group, consumer)
            raise

    def _to_message(self, stream: str, msg: Msg) -> Message:
        meta = msg.metadata
        try:
            data, error = decode_json(msg.data), None
        except DecodeError as exc:
            data, error = {}, str(exc)
        return Message(
            id=str(meta.sequence.stream),
            stream=stream,
            data=data,
            delivery_count=meta.num_delivered,
            published_at=meta.timestamp.timestamp(),
            decode_error=error,
            raw=msg.data if error is not None else None,
            handle=msg,
        )

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None
    ) -> list[Message]:
        """Fetch up to `count` messages for the group, waiting up to `block` seconds.

        Idle → ``[]``. A restarted worker's unacknowledged messages come back from
        JetStream once their ``ack_wait`` has passed (to whichever worker fetches).

        Raises:
            GroupNotFoundError: the group's consumer (or its stream) does not exist.
        """
        self._check_open()
        if count < 1:
            raise ConfigurationError(f"read: count must be >= 1, got {count}")
        reader = await self._reader(stream, group, consumer)
        async with reader.lock:
            with self._translate(f"read group {group!r} of stream {stream!r}"):
                fetched = await reader.fetch(
                    count, block=block or 0.0, answer_within=_ANSWER_WITHIN
                )
            self._check_open()
            if not fetched:
                await self._check_group(stream, group, consumer, reader)
                return []
        reader.checked_at = time.monotonic()
        return [self._to_message(stream, msg) for msg in fetched]

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Seed protocol: a non-blocking `read`, as ``(id, payload)`` pairs.

        Undecodable messages are left out (logged); JetStream redelivers them after
        ``ack_wait``. Use `read` to receive them with ``decode_error`` set.
        """
        messages = await self.read(stream_name, group_name, consumer_name, count=count, block=None)
        handles = self._seed_handles.setdefault((stream_name, group_name), {})
        out: list[tuple[str, dict[str, Any]]] = []
        for message in messages:
            if message.decode_error is not None:
                log.error(
                    "undecodable message %s on %r: %s",
                    message.id,
                    stream_name,
                    message.decode_error,
                )
                continue
            handles[message.id] = message.handle
            out.append((message.id, message.data))
        return out

    def _handle(self, stream: str, group: str, message: Message) -> Msg | None:
        seed = self._seed_handles.get((stream, group))
        known = seed.pop(message.id, None) if seed else None
        handle = message.handle if isinstance(message.handle, Msg) else known
        return handle

    # -- acknowledging -----------------------------------------------------------------

    async def ack(self, stream: str, group: str, messages: Sequence[Message]) -> None:
        """Acknowledge messages: one ``+ACK`` publish each, without waiting for replies,
        except the batch's last one when ``ack_confirm`` is on (the default): the server
        handles a consumer's acks in order, so its reply confirms the whole batch (one
        round trip per batch; `group_info` right after sees them).

        Messages without a delivery handle from this backend, or already acked: no-op.
        """
        self._check_open()
        handles = [h for h in (self._handle(stream, group, m) for m in messages) if h is not None]
        handles = [h for h in handles if not h.is_acked]
        if not handles:
            return
        with self._translate(f"ack on stream {stream!r}"):
            last = handles.pop() if self.settings.ack_confirm else None
            for handle in handles:
                await handle.ack()
            if last is not None:
                try:
                    await last.ack_sync(timeout=self.settings.request_timeout)
                except nats.errors.NoRespondersError:  # consumer deleted: nothing to ack
                    log.debug("acks on %r/%r: the consumer is gone", stream, group)

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        """Seed protocol: acknowledge an id returned by `read_events` (unknown: no-op)."""
        await self.ack(stream_name, group_name, [Message(message_id, stream_name, {})])

    async def nack(self, stream: str, group: str, message: Message, *, delay: float) -> None:
        """Ask JetStream to deliver `message` again after `delay` seconds (``-NAK``)."""
        self._check_open()
        handle = self._handle(stream, group, message)
        if handle is None or handle.is_acked:
            return
        with self._translate(f"nack on stream {stream!r}"):
            await handle.nak(delay=delay if delay > 0 else None)

    async def heartbeat(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> None:
        """Reset the ack_wait timer of in-flight messages (``+WPI``); counts unchanged."""
        self._check_open()
        with self._translate(f"heartbeat on stream {stream!r}"):
            for message in messages:
                handle = message.handle
                if isinstance(handle, Msg) and not handle.is_acked:
                    await handle.in_progress()

    async def redeliver(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> list[Message]:
        """Not used: JetStream redelivers itself (``capabilities.redelivery == "broker"``)."""
        raise NotImplementedError("nats:// redelivers through nack(delay) (redelivery='broker')")

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Message]:
        """Always ``[]``: JetStream hands stale messages out again after ``ack_wait``."""
        self._check_open()
        return []

    async def dead_letter(
        self,
        stream: str,
        group: str,
        message: Message,
        *,
        dead_letter_stream: str,
        record: dict[str, Any],
    ) -> str:
        """Publish `record` to `dead_letter_stream`, wait for its PubAck, then ``+TERM``.

        The publish carries a ``Nats-Msg-Id`` derived from stream, group and id, so a
        retry after a crash between the two steps does not write the record twice.
        """
        msg_id = f"conveyor-dlq.{escape_name(stream)}.{escape_name(group)}.{message.id}"
        entry = await self.publish(dead_letter_stream, record, msg_id=msg_id)
        handle = self._handle(stream, group, message)
        if handle is not None and not handle.is_acked:
            with self._translate(f"terminate {message.id} on stream {stream!r}"):
                if self.settings.ack_confirm:  # +TERM with a reply: done once it returns
                    with contextlib.suppress(nats.errors.NoRespondersError):  # consumer gone
                        await self._nc.request(
                            handle.reply, Msg.Ack.Term, timeout=self.settings.request_timeout
                        )
                else:
                    await handle.term()
        return entry

    # -- inspection --------------------------------------------------------------------

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        """``num_ack_pending`` as pending, ``num_pending`` as lag, stream length.

        JetStream does not track workers of a pull consumer: ``consumers`` is empty.
        """
        self._check_open()
        name, durable = self.stream_name(stream), self.consumer_name(group)
        with self._translate(f"inspect group {group!r} of stream {stream!r}"):
            info, stream_info = await asyncio.gather(
                self._js.consumer_info(name, durable), self._js.stream_info(name)
            )
        return GroupInfo(
            stream=stream,
            group=group,
            pending=info.num_ack_pending or 0,
            lag=info.num_pending or 0,
            length=stream_info.state.messages,
        )

    async def peek(self, stream: str, *, count: int) -> list[Message]:
        """The last `count` sequences of `stream` (deleted ones skipped), oldest first."""
        self._check_open()
        name = self.stream_name(stream)
        with self._translate(f"peek stream {stream!r}"):
            try:
                state = (await self._js.stream_info(name)).state
            except nats.js.errors.NotFoundError as exc:
                if exc.err_code == STREAM_NOT_FOUND:
                    return []
                raise
            if count < 1 or state.messages == 0:
                return []
            seqs = list(range(max(state.first_seq, state.last_seq - count + 1), state.last_seq + 1))
            out: list[Message] = []
            for start in range(0, len(seqs), _PEEK_CHUNK):
                chunk = seqs[start : start + _PEEK_CHUNK]
                found = await asyncio.gather(
                    *(self._js.get_msg(name, seq) for seq in chunk), return_exceptions=True
                )
                for raw in found:
                    if isinstance(raw, nats.js.errors.APIError):
                        if raw.err_code == MESSAGE_NOT_FOUND:
                            continue  # a deleted sequence
                        if raw.err_code == STREAM_NOT_FOUND:
                            return []  # deleted while we looked
                    if isinstance(raw, BaseException):
                        raise raw
                    out.append(_peeked(stream, raw))
        return out


def _peeked(stream: str, raw: api.RawStreamMsg) -> Message:
    body = raw.data or b""
    try:
        data, error = decode_json(body), None
    except DecodeError as exc:
        data, error = {}, str(exc)
    return Message(
        id=str(raw.seq),
        stream=stream,
        data=data,
        delivery_count=0,
        published_at=raw.time.timestamp() if raw.time is not None else None,
        decode_error=error,
        raw=body if error is not None else None,
    )


async def open_backend(url: str, options: dict[str, Any]) -> NatsBackend:
    """Entry point for ``nats://`` and ``tls://`` URLs (see `NatsSettings`)."""
    return await NatsBackend.connect(NatsSettings.from_url(url, options))
