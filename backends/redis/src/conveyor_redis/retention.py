"""Retention on Redis: trimming on publish, deleting acknowledged entries, dropping streams.

* ``maxlen`` → ``XADD ... MAXLEN ~ n``; ``max_age`` → ``XADD ... MINID ~ <ms>`` (Redis 6.2+),
  the threshold being now minus `max_age` by this client's clock (entry ids carry the
  server's milliseconds: keep the clocks in sync). ``XADD`` takes one trim strategy, so
  with both options the ``XADD`` trims by length and an ``XTRIM ... MINID`` goes first.
  ``~`` (the default) lets Redis trim whole macro nodes only (100 entries by default), so a
  stream may keep somewhat more than asked; ``exact_maxlen=true`` trims exactly (``=``).
* ``ack_delete`` → acks are ``XACKDEL key group ACKED IDS n id...`` (Redis 8.2+): an entry
  is deleted once every group of the stream has acknowledged it. Checked against the
  server's version when the backend opens (`check_ack_delete`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from conveyor.errors import ConfigurationError, WrongTypeError
from conveyor_redis.client import Pool, server_version
from conveyor_redis.errors import ERRORS
from conveyor_redis.settings import RedisSettings

__all__ = [
    "ACK_DELETE_VERSION",
    "ack_command",
    "check_ack_delete",
    "delete_stream",
    "min_id",
    "trim_by_age",
    "xadd_trim",
]

#: The first Redis version with ``XACKDEL`` (and ``KEEPREF``/``DELREF``/``ACKED``).
ACK_DELETE_VERSION = (8, 2)


def min_id(max_age: float, now: float) -> str:
    """The ``MINID`` threshold keeping entries younger than `max_age` seconds at `now`:
    entry ids are ``<milliseconds>-<seq>``, and a bare millisecond count means ``ms-0``."""
    return str(max(0, int((now - max_age) * 1000)))


def xadd_trim(settings: RedisSettings, now: float | None = None) -> list[Any]:
    """The trim clause of an ``XADD`` (empty: keep everything)."""
    mode = "=" if settings.exact_maxlen else "~"
    if settings.maxlen is not None:
        return ["MAXLEN", mode, settings.maxlen]
    if settings.max_age is not None:
        return ["MINID", mode, min_id(settings.max_age, time.time() if now is None else now)]
    return []


def trim_by_age(settings: RedisSettings, key: str, now: float | None = None) -> list[Any] | None:
    """The ``XTRIM ... MINID`` sent before the ``XADD``s when both `maxlen` (in the
    ``XADD``) and `max_age` are set; None otherwise."""
    if settings.maxlen is None or settings.max_age is None:
        return None
    mode = "=" if settings.exact_maxlen else "~"
    threshold = min_id(settings.max_age, time.time() if now is None else now)
    return ["XTRIM", key, "MINID", mode, threshold]


def ack_command(key: str, group: str, ids: Sequence[str], ack_delete: bool) -> list[Any]:
    """``XACK key group id...``, or with `ack_delete` ``XACKDEL key group ACKED IDS n
    id...``: acknowledge, and delete the entries no group still needs."""
    if not ack_delete:
        return ["XACK", key, group, *ids]
    return ["XACKDEL", key, group, "ACKED", "IDS", len(ids), *ids]


def _version_text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version)) if version != (0,) else "unknown"


async def check_ack_delete(pool: Pool, settings: RedisSettings) -> None:
    """Refuse ``ack_delete`` on a server older than 8.2 (asked with ``INFO server``).

    Raises:
        ConfigurationError: the server (or a cluster node) is older than 8.2, or will not
            say its version.
        BrokerUnavailableError: the server cannot be reached.
    """
    with ERRORS.mapping("INFO server"):
        info = await pool.info("server")
    version = server_version(info)
    if version < ACK_DELETE_VERSION:
        raise ConfigurationError(
            f"{settings.scheme}:// option ack_delete=true needs Redis 8.2+ (XACKDEL), this"
            f" server is {_version_text(version)}"
        )


async def delete_stream(pool: Pool, key: str, stream: str) -> bool:
    """``DEL`` the stream's key (entries, groups and pending lists); whether it existed.

    Raises:
        WrongTypeError: the key holds something other than a stream (left alone).
    """
    action = f"DEL of stream {stream!r}"
    with ERRORS.mapping(action):
        kind = await pool.command("TYPE", key)
        if kind == "none":
            return False
        if kind != "stream":
            raise WrongTypeError(f"{action}: key holds a {kind}, not a stream")
        return bool(await pool.command("DEL", key))
