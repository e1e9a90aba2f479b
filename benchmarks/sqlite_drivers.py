"""Why conveyor-sqlite runs apsw on a worker thread: the same queue work through three
ways of calling SQLite from asyncio, measured in one run.

    python benchmarks/sqlite_drivers.py [--messages 50000]

* ``aiosqlite``: its own thread, one ``await`` (one thread round trip) per statement;
* ``sqlite3 + thread``: the standard library's module on a one-thread executor, one
  round trip per transaction (as conveyor-sqlite does it);
* ``apsw + thread``: apsw the same way (what conveyor-sqlite uses).

Each publishes N ~256-byte JSON payloads in transactions of 500, consumes them as a
consumer group does (read 100 entries and record them as pending in one transaction, then
delete those 100 pending rows in another), publishes 3,000 one transaction each, and
times 5,000 bare round trips. WAL mode, ``synchronous=NORMAL``, a fresh file each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosqlite
import apsw
from benchmarks.common import body

SCHEMA = [
    "CREATE TABLE entries (stream INTEGER, seq INTEGER, payload TEXT, published_at REAL,"
    " PRIMARY KEY (stream, seq)) WITHOUT ROWID",
    "CREATE TABLE grp (id INTEGER PRIMARY KEY, last_seq INTEGER)",
    "CREATE TABLE pending (grp INTEGER, seq INTEGER, consumer TEXT, delivered_at REAL,"
    " count INTEGER, PRIMARY KEY (grp, seq)) WITHOUT ROWID",
    "INSERT INTO grp VALUES (1, 0)",
]
PUBLISH = "INSERT INTO entries VALUES (1, ?, ?, ?)"
LAST = "SELECT last_seq FROM grp WHERE id = 1"
NEW = "SELECT seq, payload FROM entries WHERE stream = 1 AND seq > ? ORDER BY seq LIMIT ?"
PENDING = "INSERT INTO pending VALUES (1, ?, 'c', ?, 1)"
MOVE = "UPDATE grp SET last_seq = ? WHERE id = 1"
ACK = "DELETE FROM pending WHERE grp = 1 AND seq = ?"

Result = tuple[float, float, float, float]  # publish_many, consume, round trip µs, one by one


class Threaded:
    """A DB-API-like connection (apsw or sqlite3) driven from a one-thread executor, one
    transaction per round trip."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.executor = ThreadPoolExecutor(1)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def transaction(self, fn: Callable[..., Any], *args: Any) -> Any:
        db = self.connection
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db, *args)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result


def _publish(db: Any, start: int, payloads: list[str]) -> None:
    now = time.time()
    db.executemany(PUBLISH, [(start + i, p, now) for i, p in enumerate(payloads)])


def _read(db: Any, count: int) -> list[tuple[int, Any]]:
    ((last,),) = list(db.execute(LAST))
    rows = list(db.execute(NEW, (last, count)))
    if rows:
        now = time.time()
        db.executemany(PENDING, [(row[0], now) for row in rows])
        db.execute(MOVE, (rows[-1][0],))
    return [(row[0], json.loads(row[1])) for row in rows]


def _ack(db: Any, seqs: list[int]) -> None:
    db.executemany(ACK, [(seq,) for seq in seqs])


def _open(kind: str, path: str) -> Any:
    if kind == "apsw":
        connection: Any = apsw.Connection(path)
    else:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *SCHEMA):
        list(connection.execute(pragma))
    return connection


async def threaded(kind: str, path: str, n: int) -> Result:
    db = Threaded(_open(kind, path))
    payloads = [body(i).decode() for i in range(n)]
    started = time.perf_counter()
    for first in range(0, n, 500):
        await db.call(db.transaction, _publish, first + 1, payloads[first : first + 500])
    publish = n / (time.perf_counter() - started)
    started, got = time.perf_counter(), 0
    while got < n:
        batch = await db.call(db.transaction, _read, 100)
        await db.call(db.transaction, _ack, [seq for seq, _ in batch])
        got += len(batch)
    consume = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(5000):
        await db.call(lambda: list(db.connection.execute("PRAGMA data_version")))
    hop = (time.perf_counter() - started) / 5000 * 1e6
    started = time.perf_counter()
    for i in range(3000):
        await db.call(db.transaction, _publish, n + 1 + i, [payloads[0]])
    one = 3000 / (time.perf_counter() - started)
    db.connection.close()
    db.executor.shutdown()
    return publish, consume, hop, one


async def with_aiosqlite(path: str, n: int) -> Result:
    db = await aiosqlite.connect(path, isolation_level=None)
    for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *SCHEMA):
        await db.execute(pragma)
    payloads = [body(i).decode() for i in range(n)]
    started = time.perf_counter()
    for first in range(0, n, 500):
        await db.execute("BEGIN IMMEDIATE")
        now = time.time()
        rows = [(first + 1 + i, p, now) for i, p in enumerate(payloads[first : first + 500])]
        await db.executemany(PUBLISH, rows)
        await db.execute("COMMIT")
    publish = n / (time.perf_counter() - started)
    started, got = time.perf_counter(), 0
    while got < n:
        await db.execute("BEGIN IMMEDIATE")
        async with db.execute(LAST) as cursor:
            (last,) = await cursor.fetchone() or (0,)
        async with db.execute(NEW, (last, 100)) as cursor:
            found = list(await cursor.fetchall())
        now = time.time()
        await db.executemany(PENDING, [(row[0], now) for row in found])
        await db.execute(MOVE, (found[-1][0],))
        await db.execute("COMMIT")
        batch = [(row[0], json.loads(row[1])) for row in found]
        await db.execute("BEGIN IMMEDIATE")
        await db.executemany(ACK, [(seq,) for seq, _ in batch])
        await db.execute("COMMIT")
        got += len(batch)
    consume = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(5000):
        async with db.execute("PRAGMA data_version") as cursor:
            await cursor.fetchone()
    hop = (time.perf_counter() - started) / 5000 * 1e6
    started = time.perf_counter()
    for i in range(3000):
        await db.execute("BEGIN IMMEDIATE")
        await db.execute(PUBLISH, (n + 1 + i, payloads[0], time.time()))
        await db.execute("COMMIT")
    one = 3000 / (time.perf_counter() - started)
    await db.close()
    return publish, consume, hop, one


async def main(n: int, rounds: int) -> None:
    print(
        f"{n:,} messages, {rounds} rounds; SQLite {sqlite3.sqlite_version} (sqlite3),"
        f" {apsw.sqlite_lib_version()} (apsw {apsw.apsw_version()})"
    )
    header = (
        f"{'driver':<18} {'publish_many':>13} {'consume':>9} {'round trip':>11} {'one by one':>11}"
    )
    print(header)
    for _ in range(rounds):
        for kind in ("aiosqlite", "sqlite3 + thread", "apsw + thread"):
            path = str(Path(tempfile.mkdtemp()) / "drivers.db")
            cpu = time.process_time()
            if kind == "aiosqlite":
                result = await with_aiosqlite(path, n)
            else:
                result = await threaded(kind.split()[0], path, n)
            publish, consume, hop, one = result
            print(
                f"{kind:<18} {publish:>11,.0f}/s {consume:>7,.0f}/s {hop:>8.0f} µs"
                f" {one:>9,.0f}/s  (CPU {time.process_time() - cpu:.2f} s)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds))
