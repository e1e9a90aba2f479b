"""`RedisSession`: one consumer of one group, as `RedisBackend.open_consumer` opens it.

A new session first re-reads its consumer's own pending entries (``XREADGROUP ... 0``,
paging by the last id, delivery counts from ``XPENDING`` in the same round trip), then
reads new ones (``XREADGROUP ... BLOCK ... >``). A read that fails or is cancelled may
have lost a reply whose entries the server already moved to this consumer's pending list,
so the next read starts over from the own pending entries. Closing the session releases
nothing on Redis (a consumer is just a name there); it ends a blocked read at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.crc import key_slot

from conveyor.base import BaseSession
from conveyor.errors import BackendClosedError
from conveyor.message import Message
from conveyor_redis.entries import encode_flat, to_messages
from conveyor_redis.errors import ERRORS
from conveyor_redis.retention import ack_command

if TYPE_CHECKING:
    from conveyor_redis.backend import RedisBackend

__all__ = ["RedisSession"]

log = logging.getLogger("conveyor.redis")

#: XAUTOCLAIM calls per `claim_stale` at most (each scans up to 10 x COUNT entries).
_MAX_CLAIM_SCANS = 32


def _uncancel(task: asyncio.Task[Any]) -> int:
    """`Task.uncancel()` where it exists (3.11+): the cancel requests left."""
    uncancel = getattr(task, "uncancel", None)
    return int(uncancel()) if uncancel is not None else 0


class RedisSession(BaseSession):
    """One consumer of one Redis consumer group (see `conveyor.protocol.ConsumerSession`).

    Args:
        claim_idle: On servers with ``XREADGROUP ... CLAIM`` (Redis 8.4+), `read` claims
            entries idle this many seconds itself and `claim_stale` returns nothing.
    """

    backend: RedisBackend

    def __init__(
        self,
        backend: RedisBackend,
        stream: str,
        group: str,
        consumer: str,
        *,
        claim_idle: float | None = None,
    ) -> None:
        super().__init__(backend, stream, group, consumer)
        self._key = backend.settings.key(stream)
        self._pool = backend._pool
        self._reader = backend._reader
        self._max_block = backend.settings.max_block
        self._claim_ms = None if claim_idle is None else max(1, int(claim_idle * 1000))
        # own pending entries are re-read after this id; None: done
        self._recovering: str | None = "0"
        self._claim_cursor = "0-0"  # XAUTOCLAIM's, kept between calls like SCAN's
        self._blocked: set[asyncio.Task[Any]] = set()  # tasks in a blocking XREADGROUP
        self._cut: set[asyncio.Task[Any]] = set()  # ... that `_close` cancelled
        self._read_action = f"XREADGROUP on {stream!r}"
        self._ack_action = f"XACK on {stream!r}"

    def _is_closed(self) -> bool:
        return self.closed

    async def _close(self) -> None:
        """End a blocked read now (it raises `BackendClosedError`); entries it had been
        handed stay in this consumer's pending list."""
        for task in self._blocked:
            self._cut.add(task)
            task.cancel()

    # -- reading -----------------------------------------------------------------------

    async def read(self, *, count: int, block: float | None) -> list[Message]:
        """Own pending entries first (for a new session, and after a failed or cancelled
        read), then new ones with ``XREADGROUP ... BLOCK`` (capped at ``max_block``).

        Raises:
            GroupNotFoundError: the group or its stream was deleted.
            BrokerUnavailableError: the connection failed; nothing delivered is lost, the
                next read re-reads this consumer's pending entries.
            BackendClosedError: the session or backend is (or was meanwhile) closed.
        """
        self._check_open()
        ok = False
        try:
            messages = await self._read_own(count) if self._recovering is not None else []
            if not messages:
                messages = await self._read_new(count, block)
            ok = True
        finally:
            if not ok:  # failed or cancelled: entries may be in flight to nobody
                self._recovering = "0"
        if messages and self.closed:  # closed meanwhile: they stay pending for this consumer
            raise BackendClosedError(f"{self!r} was closed during a read")
        return messages

    async def _read_own(self, count: int) -> list[Message]:
        key, group, consumer = self._key, self.group, self.consumer
        while True:
            cursor = self._recovering
            if cursor is None:  # finished by a concurrent read meanwhile
                return []
            pipe = self._reader.pipeline()
            pipe.execute_command(
                "XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", key, cursor
            )
            low = "-" if cursor == "0" else "(" + cursor
            pipe.execute_command("XPENDING", key, group, low, "+", count, consumer)
            reply, pending = await self._reader.run(pipe, self._read_action, self._is_closed)
            entries = reply[0][1] if reply else []
            if not entries:
                self._recovering = None
                return []
            self._recovering = entries[-1][0]
            counts = {row[0]: int(row[3]) for row in pending}
            messages, gone = to_messages(self.stream, entries, counts)
            if gone:
                await self._drop_gone(gone)
            if messages:
                return messages

    async def _read_new(self, count: int, block: float | None) -> list[Message]:
        args: list[Any] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count]
        if block:
            args += ["BLOCK", max(1, int(min(block, self._max_block) * 1000))]
        if self._claim_ms is not None and await self.backend._server_claims_in_read():
            args += ["CLAIM", self._claim_ms]
        args += ["STREAMS", self._key, ">"]
        # A blocking read registers its task, so that `_close` can cut it short by
        # cancelling it while (and only while) it waits here.
        task = asyncio.current_task() if block else None
        if task is not None:
            self._blocked.add(task)
        try:
            with ERRORS.mapping(self._read_action, closed=self._is_closed):
                reply = await self._reader.command(*args)
        except asyncio.CancelledError:
            if task is None or task not in self._cut:
                raise
            self._cut.discard(task)
            if _uncancel(task):  # also cancelled by someone else: honour that
                raise
            raise BackendClosedError(f"{self!r} was closed during a read") from None
        finally:
            if task is not None:
                self._blocked.discard(task)
        if not reply:
            return []
        messages, gone = to_messages(self.stream, reply[0][1], None)
        if gone:
            await self._drop_gone(gone)
        return messages

    async def _drop_gone(self, ids: list[str]) -> None:
        log.warning(
            "%d entr%s of stream %r deleted or trimmed while pending in group %r:"
            " acknowledged without delivery (%s)",
            len(ids),
            "y" if len(ids) == 1 else "ies",
            self.stream,
            self.group,
            ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""),
        )
        with ERRORS.mapping(self._ack_action):
            await self._pool.command(*self._ack(ids))

    # -- acknowledging and redelivering ------------------------------------------------

    def _ack(self, ids: Sequence[str], key: str | None = None) -> list[Any]:
        """``XACK`` (``XACKDEL ... ACKED`` with ``ack_delete``) of `ids`."""
        ack_delete = self.backend.settings.ack_delete
        return ack_command(key or self._key, self.group, ids, ack_delete)

    async def ack(self, messages: Sequence[Message]) -> None:
        """One multi-id ``XACK`` for the batch (``XACKDEL ... ACKED`` with ``ack_delete``);
        unknown or acked ids are a no-op."""
        self._check_open()
        if not messages:
            return
        with ERRORS.mapping(self._ack_action):
            await self._pool.command(*self._ack([m.id for m in messages]))

    async def redeliver(self, messages: Sequence[Message]) -> list[Message]:
        """``XCLAIM`` the messages to this consumer (delivery count + 1), fresh from the
        stream, with exact counts from ``XPENDING`` in the same pipeline.

        Entries no longer pending (acknowledged) are left out; entries deleted or trimmed
        while pending are acknowledged, logged and left out.
        """
        self._check_open()
        ids = [m.id for m in messages]
        if not ids:
            return []
        key, group = self._key, self.group
        pipe = self._reader.pipeline()
        for entry_id in ids:
            pipe.execute_command("XPENDING", key, group, entry_id, entry_id, 1)
        pipe.execute_command("XCLAIM", key, group, self.consumer, 0, *ids)
        for entry_id in ids:
            pipe.execute_command("XPENDING", key, group, entry_id, entry_id, 1)
        results = await self._reader.run(pipe, f"XCLAIM on {self.stream!r}")
        before = results[: len(ids)]
        claimed = results[len(ids)]
        counts = {row[0][0]: int(row[0][3]) for row in results[len(ids) + 1 :] if row}
        out, gone = to_messages(self.stream, claimed, counts)
        returned = {m.id for m in out}
        gone += [
            i
            for i, row in zip(ids, before, strict=True)
            if row and i not in returned and i not in gone
        ]
        if gone:
            await self._drop_gone(gone)
        return out

    # -- claiming and heartbeats -------------------------------------------------------

    async def claim_stale(self, *, min_idle: float, count: int) -> list[Message]:
        """``XAUTOCLAIM`` up to `count` entries idle `min_idle` seconds, from any consumer.

        The scan cursor is kept between calls (like ``SCAN``). Deleted entries found on
        the way are acknowledged and logged. Returns nothing where `read` claims with
        ``XREADGROUP ... CLAIM`` (Redis 8.4+ and a `claim_idle`).
        """
        self._check_open()
        if self._claim_ms is not None and await self.backend._server_claims_in_read():
            return []
        idle_ms = max(0, int(min_idle * 1000))
        entries: list[Any] = []
        gone: list[str] = []
        with ERRORS.mapping(f"XAUTOCLAIM on {self.stream!r}"):
            for _ in range(_MAX_CLAIM_SCANS):
                reply = await self._reader.command(
                    "XAUTOCLAIM", self._key, self.group, self.consumer, idle_ms,
                    self._claim_cursor, "COUNT", count - len(entries),
                )  # fmt: skip
                self._claim_cursor = reply[0]
                entries += reply[1]
                if len(reply) > 2:
                    gone += reply[2]
                if reply[0] == "0-0" or len(entries) >= count:
                    break
        counts = await self._counts([e[0] for e in entries if e and e[1]])
        out, deleted = to_messages(self.stream, entries, counts)
        gone += deleted
        if gone:
            await self._drop_gone(gone)
        return out

    async def _counts(self, ids: Sequence[str]) -> dict[str, int]:
        """Delivery counts of pending `ids` from the PEL (one round trip)."""
        if not ids:
            return {}
        pipe = self._pool.pipeline()
        for entry_id in ids:
            pipe.execute_command("XPENDING", self._key, self.group, entry_id, entry_id, 1)
        rows = await self._pool.run(pipe, f"XPENDING on {self.stream!r}")
        return {row[0][0]: int(row[0][3]) for row in rows if row}

    async def heartbeat(self, messages: Sequence[Message]) -> None:
        """``XCLAIM ... 0 ... JUSTID`` to this consumer: resets idle times without counting
        a delivery, so `claim_stale` elsewhere leaves these messages alone."""
        self._check_open()
        if not messages:
            return
        with ERRORS.mapping(f"XCLAIM on {self.stream!r}"):
            await self._pool.command(
                "XCLAIM", self._key, self.group, self.consumer, 0,
                *[m.id for m in messages], "JUSTID",
            )  # fmt: skip

    # -- dead letters ------------------------------------------------------------------

    async def dead_letter(
        self, message: Message, *, dead_letter_stream: str, record: dict[str, Any]
    ) -> str:
        """``XADD`` the record (with the message's headers) to the dead-letter stream and
        ``XACK`` the message in one ``MULTI``/``EXEC`` (on a cluster: when both keys share
        a slot; otherwise the ``XADD`` strictly before the ``XACK``). Returns the
        dead-letter entry id."""
        self._check_open()
        settings = self.backend.settings
        fields = encode_flat(record, settings.payload_format, message.headers or None)
        await self.backend.check_sizes(dead_letter_stream, [fields])
        key, dead_key = self._key, settings.key(dead_letter_stream)
        action = f"dead letter of {message.id} from {self.stream!r} to {dead_letter_stream!r}"
        if settings.cluster and key_slot(key.encode()) != key_slot(dead_key.encode()):
            with ERRORS.mapping(action):
                dead_id: str = await self._pool.command("XADD", dead_key, "*", *fields)
                await self._pool.command(*self._ack([message.id], key))
            return dead_id
        pipe = self._pool.pipeline(transaction=True)
        pipe.execute_command("XADD", dead_key, "*", *fields)
        pipe.execute_command(*self._ack([message.id], key))
        if settings.wait_replicas:
            self.backend.add_wait(pipe)
        results = await self._pool.run(pipe, action)
        if settings.wait_replicas:
            self.backend.check_wait(results[-1], action)
        return str(results[0])
