"""`RedisBackend`: conveyor streams and consumer groups on Redis Streams (redis-py asyncio).

The backend creates groups, publishes and inspects; each consumer's reads, acks and claims
go through its `conveyor_redis.session.RedisSession`. Two connection pools share the
settings: one for reads and claims, which redis-py never retries (a lost ``XREADGROUP``
reply's entries sit in the consumer's pending list, and the session re-reads them), and
one for everything else, retried with backoff. Replies of stream commands are parsed by
`conveyor_redis.entries` from the raw RESP2 arrays (hiredis builds them in C) to keep the
read path lean.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import ResponseError

from conveyor.base import BaseBackend, ConsumerOptions, check_sizes
from conveyor.discovery import StreamInfo
from conveyor.errors import BackendError, BrokerUnavailableError, GroupNotFoundError, WrongTypeError
from conveyor.message import Message
from conveyor.protocol import Capabilities, ConsumerInfo, GroupInfo
from conveyor_redis.client import make_pool, pack_args, server_version
from conveyor_redis.discovery import list_groups, list_streams
from conveyor_redis.entries import encode_entry, to_messages
from conveyor_redis.errors import ERRORS, reply_token
from conveyor_redis.retention import (
    ack_command,
    check_ack_delete,
    delete_stream,
    trim_by_age,
    xadd_trim,
)
from conveyor_redis.session import RedisSession
from conveyor_redis.settings import RedisSettings

__all__ = ["CAPABILITIES", "RedisBackend", "open_backend"]

log = logging.getLogger("conveyor.redis")

#: proto-max-bulk-len where the server will not say (its default).
_DEFAULT_BULK_LIMIT = 512 * 1024 * 1024

#: Redis: the engine redelivers (``XCLAIM``) and claims (``XAUTOCLAIM``); reads block.
CAPABILITIES = Capabilities(name="redis", redelivery="engine", claim="engine")


class RedisBackend(BaseBackend):
    """conveyor's ``redis://`` backend. Build it with `open_backend` or from settings.

    Stream ``name`` lives at key ``key_prefix + name`` (with a hash tag on a cluster);
    message ids are Redis entry ids. A consumer reads, acks and claims through the
    `RedisSession` that `open_consumer` returns.
    """

    capabilities = CAPABILITIES

    def __init__(self, settings: RedisSettings) -> None:
        super().__init__()
        self.settings = settings
        self._pool = make_pool(settings, retries=settings.retries)
        self._reader = make_pool(settings, retries=0)
        self._read_claims: bool | None = None  # server has XREADGROUP ... CLAIM (8.4+)
        self._max_bulk: int | None = None  # the server's proto-max-bulk-len

    def __repr__(self) -> str:
        return f"RedisBackend({self.settings.safe_url!r})"

    async def _close(self) -> None:
        """Close both connection pools (sessions were closed first)."""
        try:
            await self._reader.aclose()
        finally:
            await self._pool.aclose()

    def _key(self, stream: str) -> str:
        return self.settings.key(stream)

    # -- the backend interface ---------------------------------------------------------

    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> RedisSession:
        """``XGROUP CREATE ... MKSTREAM`` at ``0`` (earliest) or ``$`` (latest); an existing
        group is success. The session re-reads the consumer's own pending entries first."""
        position = "0" if options.start == "earliest" else "$"
        action = f"XGROUP CREATE {group!r} on {stream!r}"
        try:
            await self._pool.command(
                "XGROUP", "CREATE", self._key(stream), group, position, "MKSTREAM"
            )
        except ResponseError as exc:
            if reply_token(exc) != "BUSYGROUP":
                raise ERRORS.translate(exc, action) from exc
        except ERRORS.catch as exc:
            raise ERRORS.translate(exc, action) from exc
        return RedisSession(self, stream, group, consumer, claim_idle=options.claim_idle)

    def _xadd_head(self, stream: str) -> list[Any]:
        return ["XADD", self._key(stream), *xadd_trim(self.settings), "*"]

    async def _publish_many(
        self, stream: str, items: list[dict[str, Any]], headers: list[dict[str, str]] | None
    ) -> list[str]:
        """``XADD`` each payload (headers as the first field), all encoded to bytes and
        validated first; one round trip (one write of every command, packed here, on a
        single server; a pipeline on a cluster)."""
        fmt = self.settings.payload_format
        if headers is None:
            entries = [encode_entry(item, fmt) for item in items]
        else:
            entries = [encode_entry(item, fmt, h) for item, h in zip(items, headers, strict=True)]
        await self._check_entry_sizes(stream, entries)
        head = self._xadd_head(stream)
        action = f"XADD on {stream!r}"
        trim = trim_by_age(self.settings, self._key(stream))
        if trim is not None:  # maxlen and max_age: XADD trims by one of them only
            with ERRORS.mapping(f"XTRIM on {stream!r}"):
                await self._pool.command(*trim)
        waits = self.settings.wait_replicas
        if len(entries) == 1 and not waits:
            with ERRORS.mapping(action):
                entry_id: str = await self._pool.command(*head, *entries[0])
            return [entry_id]
        if self._pool.packs:
            packed = pack_args([str(part).encode() for part in head], entries)
            count = len(entries)
            if waits:
                timeout_ms = max(1, int(self.settings.wait_timeout * 1000))
                packed += pack_args([], [[b"WAIT", b"%d" % waits, b"%d" % timeout_ms]])
                count += 1
            replies = await self._pool.run_packed(packed, count, action)
        else:
            pipe = self._pool.pipeline()
            for fields in entries:
                pipe.execute_command(*head, *fields)
            if waits:
                self.add_wait(pipe)
            replies = await self._pool.run(pipe, action)
        if waits:
            self.check_wait(replies.pop(), action)
        return replies

    def add_wait(self, pipe: Pipeline | ClusterPipeline) -> None:
        """Append ``WAIT`` for `wait_replicas` to `pipe` (same connection as its writes)."""
        timeout_ms = max(1, int(self.settings.wait_timeout * 1000))
        pipe.execute_command("WAIT", self.settings.wait_replicas, timeout_ms)

    def check_wait(self, confirmed: Any, action: str) -> None:
        """Raise when fewer replicas than `wait_replicas` confirmed the writes."""
        wanted = self.settings.wait_replicas
        if int(confirmed) < wanted:
            raise BrokerUnavailableError(
                f"{action}: {confirmed} of {wanted} replica(s) confirmed the write within"
                f" {self.settings.wait_timeout}s; it is on the primary only and a failover"
                " could lose it (publishing again may store it twice)"
            )

    async def _group_info(self, stream: str, group: str) -> GroupInfo:
        """Pending count, lag (Redis 7+; None where the server cannot tell), length and
        consumers of a group.

        Raises:
            GroupNotFoundError: no such stream or group.
            WrongTypeError: the key holds something other than a stream.
        """
        key = self._key(stream)
        action = f"XINFO on {stream!r}"
        with ERRORS.mapping(action):
            kind = await self._pool.command("TYPE", key)
        if kind == "none":
            raise GroupNotFoundError(f"{action}: no stream {stream!r}")
        if kind != "stream":
            raise WrongTypeError(f"{action}: key holds a {kind}, not a stream")
        pipe = self._pool.pipeline()
        pipe.execute_command("XLEN", key)
        pipe.execute_command("XINFO GROUPS", key)
        pipe.execute_command("XINFO CONSUMERS", key, group)
        length, groups, consumers = await self._pool.run(pipe, action)
        info = next((g for g in groups if g.get("name") == group), None)
        if info is None:
            raise GroupNotFoundError(f"{action}: no group {group!r}")
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

    async def _peek(self, stream: str, count: int) -> list[Message]:
        """The last `count` entries (``XREVRANGE``), oldest first, with ``delivery_count`` 0."""
        with ERRORS.mapping(f"XREVRANGE on {stream!r}"):
            reply = await self._pool.command(
                "XREVRANGE", self._key(stream), "+", "-", "COUNT", count
            )
        messages, _ = to_messages(stream, list(reversed(reply or [])), None)
        for message in messages:
            message.delivery_count = 0
        return messages

    async def _range(self, stream: str, after: str | None, count: int) -> list[Message]:
        """``XRANGE`` after `after` (exclusive), with ``delivery_count`` 0."""
        low = "-" if after is None else "(" + after
        with ERRORS.mapping(f"XRANGE on {stream!r}"):
            reply = await self._pool.command("XRANGE", self._key(stream), low, "+", "COUNT", count)
        messages, _ = to_messages(stream, list(reply or []), None)
        for message in messages:
            message.delivery_count = 0
        return messages

    async def _delete(self, stream: str, ids: list[str]) -> int:
        """``XDEL`` (entries pending in a group stay in its pending list until a consumer
        meets them: then they are acknowledged and logged, as trimmed entries are)."""
        with ERRORS.mapping(f"XDEL on {stream!r}"):
            return int(await self._pool.command("XDEL", self._key(stream), *ids))

    async def _delete_stream(self, stream: str) -> bool:
        """``DEL`` of the stream's key (see `conveyor_redis.retention`)."""
        return await delete_stream(self._pool, self._key(stream), stream)

    async def _streams(self) -> list[StreamInfo]:
        """Stream keys under ``key_prefix`` (see `conveyor_redis.discovery`)."""
        return await list_streams(self._pool, self.settings)

    async def _groups(self, stream: str) -> list[str]:
        return await list_groups(self._pool, self.settings, stream)

    async def _ack_by_id(self, stream: str, group: str, message_id: str) -> None:
        """``XACK`` an id read by an earlier process (the seed's `ack_event`)."""
        with ERRORS.mapping(f"XACK on {stream!r}"):
            ack = ack_command(self._key(stream), group, [message_id], self.settings.ack_delete)
            await self._pool.command(*ack)

    # -- shared with the sessions ------------------------------------------------------

    async def check_sizes(self, stream: str, entries: list[list[str]]) -> None:
        """Refuse an entry over `max_message_bytes` (`PayloadTooLargeError`)."""
        encoded = [[part.encode("utf-8", "surrogateescape") for part in e] for e in entries]
        await self._check_entry_sizes(stream, encoded)

    async def _check_entry_sizes(self, stream: str, entries: list[list[bytes]]) -> None:
        limit = self.settings.max_message_bytes
        name = "max_message_bytes"
        if limit is None:
            limit, name = await self._bulk_limit(), "the server's proto-max-bulk-len"
        check_sizes(stream, (sum(map(len, e)) for e in entries), limit, name)

    async def _bulk_limit(self) -> int:
        """``proto-max-bulk-len``, asked once (512 MiB where CONFIG is not allowed)."""
        if self._max_bulk is None:
            try:
                with ERRORS.mapping("CONFIG GET proto-max-bulk-len"):
                    reply = await self._pool.command("CONFIG", "GET", "proto-max-bulk-len")
                values = list(reply.values()) if isinstance(reply, dict) else list(reply)[1:]
                self._max_bulk = int(values[0])
            except BrokerUnavailableError:
                raise
            except (BackendError, IndexError, ValueError) as exc:
                log.debug("proto-max-bulk-len unknown (%s): assuming 512 MiB", exc)
                self._max_bulk = _DEFAULT_BULK_LIMIT
        return self._max_bulk

    async def _server_claims_in_read(self) -> bool:
        """Whether the server has ``XREADGROUP ... CLAIM`` (Redis 8.4+), asked once."""
        if self._read_claims is None:
            try:
                with ERRORS.mapping("INFO server"):
                    info = await self._pool.info("server")
            except BrokerUnavailableError:
                raise
            except BackendError as exc:  # e.g. an ACL without INFO: use XAUTOCLAIM
                log.warning("cannot ask the server version (%s): claiming with XAUTOCLAIM", exc)
                info = {}
            self._read_claims = server_version(info) >= (8, 4)
        return self._read_claims


async def open_backend(url: str, options: dict[str, Any]) -> RedisBackend:
    """Entry point for ``redis://``, ``rediss://``, ``redis+cluster://``, ``rediss+cluster://``.

    Raises:
        ConfigurationError: an invalid URL or option, or ``ack_delete`` on a server
            older than Redis 8.2.
    """
    backend = RedisBackend(RedisSettings.from_url(url, options))
    if backend.settings.ack_delete:
        try:
            await check_ack_delete(backend._pool, backend.settings)
        except BaseException:
            await backend.aclose()
            raise
    return backend
