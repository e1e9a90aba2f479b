"""Test helpers that write a conveyor database directly, as another program could.

Each opens its own connection to the file (apsw: the library the backend uses, so that
SQLite's locks see each other within one process) and closes it before returning.
"""

from __future__ import annotations

import time

import apsw

from conveyor_sqlite.store import Store

__all__ = ["delete_stream", "publish_raw"]


def _store(file: str) -> Store:
    connection = apsw.Connection(file, flags=apsw.SQLITE_OPEN_READWRITE)
    connection.set_busy_timeout(5000)
    return Store(connection, None, None)


def publish_raw(file: str, stream: str, payload: bytes) -> str:
    """Append `payload` unvalidated (any bytes) to `stream` in the database `file`;
    its id."""
    store = _store(file)
    try:
        first, _ = store.publish(stream, [(payload, None)], time.time())
    finally:
        store.close()
    return str(first)


def delete_stream(file: str, stream: str) -> None:
    """Delete `stream` with its entries, groups and pending lists from `file`."""
    store = _store(file)
    try:
        store.delete_stream(stream)
    finally:
        store.close()
