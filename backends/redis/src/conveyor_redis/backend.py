"""`RedisBackend`: conveyor streams and consumer groups on Redis Streams (redis-py asyncio).

Two clients share the settings: one for reads and claims, which redis-py never retries (a
lost ``XREADGROUP`` reply's entries sit in this consumer's pending list; after any failed
or cancelled read the next read starts again from the consumer's own pending entries),
and one for everything else, retried with backoff. Replies of stream commands are parsed
here from the raw RESP2 arrays (hiredis builds them in C) to keep the read path lean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    DecodeError,
    GroupNotFoundError,
    WrongTypeError,
)
from conveyor.message import Message
from conveyor.protocol import Capabilities, ConsumerInfo, GroupInfo, StartPosition
from conveyor_redis.client import make_client, server_version
from conveyor_redis.entries import decode_flat, encode_flat
from conveyor_redis.errors import reply_token, translate, translating
from conveyor_redis.settings import RedisSettings

__all__ = ["CAPABILITIES", "RedisBackend", "open_backend"]

log = logging.getLogger("conveyor.redis")

CAPABILITIES = Capabilities(
    name="redis",
    redelivery="engine",
    claim="engine",
    exact_delivery_count=True,
    ordering="stream",
    claim_granularity=0.001,
)

#: XAUTOCLAIM calls per `claim_stale` at most (each scans up to 10 x COUNT entries).
_MAX_CLAIM_SCANS = 32


class RedisBackend:
    """conveyor's ``redis://`` backend. Build it with `open_backend` or from settings.

    Stream ``name`` lives at key ``key_prefix + name`` (with a hash tag on a cluster);
    message ids are Redis entry ids.
    """

    capabilities = CAPABILITIES

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self._client = make_client(settings, retries=settings.retries)
        self._reader = make_client(settings, retries=0)
        self._closed = False
        # (stream, group, consumer) seen by `read`; those re-reading their own pending
        # entries map to the last id re-read.
        self._started: set[tuple[str, str, str]] = set()
        self._recovering: dict[tuple[str, str, str], str] = {}
        self._claim_cursor: dict[tuple[str, str], str] = {}
        # claim_idle (ms) per (stream, group) from ensure_group, used by XREADGROUP CLAIM
        self._claim_idle: dict[tuple[str, str], int] = {}
        self._read_claims: bool | None = None  # server has XREADGROUP ... CLAIM (8.4+)

    def __repr__(self) -> str:
        return f"RedisBackend({self.settings.safe_url!r})"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> RedisBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close both connection pools. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._reader.aclose()
        finally:
            await self._client.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosedError(f"{self!r} is closed")

    def _key(self, stream: str) -> str:
        return self.settings.key(stream)

    async def _execute(self, pipe: Pipeline | ClusterPipeline, context: str) -> list[Any]:
        with translating(context):
            results: list[Any] = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception):
                raise translate(result, context) from result
        return results

    def _messages(
        self, stream: str, entries: list[Any], counts: dict[str, int] | None
    ) -> tuple[list[Message], list[str]]:
        """Messages from raw ``[id, [field, value, ...]]`` entries, and ids of deleted ones."""
        out: list[Message] = []
        gone: list[str] = []
        for entry in entries:
            if not entry:
                continue
            entry_id, flat = entry[0], entry[1]
            if flat is None:
                gone.append(entry_id)
                continue
            if counts is not None:
                count = counts.get(entry_id, 2)
            elif len(entry) > 3:  # XREADGROUP ... CLAIM: [id, fields, idle, previous count]
                count = int(entry[3]) + 1
            else:
                count = 1
            try:
                data = decode_flat(flat)
            except DecodeError as exc:
                it = iter(flat)
                raw = dict(zip(it, it, strict=False))
                at = int(entry_id.partition("-")[0]) / 1000
                out.append(Message(entry_id, stream, {}, count, at, str(exc), raw))
                continue
            at = int(entry_id.partition("-")[0]) / 1000  # the id's milliseconds part
            out.append(Message(entry_id, stream, data, count, at))
        return out, gone

    async def _drop_gone(self, stream: str, group: str, ids: list[str]) -> None:
        log.warning(
            "%d entr%s of stream %r deleted or trimmed while pending in group %r:"
            " acknowledged without delivery (%s)",
            len(ids),
            "y" if len(ids) == 1 else "ies",
            stream,
            group,
            ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""),
        )
        with translating(f"XACK on {stream!r}"):
            await self._client.execute_command("XACK", self._key(stream), group, *ids)

    async def _counts(self, stream: str, group: str, ids: Sequence[str]) -> dict[str, int]:
        """Delivery counts of pending `ids` from the PEL (one round trip)."""
        if not ids:
            return {}
        key = self._key(stream)
        pipe = self._client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.execute_command("XPENDING", key, group, entry_id, entry_id, 1)
        rows = await self._execute(pipe, f"XPENDING on {stream!r}")
        return {row[0][0]: int(row[0][3]) for row in rows if row}

    # -- the seed protocol -------------------------------------------------------------

    async def create_group(self, stream_name: str, group_name: str) -> None:
        """Create the group at the start of the stream; an existing group is success."""
        await self.ensure_group(stream_name, group_name)

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Read up to `count` entries without blocking, as ``(id, payload)``.

        Entries that cannot be decoded are logged and left pending (the seed protocol
        cannot report them); a `StreamProcessor` on this backend dead-letters them.
        """
        messages = await self.read(stream_name, group_name, consumer_name, count=count, block=None)
        out = []
        for message in messages:
            if message.decode_error is not None:
                log.error(
                    "entry %s of stream %r cannot be decoded (%s): left pending",
                    message.id,
                    stream_name,
                    message.decode_error,
                )
                continue
            out.append((message.id, message.data))
        return out

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        """Acknowledge one entry (``XACK``); unknown ids are a no-op."""
        self._check_open()
        with translating(f"XACK on {stream_name!r}"):
            await self._client.execute_command(
                "XACK", self._key(stream_name), group_name, message_id
            )

    # -- groups and publishing ---------------------------------------------------------

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
        """``XGROUP CREATE ... MKSTREAM`` at ``0`` (earliest) or ``$`` (latest).

        An existing group is success. `consumer` (every consumer of the group when None)
        re-reads its own pending entries on its next `read`. On servers with
        ``XREADGROUP ... CLAIM`` (Redis 8.4+) `claim_idle` makes `read` claim idle entries
        itself (and `claim_stale` return nothing for this group).
        """
        self._check_open()
        if claim_idle is not None:
            self._claim_idle[(stream, group)] = max(1, int(claim_idle * 1000))
        for started in [
            k
            for k in self._started
            if k[:2] == (stream, group) and (consumer is None or k[2] == consumer)
        ]:
            self._started.discard(started)
            self._recovering.pop(started, None)
        position = "0" if start == "earliest" else "$"
        context = f"XGROUP CREATE {group!r} on {stream!r}"
        try:
            await self._client.execute_command(
                "XGROUP", "CREATE", self._key(stream), group, position, "MKSTREAM"
            )
        except ResponseError as exc:
            if reply_token(exc) == "BUSYGROUP":
                return
            raise translate(exc, context) from exc
        except (RedisError, OSError) as exc:
            raise translate(exc, context) from exc

    def _xadd_head(self, stream: str) -> list[Any]:
        head: list[Any] = ["XADD", self._key(stream)]
        if self.settings.maxlen is not None:
            head += ["MAXLEN", "=" if self.settings.exact_maxlen else "~", self.settings.maxlen]
        head.append("*")
        return head

    async def publish(self, stream: str, data: dict[str, Any]) -> str:
        """``XADD`` one payload; returns its entry id."""
        self._check_open()
        fields = encode_flat(data, self.settings.payload_format)
        with translating(f"XADD on {stream!r}"):
            entry_id: str = await self._client.execute_command(*self._xadd_head(stream), *fields)
        return entry_id

    async def publish_many(self, stream: str, items: Sequence[dict[str, Any]]) -> list[str]:
        """``XADD`` payloads in one pipelined round trip; all are validated first."""
        self._check_open()
        encoded = [encode_flat(item, self.settings.payload_format) for item in items]
        if not encoded:
            return []
        head = self._xadd_head(stream)
        pipe = self._client.pipeline(transaction=False)
        for fields in encoded:
            pipe.execute_command(*head, *fields)
        return await self._execute(pipe, f"XADD on {stream!r}")

    # -- reading -----------------------------------------------------------------------

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block: float | None
    ) -> list[Message]:
        """Own pending entries first (after a start, reconnect or group re-creation), then
        new ones with ``XREADGROUP ... BLOCK`` (capped at ``max_block``).

        Raises:
            GroupNotFoundError: the group or its stream was deleted.
            BrokerUnavailableError: the connection failed; nothing delivered is lost, the
                next read re-reads this consumer's pending entries.
        """
        self._check_open()
        state = (stream, group, consumer)
        if state not in self._started:
            self._started.add(state)
            self._recovering[state] = "0"
        ok = False
        try:
            if state in self._recovering:
                own = await self._read_own(state, count)
                if own:
                    ok = True
                    return own
            messages = await self._read_new(stream, group, consumer, count, block)
            ok = True
            return messages
        except BrokerUnavailableError as exc:
            if self._closed:  # aclose() cut a blocked read
                raise BackendClosedError(f"{self!r} was closed during a read") from exc
            raise
        finally:
            if not ok:  # failed or cancelled: entries may be in flight to nobody
                self._started.discard(state)
                self._recovering.pop(state, None)

    async def _read_own(self, state: tuple[str, str, str], count: int) -> list[Message]:
        stream, group, consumer = state
        key = self._key(stream)
        while True:
            cursor = self._recovering.get(state)
            if cursor is None:  # re-armed or finished by a concurrent call meanwhile
                return []
            pipe = self._reader.pipeline(transaction=False)
            pipe.execute_command(
                "XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", key, cursor
            )
            low = "-" if cursor == "0" else "(" + cursor
            pipe.execute_command("XPENDING", key, group, low, "+", count, consumer)
            reply, pending = await self._execute(pipe, f"XREADGROUP on {stream!r}")
            entries = reply[0][1] if reply else []
            if not entries:
                self._recovering.pop(state, None)
                return []
            self._recovering[state] = entries[-1][0]
            counts = {row[0]: int(row[3]) for row in pending}
            messages, gone = self._messages(stream, entries, counts)
            if gone:
                await self._drop_gone(stream, group, gone)
            if messages:
                return messages

    async def _read_new(
        self, stream: str, group: str, consumer: str, count: int, block: float | None
    ) -> list[Message]:
        args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
        if block:
            args += ["BLOCK", max(1, int(min(block, self.settings.max_block) * 1000))]
        claim_ms = self._claim_idle.get((stream, group))
        if claim_ms is not None and await self._server_claims_in_read():
            args += ["CLAIM", claim_ms]
        args += ["STREAMS", self._key(stream), ">"]
        with translating(f"XREADGROUP on {stream!r}"):
            reply = await self._reader.execute_command(*args)
        if not reply:
            return []
        messages, gone = self._messages(stream, reply[0][1], None)
        if gone:
            await self._drop_gone(stream, group, gone)
        return messages

    async def ack(self, stream: str, group: str, messages: Sequence[Message]) -> None:
        """One multi-id ``XACK`` for the batch."""
        self._check_open()
        if not messages:
            return
        with translating(f"XACK on {stream!r}"):
            await self._client.execute_command(
                "XACK", self._key(stream), group, *[m.id for m in messages]
            )

    # -- redelivery and recovery -------------------------------------------------------

    async def redeliver(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> list[Message]:
        """``XCLAIM`` the messages to `consumer` (delivery count + 1), fresh from the stream.

        Entries no longer pending (acknowledged) are left out; entries deleted or trimmed
        while pending are acknowledged, logged and left out.
        """
        self._check_open()
        ids = [m.id for m in messages]
        if not ids:
            return []
        key = self._key(stream)
        pipe = self._reader.pipeline(transaction=False)
        for entry_id in ids:
            pipe.execute_command("XPENDING", key, group, entry_id, entry_id, 1)
        pipe.execute_command("XCLAIM", key, group, consumer, 0, *ids)
        for entry_id in ids:
            pipe.execute_command("XPENDING", key, group, entry_id, entry_id, 1)
        results = await self._execute(pipe, f"XCLAIM on {stream!r}")
        before = results[: len(ids)]
        claimed = results[len(ids)]
        counts = {row[0][0]: int(row[0][3]) for row in results[len(ids) + 1 :] if row}
        out, gone = self._messages(stream, claimed, counts)
        returned = {m.id for m in out}
        gone += [
            i
            for i, row in zip(ids, before, strict=True)
            if row and i not in returned and i not in gone
        ]
        if gone:
            await self._drop_gone(stream, group, gone)
        return out

    async def nack(self, stream: str, group: str, message: Message, *, delay: float) -> None:
        """Not used on Redis (``redelivery == "engine"``): the engine calls `redeliver`."""
        raise NotImplementedError("redis:// redelivers through redeliver() (redelivery='engine')")

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Message]:
        """``XAUTOCLAIM`` up to `count` entries idle `min_idle` seconds, from any consumer.

        The scan cursor is kept between calls (like ``SCAN``). Deleted entries found on
        the way are acknowledged and logged.
        """
        self._check_open()
        where = (stream, group)
        if where in self._claim_idle and await self._server_claims_in_read():
            return []  # `read` claims with XREADGROUP ... CLAIM
        key = self._key(stream)
        idle_ms = max(0, int(min_idle * 1000))
        entries: list[Any] = []
        gone: list[str] = []
        with translating(f"XAUTOCLAIM on {stream!r}"):
            for _ in range(_MAX_CLAIM_SCANS):
                cursor = self._claim_cursor.get(where, "0-0")
                reply = await self._reader.execute_command(
                    "XAUTOCLAIM", key, group, consumer, idle_ms, cursor,
                    "COUNT", count - len(entries),
                )  # fmt: skip
                self._claim_cursor[where] = reply[0]
                entries += reply[1]
                if len(reply) > 2:
                    gone += reply[2]
                if reply[0] == "0-0" or len(entries) >= count:
                    break
        counts = await self._counts(stream, group, [e[0] for e in entries if e and e[1]])
        out, deleted = self._messages(stream, entries, counts)
        gone += deleted
        if gone:
            await self._drop_gone(stream, group, gone)
        return out

    async def _server_claims_in_read(self) -> bool:
        """Whether the server has ``XREADGROUP ... CLAIM`` (Redis 8.4+), asked once."""
        if self._read_claims is None:
            try:
                with translating("INFO server"):
                    info = await self._client.info("server")
            except BrokerUnavailableError:
                raise
            except BackendError as exc:  # e.g. an ACL without INFO: use XAUTOCLAIM
                log.warning("cannot ask the server version (%s): claiming with XAUTOCLAIM", exc)
                info = {}
            self._read_claims = server_version(info) >= (8, 4)
        return self._read_claims

    async def heartbeat(
        self, stream: str, group: str, consumer: str, messages: Sequence[Message]
    ) -> None:
        """``XCLAIM ... 0 ... JUSTID`` to `consumer`: resets idle times without counting a
        delivery, so `claim_stale` elsewhere leaves these messages alone."""
        self._check_open()
        if not messages:
            return
        with translating(f"XCLAIM on {stream!r}"):
            await self._client.execute_command(
                "XCLAIM", self._key(stream), group, consumer, 0,
                *[m.id for m in messages], "JUSTID",
            )  # fmt: skip

    async def dead_letter(
        self,
        stream: str,
        group: str,
        message: Message,
        *,
        dead_letter_stream: str,
        record: dict[str, Any],
    ) -> str:
        """``XADD`` the record to the dead-letter stream and ``XACK`` the message in one
        ``MULTI``/``EXEC`` (on a cluster: when both keys share a slot; otherwise the
        ``XADD`` strictly before the ``XACK``). Returns the dead-letter entry id."""
        self._check_open()
        fields = encode_flat(record, self.settings.payload_format)
        key, dead_key = self._key(stream), self._key(dead_letter_stream)
        context = f"dead letter of {message.id} from {stream!r} to {dead_letter_stream!r}"
        if self.settings.cluster and key_slot(key.encode()) != key_slot(dead_key.encode()):
            with translating(context):
                dead_id: str = await self._client.execute_command("XADD", dead_key, "*", *fields)
                await self._client.execute_command("XACK", key, group, message.id)
            return dead_id
        pipe = self._client.pipeline(transaction=True)
        pipe.execute_command("XADD", dead_key, "*", *fields)
        pipe.execute_command("XACK", key, group, message.id)
        results = await self._execute(pipe, context)
        return str(results[0])

    # -- inspection --------------------------------------------------------------------

    async def group_info(self, stream: str, group: str) -> GroupInfo:
        """Pending count, lag (Redis 7+; None where the server cannot tell), length and
        consumers of a group.

        Raises:
            GroupNotFoundError: no such stream or group.
            WrongTypeError: the key holds something other than a stream.
        """
        self._check_open()
        key = self._key(stream)
        context = f"XINFO on {stream!r}"
        with translating(context):
            kind = await self._client.execute_command("TYPE", key)
        if kind == "none":
            raise GroupNotFoundError(f"{context}: no stream {stream!r}")
        if kind != "stream":
            raise WrongTypeError(f"{context}: key holds a {kind}, not a stream")
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command("XLEN", key)
        pipe.execute_command("XINFO GROUPS", key)
        pipe.execute_command("XINFO CONSUMERS", key, group)
        length, groups, consumers = await self._execute(pipe, context)
        info = next((g for g in groups if g.get("name") == group), None)
        if info is None:
            raise GroupNotFoundError(f"{context}: no group {group!r}")
        lag = info.get("lag")
        return GroupInfo(
            stream=stream,
            group=group,
            pending=int(info.get("pending", 0)),
            lag=None if lag is None else int(lag),
            length=int(length),
            consumers=tuple(
                ConsumerInfo(str(c["name"]), int(c["pending"]), int(c["idle"]) / 1000)
                for c in consumers
            ),
        )

    async def peek(self, stream: str, *, count: int) -> list[Message]:
        """The last `count` entries, oldest first, with ``delivery_count`` 0."""
        self._check_open()
        with translating(f"XREVRANGE on {stream!r}"):
            reply = await self._client.execute_command(
                "XREVRANGE", self._key(stream), "+", "-", "COUNT", count
            )
        messages, _ = self._messages(stream, list(reversed(reply or [])), None)
        for message in messages:
            message.delivery_count = 0
        return messages


async def open_backend(url: str, options: dict[str, Any]) -> RedisBackend:
    """Entry point for ``redis://``, ``rediss://``, ``redis+cluster://``, ``rediss+cluster://``.

    Raises:
        ConfigurationError: an invalid URL or option.
    """
    return RedisBackend(RedisSettings.from_url(url, options))
