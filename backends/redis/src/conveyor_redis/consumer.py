"""`StreamConsumer`: the old module's storage class, over the caller's own redis-py client."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from conveyor.errors import DecodeError
from conveyor_redis.entries import decode_mapping, encode_flat
from conveyor_redis.errors import ERRORS, reply_token

__all__ = ["StreamConsumer"]

log = logging.getLogger("conveyor.redis")


class StreamConsumer:
    """The seed's `StreamStorageProtocol` over an existing ``redis.asyncio.Redis``.

    Drop-in for the old module's class: ``StreamProcessor(StreamConsumer(redis_client,
    stream, group, consumer), stream, group, consumer)``. Stream names are used as Redis
    keys unchanged. The client may decode responses or not, and may use RESP2 or RESP3.
    The caller owns the client (this class never closes it).

    Attributes:
        redis: The caller's client.
        stream_name, group_name, consumer_name: What the old class remembered; the
            methods take their own names, as the protocol says.
    """

    def __init__(
        self, redis_client: Redis, stream_name: str, group_name: str, consumer_name: str
    ) -> None:
        self.redis = redis_client
        self.stream_name = stream_name
        self.group_name = group_name
        self.consumer_name = consumer_name

    def __repr__(self) -> str:
        return (
            f"StreamConsumer(stream={self.stream_name!r}, group={self.group_name!r},"
            f" consumer={self.consumer_name!r})"
        )

    async def create_group(self, stream_name: str, group_name: str) -> None:
        """``XGROUP CREATE <stream> <group> 0 MKSTREAM``; an existing group is success.

        Raises:
            WrongTypeError: the key holds something other than a stream.
            BrokerUnavailableError: Redis cannot be reached.
        """
        action = f"XGROUP CREATE {group_name!r} on {stream_name!r}"
        try:
            await self.redis.xgroup_create(stream_name, group_name, id="0", mkstream=True)
        except ResponseError as exc:
            if reply_token(exc) != "BUSYGROUP":
                raise ERRORS.translate(exc, action) from exc
        except ERRORS.catch as exc:
            raise ERRORS.translate(exc, action) from exc

    async def read_events(
        self, stream_name: str, group_name: str, consumer_name: str, count: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """``XREADGROUP ... STREAMS <stream> >``: up to `count` new entries as ``(id, data)``.

        Does not block. Entries that cannot be decoded are logged and left pending. A
        ``conveyor.headers`` field (headers conveyor wrote) is not part of the payload.

        Raises:
            GroupNotFoundError: the group or the stream is gone (``create_group`` again).
            BrokerUnavailableError: Redis cannot be reached.
        """
        with ERRORS.mapping(f"XREADGROUP on {stream_name!r}"):
            reply = await self.redis.xreadgroup(
                group_name, consumer_name, {stream_name: ">"}, count=count
            )
        out: list[tuple[str, dict[str, Any]]] = []
        for entry_id, fields in _entries(reply):
            text_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            if fields is None:
                continue
            try:
                out.append((text_id, decode_mapping(fields)))
            except DecodeError as exc:
                log.error(
                    "entry %s of stream %r cannot be decoded (%s): left pending",
                    text_id,
                    stream_name,
                    exc,
                )
        return out

    async def ack_event(self, stream_name: str, group_name: str, message_id: str) -> None:
        """``XACK`` one entry; an unknown id is a no-op."""
        with ERRORS.mapping(f"XACK on {stream_name!r}"):
            await self.redis.xack(stream_name, group_name, message_id)

    async def publish(self, stream_name: str, data: dict[str, Any]) -> str:
        """``XADD`` a payload in the old codec's field format; returns the entry id.

        The engine uses it to write dead letters when this class is its storage.
        """
        flat = encode_flat(data)
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        with ERRORS.mapping(f"XADD on {stream_name!r}"):
            entry_id = await self.redis.xadd(stream_name, fields)  # type: ignore[arg-type]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def _entries(reply: Any) -> list[tuple[Any, Any]]:
    """The ``(id, fields)`` pairs of an XREADGROUP reply, whatever its shape.

    redis-py returns ``[[stream, [(id, fields), ...]]]`` on RESP2, and on RESP3 a dict of
    stream to entries (nested one level deeper in some configurations).
    """
    if not reply:
        return []
    groups = list(reply.values()) if isinstance(reply, dict) else [item[1] for item in reply]
    out: list[tuple[Any, Any]] = []
    for entries in groups:
        _collect(entries, out)
    return out


def _collect(items: Any, out: list[tuple[Any, Any]]) -> None:
    for item in items:
        if isinstance(item[0], (str, bytes)):
            out.append((item[0], item[1]))
        else:
            _collect(item, out)
