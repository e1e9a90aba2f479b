"""`Store`: every operation on a conveyor database, each one SQLite transaction.

Its methods run on the backend's worker thread (`conveyor_sqlite.database.Worker`), never
on the event loop. Writes take the write lock up front (``BEGIN IMMEDIATE``) and hold it
for one short transaction; paths that usually find nothing (a blocked read's check,
`claim_stale`) look first with a read-only query, which never waits for a writer in WAL
mode, and only then take the lock.

Messages are built here, on the worker, so the event loop does not pay for decoding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import apsw

from conveyor.codec import decode_json
from conveyor.discovery import StreamInfo
from conveyor.errors import DecodeError
from conveyor.message import Message

__all__ = ["GroupGone", "GroupStats", "Store", "dump_headers", "encoded_size"]


class GroupGone(Exception):
    """The group (or its stream) was deleted; the session maps it to GroupNotFoundError."""


#: ``group_info`` rows: (last_seq of the stream, first stored seq or None, the group's
#: last_seq, pending count, per-consumer (name, pending, seen_at)).
GroupStats = tuple[int, int | None, int, int, list[tuple[str, int, float | None]]]

_UPSERT_STREAM = (
    "INSERT INTO streams (name, last_seq) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET last_seq = last_seq + excluded.last_seq"
    " RETURNING id, last_seq"
)
_INSERT_ENTRY = (
    "INSERT INTO entries (stream_id, seq, published_at, payload, headers) VALUES (?, ?, ?, ?, ?)"
)
_GROUP_CURSORS = (
    "SELECT g.last_seq, s.last_seq FROM consumer_groups g JOIN streams s ON s.id = g.stream_id"
    " WHERE g.id = ?"
)
_SEEN = (
    "INSERT INTO consumers (group_id, name, seen_at) VALUES (?, ?, ?)"
    " ON CONFLICT (group_id, name) DO UPDATE SET seen_at = excluded.seen_at"
)
_ENTRY = "SELECT published_at, payload, headers FROM entries WHERE stream_id = ? AND seq = ?"
_TAKE = (
    "UPDATE pending SET consumer = ?, delivered_at = ?, deliveries = deliveries + 1"
    " WHERE group_id = ? AND seq = ? RETURNING deliveries"
)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encoded_size(text: str | None, limit: int) -> int:
    """UTF-8 size of `text`, or its length where that already proves it fits `limit`."""
    if text is None:
        return 0
    return len(text) if len(text) * 4 <= limit else len(text.encode("utf-8", "surrogatepass"))


def dump_headers(headers: dict[str, str] | None) -> str | None:
    """Headers as stored: a JSON object, or None for none."""
    return _dumps(headers) if headers else None


def _message(
    stream: str, seq: Any, published_at: Any, payload: Any, headers: Any, count: Any
) -> Message:
    """A stored entry as a `Message`; undecodable ones carry `decode_error` and `raw`."""
    msg_id, at, deliveries = str(seq), float(published_at), int(count)
    try:
        parsed = json.loads(headers) if headers else {}
    except ValueError:
        parsed = None
    if type(parsed) is not dict or not all(type(v) is str for v in parsed.values()):
        error = f"entry {seq} has malformed headers: {str(headers)[:80]!r}"
        return Message(msg_id, stream, {}, deliveries, at, error, payload)
    try:
        data = decode_json(payload)
    except DecodeError as exc:
        return Message(msg_id, stream, {}, deliveries, at, str(exc), payload, headers=parsed)
    return Message(msg_id, stream, data, deliveries, at, headers=parsed)


class Store:
    """The database operations (see the module docstring). Not thread-safe: one worker.

    Args:
        connection: An open connection from `conveyor_sqlite.database.connect`.
        maxlen: Entries kept per stream (None: all).
        max_age: Seconds entries are kept (None: forever).
    """

    def __init__(
        self, connection: apsw.Connection, maxlen: int | None, max_age: float | None
    ) -> None:
        self.db = connection
        self.maxlen = maxlen
        self.max_age = max_age

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, holding the write lock from its start."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _group_exists(self, group_id: int) -> None:
        if self.db.execute("SELECT 1 FROM consumer_groups WHERE id = ?", (group_id,)).get is None:
            raise GroupGone(group_id)

    def _append(
        self, stream: str, rows: Sequence[tuple[Any, str | None]], now: float
    ) -> tuple[int, int]:
        """Append `rows` ((payload, headers) pairs) to `stream`, creating it; trim it.
        Returns (the first new seq, pending entries trimmed). In a write transaction."""
        db = self.db
        ((stream_id, last),) = db.execute(_UPSERT_STREAM, (stream, len(rows)))
        first: int = last - len(rows) + 1
        db.executemany(
            _INSERT_ENTRY,
            (
                (stream_id, first + i, now, payload, headers)
                for i, (payload, headers) in enumerate(rows)
            ),
        )
        return first, self._trim(stream_id, last, now)

    def _trim(self, stream_id: int, last: int, now: float) -> int:
        """Apply `maxlen` and `max_age` to a stream; entries trimmed while pending are
        dropped from the pending lists. Returns how many pending entries were dropped."""
        db = self.db
        cut = last - self.maxlen if self.maxlen is not None else 0
        if self.max_age is not None:
            young = db.execute(
                "SELECT seq FROM entries WHERE stream_id = ? AND published_at >= ?"
                " ORDER BY seq LIMIT 1",
                (stream_id, now - self.max_age),
            ).get
            if isinstance(young, int):
                cut = max(cut, young - 1)
        if cut <= 0:
            return 0
        db.execute("DELETE FROM entries WHERE stream_id = ? AND seq <= ?", (stream_id, cut))
        if not db.changes():
            return 0
        db.execute(
            "DELETE FROM pending WHERE group_id IN"
            " (SELECT id FROM consumer_groups WHERE stream_id = ?) AND seq <= ?",
            (stream_id, cut),
        )
        return int(db.changes())

    # -- streams and groups ------------------------------------------------------------

    def open_group(self, stream: str, group: str, latest: bool) -> tuple[int, int]:
        """Create the stream and group if missing; (stream id, group id)."""
        found = self.db.execute(
            "SELECT s.id, g.id FROM streams s JOIN consumer_groups g ON g.stream_id = s.id"
            " WHERE s.name = ? AND g.name = ?",
            (stream, group),
        ).fetchone()
        if found is not None:
            return int(found[0]), int(found[1])
        with self._write():
            ((stream_id, last),) = self.db.execute(_UPSERT_STREAM, (stream, 0))
            group_id = self.db.execute(
                "SELECT id FROM consumer_groups WHERE stream_id = ? AND name = ?",
                (stream_id, group),
            ).get
            if group_id is None:
                group_id = self.db.execute(
                    "INSERT INTO consumer_groups (stream_id, name, last_seq) VALUES (?, ?, ?)"
                    " RETURNING id",
                    (stream_id, group, last if latest else 0),
                ).get
        return int(stream_id), int(group_id)

    def delete_stream(self, stream: str) -> bool:
        """Delete a stream with its entries, groups and pending lists; whether it existed."""
        db = self.db
        with self._write():
            stream_id = db.execute("SELECT id FROM streams WHERE name = ?", (stream,)).get
            if stream_id is None:
                return False
            groups = "SELECT id FROM consumer_groups WHERE stream_id = ?"
            db.execute(f"DELETE FROM pending WHERE group_id IN ({groups})", (stream_id,))
            db.execute(f"DELETE FROM consumers WHERE group_id IN ({groups})", (stream_id,))
            db.execute("DELETE FROM consumer_groups WHERE stream_id = ?", (stream_id,))
            db.execute("DELETE FROM entries WHERE stream_id = ?", (stream_id,))
            db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))
        return True

    # -- publishing and inspection -----------------------------------------------------

    def publish(
        self, stream: str, rows: Sequence[tuple[Any, str | None]], now: float
    ) -> tuple[int, int]:
        """Append ((payload, headers) pairs); (first seq, pending entries trimmed)."""
        with self._write():
            return self._append(stream, rows, now)

    def group_stats(self, stream: str, group: str) -> GroupStats | None:
        """One read transaction's view of a group (None: no such stream or group)."""
        db = self.db
        db.execute("BEGIN")
        try:
            found = db.execute(
                "SELECT s.id, s.last_seq, g.id, g.last_seq FROM streams s"
                " JOIN consumer_groups g ON g.stream_id = s.id WHERE s.name = ? AND g.name = ?",
                (stream, group),
            ).fetchone()
            if found is None:
                return None
            stream_id, last, group_id, delivered = found
            first = db.execute(
                "SELECT seq FROM entries WHERE stream_id = ? ORDER BY seq LIMIT 1", (stream_id,)
            ).get
            counts = dict(
                db.execute(
                    "SELECT consumer, count(*) FROM pending WHERE group_id = ? GROUP BY consumer",
                    (group_id,),
                )
            )
            seen = dict(
                db.execute("SELECT name, seen_at FROM consumers WHERE group_id = ?", (group_id,))
            )
        finally:
            db.execute("COMMIT")
        consumers = [
            (name, int(counts.get(name, 0)), seen.get(name)) for name in sorted({*counts, *seen})
        ]
        first_seq = first if isinstance(first, int) else None
        return int(last), first_seq, int(delivered), sum(counts.values()), consumers

    def streams(self) -> list[StreamInfo]:
        """Every stream with its length, groups and oldest entry, in one read
        transaction."""
        db = self.db
        db.execute("BEGIN")
        try:
            rows = db.execute(
                "SELECT s.name, (SELECT count(*) FROM entries e WHERE e.stream_id = s.id),"
                " (SELECT published_at FROM entries e WHERE e.stream_id = s.id"
                "  ORDER BY seq LIMIT 1) FROM streams s"
            ).fetchall()
            groups: dict[str, list[str]] = {}
            for stream, group in db.execute(
                "SELECT s.name, g.name FROM consumer_groups g JOIN streams s"
                " ON s.id = g.stream_id ORDER BY g.name"
            ):
                groups.setdefault(stream, []).append(group)
        finally:
            db.execute("COMMIT")
        return [
            StreamInfo(str(name), int(length or 0), tuple(groups.get(str(name), ())), oldest)
            for name, length, oldest in rows
            if oldest is None or isinstance(oldest, (int, float))
        ]

    def groups(self, stream: str) -> list[str]:
        return [
            row[0]
            for row in self.db.execute(
                "SELECT g.name FROM consumer_groups g JOIN streams s ON s.id = g.stream_id"
                " WHERE s.name = ?",
                (stream,),
            )
        ]

    def peek(self, stream: str, count: int) -> list[Message]:
        rows = self.db.execute(
            "SELECT seq, published_at, payload, headers FROM entries WHERE stream_id ="
            " (SELECT id FROM streams WHERE name = ?) ORDER BY seq DESC LIMIT ?",
            (stream, count),
        ).fetchall()
        return [_message(stream, r[0], r[1], r[2], r[3], 0) for r in reversed(rows)]

    def range(self, stream: str, after: int, count: int) -> list[Message]:
        rows = self.db.execute(
            "SELECT seq, published_at, payload, headers FROM entries WHERE stream_id ="
            " (SELECT id FROM streams WHERE name = ?) AND seq > ? ORDER BY seq LIMIT ?",
            (stream, after, count),
        ).fetchall()
        return [_message(stream, r[0], r[1], r[2], r[3], 0) for r in rows]

    def delete(self, stream: str, seqs: Sequence[int]) -> int:
        """Delete entries (and their pending rows in every group); how many existed."""
        with self._write():
            stream_id = self.db.execute("SELECT id FROM streams WHERE name = ?", (stream,)).get
            if stream_id is None:
                return 0
            deleted = 0
            for seq in seqs:
                self.db.execute(
                    "DELETE FROM pending WHERE seq = ? AND group_id IN"
                    " (SELECT id FROM consumer_groups WHERE stream_id = ?)",
                    (seq, stream_id),
                )
                self.db.execute(
                    "DELETE FROM entries WHERE stream_id = ? AND seq = ?", (stream_id, seq)
                )
                deleted += self.db.changes()
            return deleted

    def ack_by_id(self, stream: str, group: str, seq: int) -> None:
        with self._write():
            self.db.execute(
                "DELETE FROM pending WHERE seq = ? AND group_id = (SELECT g.id FROM"
                " consumer_groups g JOIN streams s ON s.id = g.stream_id"
                " WHERE s.name = ? AND g.name = ?)",
                (seq, stream, group),
            )

    # -- one consumer --------------------------------------------------------------------

    def read_new(
        self, stream: str, stream_id: int, group_id: int, consumer: str, count: int, now: float
    ) -> list[Message]:
        """Deliver up to `count` entries the group has not seen to `consumer`."""
        db = self.db
        cursors = db.execute(_GROUP_CURSORS, (group_id,)).fetchone()
        if cursors is None:
            raise GroupGone(group_id)
        if cursors[1] <= cursors[0]:
            return []  # nothing new: no write lock taken
        with self._write():
            cursors = db.execute(_GROUP_CURSORS, (group_id,)).fetchone()
            if cursors is None:
                raise GroupGone(group_id)
            delivered, last = cursors
            rows = db.execute(
                "SELECT seq, published_at, payload, headers FROM entries"
                " WHERE stream_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (stream_id, delivered, count),
            ).fetchall()
            upto = rows[-1][0] if rows else last  # no rows: trimmed away meanwhile
            if rows:
                db.executemany(
                    "INSERT INTO pending (group_id, seq, consumer, delivered_at, deliveries)"
                    " VALUES (?, ?, ?, ?, 1)",
                    ((group_id, row[0], consumer, now) for row in rows),
                )
                db.execute(_SEEN, (group_id, consumer, now))
            db.execute("UPDATE consumer_groups SET last_seq = ? WHERE id = ?", (upto, group_id))
        return [_message(stream, r[0], r[1], r[2], r[3], 1) for r in rows]

    def read_own(
        self,
        stream: str,
        stream_id: int,
        group_id: int,
        consumer: str,
        after: int,
        count: int,
        now: float,
    ) -> tuple[list[Message], int | None, int]:
        """Deliver again `consumer`'s own pending entries after seq `after`.

        Returns (messages, the last seq looked at or None when there are no more, entries
        found trimmed and dropped).
        """
        db = self.db
        mine = "FROM pending WHERE group_id = ? AND consumer = ? AND seq > ?"
        if db.execute(f"SELECT 1 {mine} LIMIT 1", (group_id, consumer, after)).get is None:
            self._group_exists(group_id)
            return [], None, 0
        out: list[Message] = []
        with self._write():
            rows = db.execute(
                "SELECT p.seq, p.deliveries + 1, e.published_at, e.payload, e.headers"
                " FROM pending p LEFT JOIN entries e ON e.stream_id = ? AND e.seq = p.seq"
                " WHERE p.group_id = ? AND p.consumer = ? AND p.seq > ? ORDER BY p.seq LIMIT ?",
                (stream_id, group_id, consumer, after, count),
            ).fetchall()
            gone = [(group_id, row[0]) for row in rows if row[3] is None]
            found = [row for row in rows if row[3] is not None]
            db.executemany("DELETE FROM pending WHERE group_id = ? AND seq = ?", gone)
            db.executemany(
                "UPDATE pending SET deliveries = deliveries + 1, delivered_at = ?"
                " WHERE group_id = ? AND seq = ?",
                ((now, group_id, row[0]) for row in found),
            )
            if found:
                db.execute(_SEEN, (group_id, consumer, now))
            for seq, deliveries, published_at, payload, headers in found:
                out.append(_message(stream, seq, published_at, payload, headers, deliveries))
        last: Any = rows[-1][0] if rows else None
        return out, (int(last) if rows else None), len(gone)

    def ack(self, group_id: int, seqs: Sequence[int]) -> None:
        with self._write():
            self.db.executemany(
                "DELETE FROM pending WHERE group_id = ? AND seq = ?",
                ((group_id, seq) for seq in seqs),
            )

    def take(
        self,
        stream: str,
        stream_id: int,
        group_id: int,
        consumer: str,
        seqs: Sequence[int],
        now: float,
    ) -> tuple[list[Message], int]:
        """Deliver pending entries again to `consumer` (redelivery and claims), counting a
        delivery each; entries no longer pending are left out, entries trimmed away are
        dropped. Returns (messages, dropped)."""
        with self._write():
            return self._take(stream, stream_id, group_id, consumer, seqs, now)

    def _take(
        self,
        stream: str,
        stream_id: int,
        group_id: int,
        consumer: str,
        seqs: Sequence[int],
        now: float,
    ) -> tuple[list[Message], int]:
        db = self.db
        self._group_exists(group_id)
        out: list[Message] = []
        dropped = 0
        for seq in seqs:
            deliveries = db.execute(_TAKE, (consumer, now, group_id, seq)).get
            if deliveries is None:
                continue  # acked meanwhile
            entry = db.execute(_ENTRY, (stream_id, seq)).fetchone()
            if entry is None:
                db.execute("DELETE FROM pending WHERE group_id = ? AND seq = ?", (group_id, seq))
                dropped += 1
                continue
            out.append(_message(stream, seq, entry[0], entry[1], entry[2], deliveries))
        if out:
            db.execute(_SEEN, (group_id, consumer, now))
        return out, dropped

    def claim_stale(
        self,
        stream: str,
        stream_id: int,
        group_id: int,
        consumer: str,
        min_idle: float,
        count: int,
        now: float,
    ) -> tuple[list[Message], int]:
        """Take up to `count` entries pending for `min_idle` seconds or more, from anyone."""
        stale = (
            "SELECT seq FROM pending WHERE group_id = ? AND delivered_at <= ? ORDER BY seq LIMIT ?"
        )
        args = (group_id, now - min_idle, count)
        if not self.db.execute(stale, args).fetchall():
            self._group_exists(group_id)
            return [], 0
        with self._write():
            seqs = [row[0] for row in self.db.execute(stale, args)]
            return self._take(stream, stream_id, group_id, consumer, seqs, now)

    def heartbeat(self, group_id: int, consumer: str, seqs: Sequence[int], now: float) -> None:
        """Mark `consumer`'s entries busy now (idle time 0), without counting a delivery."""
        if not seqs:
            self._group_exists(group_id)
            return
        with self._write():
            self._group_exists(group_id)
            self.db.executemany(
                "UPDATE pending SET delivered_at = ? WHERE group_id = ? AND seq = ?"
                " AND consumer = ?",
                ((now, group_id, seq, consumer) for seq in seqs),
            )
            self.db.execute(_SEEN, (group_id, consumer, now))

    def dead_letter(
        self, group_id: int, seq: int | None, dead_stream: str, record: str, headers: str | None,
        now: float,
    ) -> tuple[int, int]:  # fmt: skip
        """Append `record` to `dead_stream` and acknowledge `seq`, in one transaction.
        Returns (the dead letter's seq, pending entries trimmed)."""
        with self._write():
            self._group_exists(group_id)
            appended = self._append(dead_stream, [(record, headers)], now)
            if seq is not None:
                self.db.execute(
                    "DELETE FROM pending WHERE group_id = ? AND seq = ?", (group_id, seq)
                )
        return appended
