"""`NatsBackend`: conveyor streams and groups on NATS JetStream (nats-py).

Mapping (names escaped by `conveyor_nats.names`):

* conveyor stream ``s`` → JetStream stream ``<stream_prefix><escaped s>`` with one subject
  ``<subject_prefix>.<escaped s>``, limits retention (every group sees every message);
* group ``g`` → durable pull consumer ``<escaped g>`` with explicit acks; ``claim_idle`` →
  ``ack_wait``, ``max_deliveries`` + margin → ``max_deliver`` (a backstop: the engine
  dead-letters first); start ``earliest`` → DeliverPolicy.ALL, ``latest`` → NEW;
* a consumer session → a `NatsSession` with its own pull inbox (`conveyor_nats.pull`);
* message id → the stream sequence; delivery count → ``num_delivered``; headers → native
  NATS headers (``Nats-*`` names reserved, see `conveyor_nats.messages`);
* ack → ``+ACK`` per message, the last of a batch waiting for the server's reply
  (``ack_confirm``); heartbeat → ``+WPI`` (in progress); nack(delay) → ``-NAK {"delay"}``;
  dead letter → publish to the dead-letter stream, wait for its PubAck, then ``+TERM``.

JetStream redelivers unacknowledged messages after ``ack_wait`` itself, so ``claim_stale``
returns nothing and ``redeliver`` is not used (capabilities ``redelivery="broker"``,
``claim="broker"``). nats-py exceptions become `conveyor.errors` through
`conveyor_nats.errors.ERRORS` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import api

from conveyor.base import BaseBackend, ConsumerOptions, check_name, check_sizes
from conveyor.codec import encode_json_bytes
from conveyor.discovery import StreamInfo
from conveyor.errors import BrokerUnavailableError, ConfigConflictError, ConfigurationError
from conveyor.headers import check_headers, check_headers_list
from conveyor.message import Message
from conveyor.protocol import Capabilities, GroupInfo
from conveyor.timeouts import within
from conveyor.typed import Payload, to_payload
from conveyor_nats.config import consumer_conflicts, stream_config, stream_conflicts
from conveyor_nats.discovery import list_groups, list_streams
from conveyor_nats.errors import (
    CONSUMER_ALREADY_EXISTS,
    CONSUMER_NAME_EXISTS,
    CONSUMER_NOT_FOUND,
    ERRORS,
    MESSAGE_NOT_FOUND,
    STREAM_NAME_IN_USE,
    STREAM_NOT_FOUND,
)
from conveyor_nats.messages import header_bytes, peeked
from conveyor_nats.names import escape_name
from conveyor_nats.pull import Puller
from conveyor_nats.session import NatsSession
from conveyor_nats.settings import NatsSettings

__all__ = ["CAPABILITIES", "NatsBackend", "open_backend"]

log = logging.getLogger("conveyor.nats")

CAPABILITIES = Capabilities(name="nats", redelivery="broker", claim="broker")

_MAX_ASYNC_PENDING = 4000  # publishes awaiting their PubAck per connection
_PEEK_CHUNK = 256
_MSG_ID = "Nats-Msg-Id"


class NatsBackend(BaseBackend):
    """``nats://`` / ``tls://`` backend over one nats-py connection (see the module docstring).

    Build it with `open_backend` or `NatsBackend.connect`; close it with `aclose()` or
    ``async with``.
    """

    capabilities = CAPABILITIES

    def __init__(self, settings: NatsSettings, client: Client) -> None:
        super().__init__()
        self.settings = settings
        self._nc = client
        self._js = client.jetstream(
            timeout=settings.request_timeout, publish_async_max_pending=_MAX_ASYNC_PENDING
        )
        self._subjects: dict[str, str] = {}  # conveyor streams known to exist -> subject
        self._ensuring: dict[str, asyncio.Future[str | None]] = {}  # stream -> creation
        self._pullers: set[Puller] = set()  # of open sessions, interrupted on disconnect
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
            await within(
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
                budget,
            )
        except asyncio.CancelledError:  # a stop while connecting: no client left behind
            backend._closed = True
            with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
                await asyncio.shield(client.close())
            raise
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            backend._closed = True
            with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
                await client.close()
            seen = "; ".join(backend._errors)
            if isinstance(exc, asyncio.TimeoutError):  # the budget: nats-py retries until it
                why = f"no server answered within {budget:g} s" + (f" ({seen})" if seen else "")
            else:
                why = f"{type(exc).__name__}: {exc}" + (f" (errors: {seen})" if seen else "")
            raise BrokerUnavailableError(
                f"cannot connect to NATS at {settings.redacted_servers()}: {why}"
            ) from None
        backend._errors.clear()
        return backend

    # Connection callbacks: the client reconnects by itself; these make it visible in logs
    # and make reads waiting on the lost connection return at once.

    async def _on_error(self, exc: Exception) -> None:
        # Every failed (re)connect attempt reports here: warn once per kind of error.
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, asyncio.TimeoutError):  # a port that accepts and never greets
            wait = self.settings.connect_timeout
            text += f" (no NATS greeting within connect_timeout={wait:g} s)"
        repeated = text in self._errors
        self._errors[text] = None  # insertion-ordered set, reset once connected
        level = logging.DEBUG if self._closed or repeated else logging.WARNING
        log.log(level, "NATS connection error (%s): %s", self._servers, text)

    async def _on_disconnect(self) -> None:
        if not self._closed:
            self._disconnected_at = time.monotonic()
            log.warning("disconnected from NATS (%s); reconnecting", self._servers)
        for puller in self._pullers:  # their pull requests died with the connection
            puller.interrupt()

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
        return f"NatsBackend(servers={self._servers!r}, {state})"

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

    def _translate(self, action: str) -> contextlib.AbstractContextManager[None]:
        return ERRORS.mapping(action, closed=lambda: self.closed)

    async def _close(self) -> None:
        """Flush outstanding acks, then close the connection (sessions are closed)."""
        try:
            if self._nc.is_connected:
                await self._nc.flush(timeout=max(1, round(self.settings.request_timeout)))
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            log.warning("could not flush acks before closing: %s", type(exc).__name__)
        finally:
            await self._nc.close()

    # -- streams and groups ------------------------------------------------------------

    def _forget_stream(self, stream: str) -> None:
        """`stream` may have been deleted: check (and recreate) it on next use."""
        self._subjects.pop(stream, None)

    async def _ensure_stream(self, stream: str) -> str:
        """Create `stream` on first use (or check the existing one); return its subject.

        Concurrent callers share one creation (a burst of publishes to a new stream asks
        JetStream once).
        """
        while True:
            subject = self._subjects.get(stream)
            if subject is not None:
                return subject
            pending = self._ensuring.get(stream)
            if pending is None:
                break
            subject = await asyncio.shield(pending)  # raises the creation's error
            if subject is not None:
                return subject
            # None: the task creating it was cancelled; try again
        self._check_open()
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._ensuring[stream] = future
        try:
            subject = await self._create_stream(stream)
            self._subjects[stream] = subject
            future.set_result(subject)
            return subject
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" log when nobody waited
            raise
        finally:
            del self._ensuring[stream]
            if not future.done():  # cancelled: the waiters try again themselves
                future.set_result(None)

    async def _create_stream(self, stream: str) -> str:
        want = stream_config(self.settings, self.stream_name(stream), self.subject(stream))
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
        return self.subject(stream)

    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> NatsSession:
        """Create the stream and the group's durable pull consumer if missing (checking an
        existing one), then start the new session's puller.

        An existing consumer is compatible when it has explicit acks, this stream's
        subject, ``ack_wait == claim_idle`` (when given) and a ``max_deliver`` above
        `max_deliveries` (when given). The start position only applies on creation.

        Raises:
            ConfigConflictError: the existing stream or consumer differs; says what and how
                to fix it.
            BrokerUnavailableError: NATS or JetStream cannot be reached.
        """
        await self._ensure_group(stream, group, options)
        puller = Puller(
            self._nc, api.DEFAULT_PREFIX, self.stream_name(stream), self.consumer_name(group)
        )
        with self._translate(f"open consumer {consumer!r} of group {group!r} on {stream!r}"):
            await puller.start()
        self._pullers.add(puller)
        return NatsSession(self, stream, group, consumer, puller)

    async def _ensure_group(self, stream: str, group: str, options: ConsumerOptions) -> None:
        subject = await self._ensure_stream(stream)
        name, durable = self.stream_name(stream), self.consumer_name(group)
        margin = self.settings.max_deliver_margin
        limit = options.max_deliveries
        start_all = options.start == "earliest"
        want = api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            deliver_policy=api.DeliverPolicy.ALL if start_all else api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=options.claim_idle or self.settings.ack_wait,
            max_deliver=-1 if limit is None or margin < 0 else limit + margin,
            filter_subject=subject,
            max_ack_pending=self.settings.max_ack_pending,
        )
        with self._translate(f"create group {group!r} on stream {stream!r}"):
            try:
                info = await self._js.consumer_info(name, durable)
            except nats.js.errors.NotFoundError as exc:
                if exc.err_code == STREAM_NOT_FOUND:  # deleted since we cached it
                    self._forget_stream(stream)
                    await self._ensure_stream(stream)
                elif exc.err_code != CONSUMER_NOT_FOUND:
                    raise
                try:
                    await self._js.add_consumer(name, want)
                    log.info("created JetStream consumer %s on %s (group %r)", durable, name, group)
                    return
                except nats.js.errors.APIError as exc2:
                    if exc2.err_code not in (CONSUMER_NAME_EXISTS, CONSUMER_ALREADY_EXISTS):
                        raise
                    info = await self._js.consumer_info(name, durable)  # lost a race
        problems = consumer_conflicts(info.config, want, options.claim_idle, limit)
        if problems:
            raise ConfigConflictError(
                f"JetStream consumer {durable!r} on stream {name!r} (group {group!r}) exists"
                f" with a different configuration: {'; '.join(problems)}. Fix: delete it"
                f" (nats consumer rm {name} {durable}) so conveyor recreates it, or pass"
                " settings that match it"
            )

    # -- publishing --------------------------------------------------------------------

    async def publish(
        self,
        stream: str,
        data: Payload,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
    ) -> str:
        """Publish one payload, wait for JetStream's PubAck and return the sequence.

        `msg_id` (NATS only) becomes ``Nats-Msg-Id``: a repeat within the stream's
        ``duplicate_window`` is stored once and returns the original sequence.

        Raises:
            UnserializablePayloadError, InvalidHeaderError: see
                `conveyor.protocol.StreamBackend.publish`.
            ConfigurationError: `msg_id` is not a non-empty str.
        """
        if msg_id is None:
            return await super().publish(stream, data, headers=headers)
        self._check_open()
        check_name("stream name", stream)
        checked = check_headers(headers) | _dedup_header(msg_id)
        [entry] = await self._publish(stream, [to_payload(data)], [checked])
        return entry

    async def publish_many(
        self,
        stream: str,
        items: Sequence[dict[str, Any]],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
        msg_ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Publish payloads asynchronously and gather their PubAcks; sequences in order.

        Everything is validated before anything is sent. On an error some payloads may
        have been stored; pass `msg_ids` (NATS only, one per item, see `publish`) to make
        a retry of the whole batch safe.
        """
        if msg_ids is None:
            return await super().publish_many(stream, items, headers=headers)
        self._check_open()
        check_name("stream name", stream)
        checked = check_headers_list(headers, len(items))
        if isinstance(msg_ids, str) or len(msg_ids) != len(items):
            raise ConfigurationError("publish_many: msg_ids must match items one to one")
        per_item = [
            (checked[i] if checked else {}) | _dedup_header(msg_id)
            for i, msg_id in enumerate(msg_ids)
        ]
        if not items:
            return []
        return await self._publish(stream, list(items), per_item)

    async def _publish_many(
        self, stream: str, items: list[dict[str, Any]], headers: list[dict[str, str]] | None
    ) -> list[str]:
        return await self._publish(stream, items, headers)

    async def _publish(
        self,
        stream: str,
        items: Sequence[dict[str, Any]],
        headers: Sequence[dict[str, str]] | None,
    ) -> list[str]:
        """Encode every payload, then publish them all (headers: checked, one per item,
        or None); sequences in order. A stream deleted meanwhile is recreated once."""
        payloads = [encode_json_bytes(item) for item in items]
        sizes = (
            len(p) + header_bytes(headers[i] if headers else None) for i, p in enumerate(payloads)
        )
        check_sizes(stream, sizes, self._nc.max_payload or None, "the server's max_payload")
        for attempt in (1, 2):
            subject = await self._ensure_stream(stream)
            results = await self._publish_batch(stream, subject, payloads, headers)
            errors = [r for r in results if isinstance(r, BaseException)]
            if not errors:
                return [str(r.seq) for r in results if isinstance(r, api.PubAck)]
            no_stream = nats.js.errors.NoStreamResponseError
            if attempt == 1 and all(isinstance(e, no_stream) for e in results):
                self._forget_stream(stream)  # deleted since we checked: recreate
                continue
            self._check_open()
            raise ERRORS.translate(errors[0], f"publish {len(payloads)} payload(s) to {stream!r}")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _publish_batch(
        self,
        stream: str,
        subject: str,
        payloads: list[bytes],
        headers: Sequence[dict[str, str]] | None,
    ) -> list[api.PubAck | BaseException]:
        timeout = self.settings.request_timeout
        futures: list[asyncio.Future[api.PubAck]] = []
        try:
            with self._translate(f"publish to {stream!r}"):
                for index, payload in enumerate(payloads):
                    # Only bound the wait when the window of unacked publishes is full:
                    # a timed wait costs a task per message and flushes every message.
                    full = self._js.publish_async_pending() >= _MAX_ASYNC_PENDING - 1
                    futures.append(
                        await self._js.publish_async(
                            subject,
                            payload,
                            wait_stall=timeout if full else None,
                            headers=(headers[index] or None) if headers else None,
                        )
                    )
                # one wait for all (asyncio.gather wraps each future: a tenth of the time
                # of a batch of a thousand), then each result or error in order
                _, late = await asyncio.wait(futures, timeout=timeout)
                if late:
                    raise asyncio.TimeoutError
                return [f.exception() or f.result() for f in futures]
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    # -- inspection --------------------------------------------------------------------

    async def _group_info(self, stream: str, group: str) -> GroupInfo:
        """``num_ack_pending`` as pending, ``num_pending`` as lag, stream length.

        JetStream does not track workers of a pull consumer: ``consumers`` is empty.
        """
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

    async def _peek(self, stream: str, count: int) -> list[Message]:
        """The last `count` sequences of `stream` (deleted ones skipped), oldest first."""
        name = self.stream_name(stream)
        with self._translate(f"peek stream {stream!r}"):
            state = await self._state(name)
            if state is None or state.messages == 0:
                return []
            first = max(state.first_seq, state.last_seq - count + 1)
            found = await self._get(stream, name, range(first, state.last_seq + 1))
        return found or []

    async def _range(self, stream: str, after: str | None, count: int) -> list[Message]:
        """Sequences after `after`, oldest first (deleted ones skipped), up to `count`."""
        if after is not None and not after.isdigit():
            raise ConfigurationError(f"{after!r} is not a sequence of stream {stream!r}")
        name = self.stream_name(stream)
        out: list[Message] = []
        with self._translate(f"read stream {stream!r}"):
            state = await self._state(name)
            if state is None:
                return []
            cursor = max(state.first_seq, int(after or 0) + 1)
            while len(out) < count and cursor <= state.last_seq:
                stop = min(state.last_seq + 1, cursor + max(count - len(out), _PEEK_CHUNK))
                found = await self._get(stream, name, range(cursor, stop))
                if found is None:
                    return []
                out += found
                cursor = stop
        return out[:count]

    async def _delete(self, stream: str, ids: list[str]) -> int:
        """Delete sequences (``$JS.API.STREAM.MSG.DELETE``); unknown ones are skipped."""
        name = self.stream_name(stream)
        deleted = 0
        with self._translate(f"delete from stream {stream!r}"):
            for seq in (int(i) for i in ids if i.isdigit()):
                try:
                    deleted += bool(await self._js.delete_msg(name, seq))
                except nats.js.errors.APIError as exc:
                    if exc.err_code == STREAM_NOT_FOUND:
                        return deleted
                    if exc.err_code != MESSAGE_NOT_FOUND and exc.code != 400:
                        raise
        return deleted

    async def _delete_stream(self, stream: str) -> bool:
        """JetStream ``STREAM.DELETE`` of the mapped stream (its consumers go with it)."""
        self._forget_stream(stream)
        with self._translate(f"delete stream {stream!r}"):
            try:
                return bool(await self._js.delete_stream(self.stream_name(stream)))
            except nats.js.errors.NotFoundError as exc:
                if exc.err_code == STREAM_NOT_FOUND:
                    return False
                raise

    async def _streams(self) -> list[StreamInfo]:
        """JetStream streams under the prefixes (see `conveyor_nats.discovery`)."""
        with self._translate("list streams"):
            return await list_streams(self._nc, self._js, self.settings)

    async def _groups(self, stream: str) -> list[str]:
        with self._translate(f"list groups of stream {stream!r}"):
            try:
                return await list_groups(self._js, self.stream_name(stream))
            except nats.js.errors.NotFoundError as exc:
                if exc.err_code == STREAM_NOT_FOUND:
                    return []
                raise

    async def _state(self, name: str) -> api.StreamState | None:
        try:
            return (await self._js.stream_info(name)).state
        except nats.js.errors.NotFoundError as exc:
            if exc.err_code == STREAM_NOT_FOUND:
                return None
            raise

    async def _get(self, stream: str, name: str, seqs: range) -> list[Message] | None:
        """The messages at `seqs` (deleted ones skipped); None when the stream vanished."""
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
                        return None  # deleted while we looked
                if isinstance(raw, BaseException):
                    raise raw
                out.append(peeked(stream, raw))
        return out


def _dedup_header(msg_id: object) -> dict[str, str]:
    """``{"Nats-Msg-Id": msg_id}``, checked like any header value."""
    if not isinstance(msg_id, str) or not msg_id:
        raise ConfigurationError(f"msg_id must be a non-empty str, got {msg_id!r:.60}")
    return check_headers({_MSG_ID: msg_id}, reserved=True)


async def open_backend(url: str, options: dict[str, Any]) -> NatsBackend:
    """Entry point for ``nats://`` and ``tls://`` URLs (see `NatsSettings`)."""
    return await NatsBackend.connect(NatsSettings.from_url(url, options))
