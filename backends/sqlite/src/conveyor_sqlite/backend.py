"""`SqliteBackend`: conveyor streams and consumer groups in one SQLite file.

Several processes open the same file; SQLite's write-ahead log (WAL mode) lets readers
run beside the one writer, and every write is one short transaction that takes the write
lock up front, waiting up to ``busy_timeout`` for another process's. The backend creates
groups, publishes and inspects; each consumer's reads, acks and claims go through its
`conveyor_sqlite.session.SqliteSession`. All SQLite calls run on the backend's worker
thread (apsw), one transaction per call.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from conveyor.base import BaseBackend, ConsumerOptions, check_sizes
from conveyor.codec import encode_json
from conveyor.discovery import StreamInfo
from conveyor.errors import ConfigurationError, GroupNotFoundError
from conveyor.message import Message
from conveyor.protocol import Capabilities, ConsumerInfo, GroupInfo
from conveyor_sqlite.database import Worker, connect
from conveyor_sqlite.session import SqliteSession
from conveyor_sqlite.settings import SqliteSettings
from conveyor_sqlite.store import Store, dump_headers, encoded_size
from conveyor_sqlite.wakeup import Waker, WalWatch, notify_available

__all__ = ["CAPABILITIES", "SqliteBackend", "open_backend"]

log = logging.getLogger("conveyor.sqlite")

#: SQLite: the engine redelivers and claims (Redis semantics); reads block.
CAPABILITIES = Capabilities(name="sqlite", redelivery="engine", claim="engine")


class SqliteBackend(BaseBackend):
    """conveyor's ``sqlite://`` backend. Build it with `open_backend` or `SqliteBackend.open`.

    Message ids are per-stream sequence numbers (``"1"``, ``"2"``...). A consumer reads,
    acks and claims through the `SqliteSession` that `open_consumer` returns.
    """

    capabilities = CAPABILITIES

    def __init__(self, settings: SqliteSettings, store: Store, worker: Worker) -> None:
        super().__init__()
        self.settings = settings
        self.file = settings.file
        self._store = store
        self._worker = worker
        self._waker = Waker()
        self._watch: WalWatch | None = None

    @classmethod
    async def open(cls, settings: SqliteSettings) -> SqliteBackend:
        """Open (or create) the database file and start watching it.

        Raises:
            ConfigurationError: the file cannot be a conveyor database (the message says
                why), or ``wakeup=notify`` where inotify is not available.
            BrokerUnavailableError: another process keeps the file locked.
        """
        worker = Worker("conveyor-sqlite")
        try:
            connection = await worker.call(f"sqlite database {settings.file}", connect, settings)
        except BaseException:
            await worker.close(lambda: None)
            raise
        backend = cls(settings, Store(connection, settings.maxlen, settings.max_age), worker)
        try:
            backend._start_watch()
        except BaseException:
            await backend.aclose()
            raise
        return backend

    def _start_watch(self) -> None:
        mode = self.settings.wakeup
        if mode == "poll":
            return
        if not notify_available():
            if mode == "notify":
                raise ConfigurationError(
                    "sqlite:// option wakeup=notify needs Linux inotify; use wakeup=auto or poll"
                )
            log.debug("no inotify here: blocked reads on %s poll", self.file)
            return
        try:
            watch = WalWatch(self.file + "-wal")
        except OSError as exc:
            if mode == "notify":
                raise ConfigurationError(f"sqlite:// wakeup=notify on {self.file}: {exc}") from exc
            log.warning("cannot watch %s-wal (%s): blocked reads poll", self.file, exc)
            return
        watch.start(self._waker)
        self._watch = watch

    @property
    def notified(self) -> bool:
        """True while other processes' commits wake blocked reads (inotify)."""
        return self._watch is not None and self._watch.active

    def __repr__(self) -> str:
        return f"SqliteBackend({self.settings.url!r})"

    async def _close(self) -> None:
        """Stop watching, wake blocked reads, close the connection after queued calls."""
        if self._watch is not None:
            self._watch.close()
        self._waker.changed()
        await self._worker.close(self._store.close)

    def _dropped(self, stream: str, count: int) -> None:
        if count:
            log.warning(
                "%d entr%s of stream %r trimmed (maxlen/max_age) while pending: acknowledged",
                count,
                "y" if count == 1 else "ies",
                stream,
            )

    # -- the backend interface ---------------------------------------------------------

    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> SqliteSession:
        """Create the stream and the group (at its first entry, or after its last one for
        ``start="latest"``) if missing; an existing group is success."""
        stream_id, group_id = await self._worker.call(
            f"creating group {group!r} on {stream!r} in {self.file}",
            self._store.open_group,
            stream,
            group,
            options.start == "latest",
        )
        return SqliteSession(self, stream, group, consumer, stream_id, group_id)

    async def _publish_many(
        self, stream: str, items: list[dict[str, Any]], headers: list[dict[str, str]] | None
    ) -> list[str]:
        """Append every payload in one transaction, all validated (and sized) first."""
        rows = [
            (encode_json(item), dump_headers(headers[i]) if headers else None)
            for i, item in enumerate(items)
        ]
        limit = self.settings.max_message_bytes
        sizes = (encoded_size(p, limit) + encoded_size(h, limit) for p, h in rows)
        check_sizes(stream, sizes, limit, "max_message_bytes")
        first, dropped = await self._worker.call(
            f"publishing to {stream!r} in {self.file}",
            self._store.publish,
            stream,
            rows,
            time.time(),
        )
        self._dropped(stream, dropped)
        self._waker.changed()
        return [str(first + i) for i in range(len(rows))]

    async def _group_info(self, stream: str, group: str) -> GroupInfo:
        """Pending count, lag, length and consumers, from one read transaction.

        Raises:
            GroupNotFoundError: no such stream or group.
        """
        stats = await self._worker.call(
            f"inspecting {group!r} on {stream!r} in {self.file}",
            self._store.group_stats,
            stream,
            group,
        )
        if stats is None:
            raise GroupNotFoundError(f"no group {group!r} on stream {stream!r} in {self.file}")
        last, first, delivered, pending, consumers = stats
        length = last - first + 1 if first is not None else 0
        lag = last - max(delivered, first - 1) if first is not None else 0
        now = time.time()
        return GroupInfo(
            stream,
            group,
            pending,
            lag,
            length,
            tuple(
                ConsumerInfo(name, count, max(0.0, now - seen) if seen is not None else 0.0)
                for name, count, seen in consumers
            ),
        )

    async def _peek(self, stream: str, count: int) -> list[Message]:
        """The last `count` entries, oldest first, with ``delivery_count`` 0."""
        return await self._worker.call(
            f"peeking at {stream!r} in {self.file}", self._store.peek, stream, count
        )

    async def _range(self, stream: str, after: str | None, count: int) -> list[Message]:
        """Entries after id `after`, oldest first, with ``delivery_count`` 0."""
        start = _seq_of(stream, after)
        return await self._worker.call(
            f"reading {stream!r} in {self.file}", self._store.range, stream, start, count
        )

    async def _delete(self, stream: str, ids: list[str]) -> int:
        seqs = [int(i) for i in ids if i.isdigit()]
        return await self._worker.call(
            f"deleting from {stream!r} in {self.file}", self._store.delete, stream, seqs
        )

    async def _delete_stream(self, stream: str) -> bool:
        return await self._worker.call(
            f"deleting stream {stream!r} in {self.file}", self._store.delete_stream, stream
        )

    async def _streams(self) -> list[StreamInfo]:
        return await self._worker.call(f"listing streams in {self.file}", self._store.streams)

    async def _groups(self, stream: str) -> list[str]:
        return await self._worker.call(
            f"listing groups of {stream!r} in {self.file}", self._store.groups, stream
        )

    async def _ack_by_id(self, stream: str, group: str, message_id: str) -> None:
        """Acknowledge an id read by an earlier process (the seed's `ack_event`)."""
        if message_id.isdigit():
            await self._worker.call(
                f"acknowledging on {stream!r} in {self.file}",
                self._store.ack_by_id,
                stream,
                group,
                int(message_id),
            )


def _seq_of(stream: str, after: str | None) -> int:
    if after is None:
        return 0
    if not after.isdigit():
        raise ConfigurationError(f"{after!r} is not an entry id of {stream!r}")
    return int(after)


async def open_backend(url: str, options: dict[str, Any]) -> SqliteBackend:
    """Entry point for ``sqlite:///path.db``.

    Raises:
        ConfigurationError: an invalid URL or option, or a file that cannot be a conveyor
            database.
        BrokerUnavailableError: another process keeps the file locked past busy_timeout.
    """
    return await SqliteBackend.open(SqliteSettings.from_url(url, options))
