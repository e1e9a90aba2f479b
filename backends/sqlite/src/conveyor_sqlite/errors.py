"""The one table that turns apsw (SQLite) exceptions into `conveyor.errors`.

apsw raises one class per SQLite result code (``SQLITE_BUSY`` → `apsw.BusyError`,
``SQLITE_NOTADB`` → `apsw.NotADBError`...), so rules match by class: never by message
text. Every call into SQLite runs inside ``with ERRORS.mapping(action):``, where `action`
names the database file, so each error says which file it is about. Opening a file does
its own checks first (missing directory, read-only file, another application's database,
a newer schema) and raises `ConfigurationError` with a message of its own.
"""

from __future__ import annotations

import apsw

from conveyor.errormap import ErrorMap, Rule
from conveyor.errors import (
    BackendClosedError,
    BackendError,
    BrokerUnavailableError,
    ConfigurationError,
    PayloadTooLargeError,
    UnserializablePayloadError,
)

__all__ = ["ERRORS"]

ERRORS = ErrorMap(
    "sqlite",
    catch=(apsw.Error, OSError, UnicodeEncodeError),
    rules=[
        # another process holds the write lock (or an exclusive lock) past busy_timeout:
        # an outage as SQLite has them; the engine retries with backoff
        Rule(
            BrokerUnavailableError,
            types=(apsw.BusyError, apsw.LockedError),
            message="the database is locked by another connection (waited busy_timeout)",
            example=lambda: apsw.BusyError("database is locked"),
        ),
        Rule(
            BrokerUnavailableError,
            types=(apsw.FullError,),
            message="the disk is full",
            example=lambda: apsw.FullError("database or disk is full"),
        ),
        Rule(
            ConfigurationError,
            types=(apsw.NotADBError,),
            message="the file is not an SQLite database (conveyor leaves it untouched)",
            example=lambda: apsw.NotADBError("file is not a database"),
        ),
        Rule(
            ConfigurationError,
            types=(apsw.CantOpenError, apsw.PermissionsError),
            message="cannot open the database file (its directory must exist and be writable)",
            example=lambda: apsw.CantOpenError("unable to open database file"),
        ),
        Rule(
            BackendError,
            types=(apsw.ReadOnlyError,),
            message="the database file became read-only",
            example=lambda: apsw.ReadOnlyError("attempt to write a readonly database"),
        ),
        Rule(
            BackendError,
            types=(apsw.CorruptError,),
            message="the database file is corrupt",
            example=lambda: apsw.CorruptError("database disk image is malformed"),
        ),
        Rule(
            PayloadTooLargeError,
            types=(apsw.TooBigError,),
            example=lambda: apsw.TooBigError("string or blob too big"),
        ),
        # SQLite stores UTF-8: a str with a lone surrogate cannot be bound
        Rule(
            UnserializablePayloadError,
            types=(UnicodeEncodeError,),
            message="a text (payload, header or name) that is not valid Unicode",
            example=lambda: UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        ),
        # the connection was closed (or interrupted) by `aclose()` while a call ran
        Rule(
            BackendClosedError,
            types=(apsw.ConnectionClosedError, apsw.InterruptError),
            example=lambda: apsw.ConnectionClosedError("The connection has been closed"),
        ),
    ],
)
