"""Discovery on Redis: the conveyor streams a `RedisBackend` can address, and their groups.

Streams are keys of type stream under the backend's ``key_prefix`` (``SCAN ... TYPE
stream``; on a cluster, redis-py scans every primary). A key maps back to a conveyor name
only if `RedisSettings.key` maps that name to the same key (the cluster hash tag removed),
so keys conveyor could not have written are left out. Then, per batch of keys, one
pipeline asks ``XLEN``, the first entry (``XRANGE - + COUNT 1``: its id holds its time in
milliseconds) and ``XINFO GROUPS``.

These calls go to the client directly, outside the pool's gate: a listing is a few
sequential round trips, each holding one connection.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from conveyor.discovery import StreamInfo
from conveyor_redis.errors import ERRORS
from conveyor_redis.settings import RedisSettings

if TYPE_CHECKING:
    from conveyor_redis.client import Pool

__all__ = ["list_groups", "list_streams", "stream_of_key"]

_SCAN_COUNT = 1000  # keys a SCAN step looks at
_BATCH = 200  # keys asked about in one pipeline
_GLOB = re.compile(r"([*?\[\]\\])")


def stream_of_key(settings: RedisSettings, key: str) -> str | None:
    """The conveyor stream stored at `key`, or None when conveyor (with `settings`) would
    not have named a stream's key so."""
    prefix = settings.key_prefix
    if not key.startswith(prefix) or len(key) == len(prefix):
        return None
    rest = key[len(prefix) :]
    candidates = [rest]
    if settings.cluster and rest.startswith("{") and "}" in rest:
        tag, _, tail = rest[1:].partition("}")
        candidates.insert(0, tag + tail)
    return next((name for name in candidates if name and settings.key(name) == key), None)


def _oldest(first: Any) -> float | None:
    """Publish time of a raw ``XRANGE`` entry (its id's milliseconds), None if empty."""
    if not first:
        return None
    entry_id = first[0][0]
    millis = (entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)).split("-")[0]
    return int(millis) / 1000 if millis.isdigit() else None


async def list_streams(pool: Pool, settings: RedisSettings) -> list[StreamInfo]:
    """Every conveyor stream under `settings.key_prefix`, with length, oldest entry and
    group names.

    Raises:
        ConveyorError: mapped by `ERRORS` (e.g. `BrokerUnavailableError`).
    """
    pattern = _GLOB.sub(r"\\\1", settings.key_prefix) + "*"
    keys: dict[str, str] = {}
    with ERRORS.mapping("SCAN for streams"):
        async for key in pool.client.scan_iter(match=pattern, count=_SCAN_COUNT, _type="STREAM"):
            name = stream_of_key(settings, key)
            if name is not None:
                keys[key] = name
    out: list[StreamInfo] = []
    ordered = sorted(keys)
    for start in range(0, len(ordered), _BATCH):
        batch = ordered[start : start + _BATCH]
        pipe = pool.pipeline()
        for key in batch:
            pipe.execute_command("XLEN", key)
            pipe.execute_command("XRANGE", key, "-", "+", "COUNT", 1)
            pipe.execute_command("XINFO GROUPS", key)
        with ERRORS.mapping("XINFO on listed streams"):
            replies = await pipe.execute(raise_on_error=False)
        for index, key in enumerate(batch):
            length, first, groups = replies[3 * index : 3 * index + 3]
            if isinstance(groups, ResponseError) and not length:
                continue  # deleted since the SCAN
            for reply in (length, first, groups):
                if isinstance(reply, Exception):
                    raise ERRORS.translate(reply, f"XINFO on {keys[key]!r}") from reply
            names = tuple(sorted(str(g["name"]) for g in groups))
            out.append(StreamInfo(keys[key], int(length), names, _oldest(first)))
    return out


async def list_groups(pool: Pool, settings: RedisSettings, stream: str) -> list[str]:
    """The group names of `stream` (``XINFO GROUPS``); ``[]`` when it does not exist.

    Raises:
        WrongTypeError: the key holds something other than a stream.
    """
    key = settings.key(stream)
    with ERRORS.mapping(f"XINFO GROUPS on {stream!r}"):
        if await pool.command("EXISTS", key) == 0:
            return []
        groups = await pool.command("XINFO GROUPS", key)
    return [str(g["name"]) for g in groups]
