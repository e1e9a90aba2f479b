"""Opening a conveyor database file: checks, schema, connection settings, and the thread
that every SQLite call of a backend runs on.

A file is a conveyor database when its SQLite header carries conveyor's
``application_id``; its ``user_version`` is the schema version. `connect` creates the
schema only in a file that does not exist or is empty, and refuses, without writing a
byte, anything else: a directory that does not exist, a read-only file, a file that is not
SQLite, another application's database, a database of a newer schema.

All of a backend's SQLite calls run on one worker thread (`Worker`), one whole
transaction per call, so the event loop never blocks on the disk or on another process's
lock, and apsw releases the GIL while SQLite works.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import apsw

from conveyor.errors import BackendClosedError, ConfigurationError
from conveyor_sqlite.errors import ERRORS
from conveyor_sqlite.settings import SqliteSettings

__all__ = ["APPLICATION_ID", "SCHEMA", "SCHEMA_VERSION", "Worker", "connect"]

#: ``PRAGMA application_id`` of a conveyor database ("cnvy").
APPLICATION_ID = 0x636E7679
#: ``PRAGMA user_version``: the schema this code reads and writes.
SCHEMA_VERSION = 1

#: The schema, version 1. A stream's entries are numbered 1, 2, 3... (`seq`, the message
#: id) and only ever removed from the oldest end (retention), so they form one contiguous
#: range: length and lag are differences of numbers, not counts.
SCHEMA = """
CREATE TABLE streams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    last_seq INTEGER NOT NULL DEFAULT 0          -- the newest entry's seq, ever
);
CREATE TABLE entries (
    stream_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    published_at REAL NOT NULL,                  -- seconds since the epoch
    payload BLOB NOT NULL,                       -- JSON text (foreign writers: any bytes)
    headers TEXT,                                -- JSON object of str, or NULL
    PRIMARY KEY (stream_id, seq)
) WITHOUT ROWID;
CREATE TABLE consumer_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,        -- never reused: sessions cache it
    stream_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    last_seq INTEGER NOT NULL,                   -- the last entry delivered to the group
    UNIQUE (stream_id, name)
);
CREATE TABLE pending (
    group_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    delivered_at REAL NOT NULL,                  -- last delivery or heartbeat (epoch s)
    deliveries INTEGER NOT NULL,
    PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;
CREATE TABLE consumers (
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    seen_at REAL NOT NULL,                       -- last read that delivered, or heartbeat
    PRIMARY KEY (group_id, name)
) WITHOUT ROWID;
"""

T = TypeVar("T")


def _refuse(file: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"sqlite database {file}: {why}")


def _check_path(file: str, *, create: bool = True) -> bool:
    """Refuse paths SQLite could not use (and a missing file unless `create`); True when
    the database must be created."""
    directory = os.path.dirname(file)
    if not os.path.isdir(directory):
        raise _refuse(file, f"the directory {directory} does not exist")
    try:
        info = os.stat(file)
    except FileNotFoundError:
        if not create:
            raise ConfigurationError(
                f"no SQLite database at {file} (a typo? create=false: it is not created;"
                " conveyor publish or run create it)"
            ) from None
        if not os.access(directory, os.W_OK | os.X_OK):
            why = f"cannot create it: the directory {directory} is not writable"
            raise _refuse(file, why) from None
        return True
    if stat.S_ISDIR(info.st_mode):
        raise _refuse(file, "it is a directory, not a database file")
    # no write bit at all counts as read-only even for root, who could write it anyway
    if not os.access(file, os.R_OK | os.W_OK) or not info.st_mode & 0o222:
        raise _refuse(
            file,
            "the file is read-only; conveyor writes delivery state into it (make it"
            " writable, or use another file)",
        )
    if not os.access(directory, os.W_OK | os.X_OK) and not os.path.exists(file + "-wal"):
        raise _refuse(
            file,
            f"the directory {directory} is not writable (SQLite keeps its write-ahead log"
            " beside the database)",
        )
    return info.st_size == 0


def _value(connection: apsw.Connection, sql: str) -> object:
    """The first column of the first row of `sql` (statement run to its end)."""
    rows = list(connection.execute(sql))
    return rows[0][0] if rows and rows[0] else None


def _number(connection: apsw.Connection, sql: str) -> int:
    value = _value(connection, sql)
    return value if isinstance(value, int) else 0


def _run(connection: apsw.Connection, sql: str) -> None:
    for _ in connection.execute(sql):
        pass


def _identify(connection: apsw.Connection, file: str, *, creating: bool) -> bool:
    """True when the file is conveyor's; False when it may be created: it has no pages
    (or, while `creating` holds the write lock, no tables yet). Raises `ConfigurationError`
    for anything else. Reads only.
    """
    app_id = _number(connection, "PRAGMA application_id")
    if app_id == APPLICATION_ID:
        version = _number(connection, "PRAGMA user_version")
        if version > SCHEMA_VERSION:
            raise _refuse(
                file,
                f"it was written by a newer conveyor-sqlite (schema version {version});"
                f" this one reads schema version {SCHEMA_VERSION}: upgrade conveyor-sqlite",
            )
        return True
    tables = _number(connection, "SELECT count(*) FROM sqlite_schema")
    fresh = creating or _number(connection, "PRAGMA page_count") == 0
    if app_id == 0 and tables == 0 and fresh:
        return False
    raise _refuse(
        file,
        f"it is not a conveyor database (SQLite application_id {app_id:#x}, {tables}"
        " table(s)); conveyor leaves files it did not create untouched",
    )


def _to_wal(connection: apsw.Connection, timeout: float) -> None:
    """Switch to WAL mode, retrying for up to `timeout` seconds: SQLite answers a mode
    switch that meets another connection's lock with SQLITE_BUSY at once, without its
    busy handler (several processes opening a new file at the same moment)."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            if _value(connection, "PRAGMA journal_mode=WAL") == "wal":
                return
        except apsw.BusyError:
            if time.monotonic() >= deadline:
                raise
        else:
            if time.monotonic() >= deadline:
                raise apsw.BusyError("cannot switch the database to WAL mode")
        time.sleep(pause)  # on the worker thread, never the event loop
        pause = min(pause * 2, 0.05)


def _create(connection: apsw.Connection, file: str, timeout: float) -> None:
    """Create the schema in an empty file (unless another process just did), then switch
    it to WAL mode.

    The schema and the header's application_id are written in one rollback-journal
    transaction, so another process opening the file meanwhile sees it empty or whole,
    never a database without conveyor's application_id.
    """
    _run(connection, "BEGIN IMMEDIATE")
    try:
        if not _identify(connection, file, creating=True):
            _run(connection, SCHEMA)
            _run(connection, f"PRAGMA application_id={APPLICATION_ID}")
            _run(connection, f"PRAGMA user_version={SCHEMA_VERSION}")
        _run(connection, "COMMIT")
    except BaseException:
        _run(connection, "ROLLBACK")
        raise
    _to_wal(connection, timeout)


def connect(settings: SqliteSettings) -> apsw.Connection:
    """Open `settings.file`, creating the schema in a new or empty file (runs on a worker).

    Raises:
        ConfigurationError: the path cannot hold a conveyor database; each message names
            the file and why.
        BrokerUnavailableError: another process keeps it locked past ``busy_timeout``.
    """
    file = settings.file
    empty = _check_path(file, create=settings.create)
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    with ERRORS.mapping(f"sqlite database {file}"):
        connection = apsw.Connection(file, flags=flags)
        try:
            connection.set_busy_timeout(int(settings.busy_timeout * 1000))
            if connection.readonly("main"):
                raise _refuse(file, "SQLite opened it read-only; conveyor needs to write to it")
            if empty or not _identify(connection, file, creating=False):
                _create(connection, file, settings.busy_timeout)
            elif _value(connection, "PRAGMA journal_mode") != "wal":
                _to_wal(connection, settings.busy_timeout)
            _run(connection, f"PRAGMA synchronous={settings.synchronous.upper()}")
            _run(connection, "PRAGMA journal_size_limit=67108864")  # WAL trimmed to 64 MiB
            _run(connection, "PRAGMA cache_size=-16384")  # 16 MiB of page cache
            # a read opens the write-ahead log (creating -wal), which the wake-up watches
            _run(connection, "SELECT count(*) FROM sqlite_schema")
        except BaseException:
            connection.close()
            raise
    return connection


class Worker:
    """The thread a backend's SQLite calls run on, one call (one transaction) at a time.

    `call` maps apsw errors through `ERRORS` (a call cut by closing is a
    `BackendClosedError`). A call whose caller is cancelled still runs to its end on the
    thread: its transaction commits or rolls back whole.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._closed = False

    async def call(self, action: str, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the thread; its result.

        Raises:
            BackendClosedError: the worker was closed.
            ConveyorError: what `ERRORS` maps an apsw error to, with `action` as context.
        """
        if self._closed:
            raise BackendClosedError(f"{action}: the backend is closed")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, fn, *args)
        except RuntimeError:  # the executor was shut down meanwhile
            raise BackendClosedError(f"{action}: the backend is closed") from None
        with ERRORS.mapping(action, closed=lambda: self._closed):
            return await future

    async def close(self, last: Callable[[], object]) -> None:
        """Run `last` (closing the connection) after every call queued so far, then stop
        the thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await asyncio.shield(loop.run_in_executor(self._executor, last))
        finally:
            self._executor.shutdown(wait=False)
