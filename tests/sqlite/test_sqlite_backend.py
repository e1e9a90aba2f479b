"""``sqlite://`` beyond the conformance suite: files it refuses, locks, retention, size
limits and wake-ups."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import pytest_asyncio

import conveyor
from conveyor import Message, StreamProcessor
from conveyor.errors import (
    BrokerUnavailableError,
    ConfigurationError,
    GroupNotFoundError,
    PayloadTooLargeError,
)
from conveyor.testing import wait_until
from conveyor_sqlite import SqliteBackend
from conveyor_sqlite.database import APPLICATION_ID, SCHEMA_VERSION
from conveyor_sqlite.testing import delete_stream, publish_raw
from conveyor_sqlite.wakeup import notify_available


def url_of(path: Path, **options: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


async def open_db(path: Path, **options: Any) -> SqliteBackend:
    backend = await conveyor.connect(url_of(path, **options))
    assert isinstance(backend, SqliteBackend)
    return backend


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = await open_db(tmp_path / "test.db")
    yield backend
    await backend.aclose()


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


# -- files conveyor refuses, untouched ------------------------------------------------------


def foreign_sqlite(path: Path) -> None:
    connection = apsw.Connection(str(path))
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("INSERT INTO users (name) VALUES ('ada')")
    connection.close()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(os.urandom(8192)), "the file is not an SQLite database"),
        (lambda p: p.write_bytes(b"hello, this is a text file\n"), "not an SQLite database"),
        (foreign_sqlite, "it is not a conveyor database (SQLite application_id 0x0, 1 table(s))"),
    ],
    ids=["random-bytes", "text", "another-apps-sqlite"],
)
async def test_a_file_that_is_not_a_conveyor_database_is_refused_untouched(
    tmp_path: Path, make: Any, expected: str
) -> None:
    path = tmp_path / "theirs.db"
    make(path)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        await open_db(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)
    assert snapshot(tmp_path) == before  # not a byte written, no -wal or -shm beside it


async def test_a_read_only_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    backend = await open_db(path)
    await backend.publish("s", {"n": 1})
    await backend.aclose()
    path.chmod(0o444)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigurationError, match="the file is read-only") as caught:
        await open_db(path)
    assert str(path) in str(caught.value)
    assert snapshot(tmp_path) == before


async def test_a_missing_directory_or_a_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(ConfigurationError, match="does not exist") as caught:
        await open_db(missing)
    assert str(missing) in str(caught.value)
    assert not (tmp_path / "no").exists()
    with pytest.raises(ConfigurationError, match="is a directory"):
        await open_db(tmp_path)


async def test_create_false_refuses_a_missing_file_and_opens_an_existing_one(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "typo.db"
    with pytest.raises(ConfigurationError, match="no SQLite database at") as caught:
        await conveyor.connect(f"sqlite:///{missing}?create=false")
    assert str(missing) in str(caught.value)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - nothing created, not even a -wal
    async with conveyor.connect(f"sqlite:///{missing}") as backend:
        await backend.publish("s", {"n": 1})
    async with conveyor.connect(f"sqlite:///{missing}?create=false") as backend:
        assert [m.data for m in await backend.peek("s", count=5)] == [{"n": 1}]


async def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    await (await open_db(path)).aclose()
    connection = apsw.Connection(str(path))
    assert connection.execute("PRAGMA application_id").get == APPLICATION_ID
    assert connection.execute("PRAGMA user_version").get == SCHEMA_VERSION
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(ConfigurationError, match=r"newer conveyor-sqlite \(schema version 2\)"):
        await open_db(path)


async def test_an_empty_file_becomes_a_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    backend = await open_db(path)
    assert await backend.publish("s", {"n": 1}) == "1"
    await backend.aclose()


async def test_several_backends_create_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    backends = await asyncio.gather(*(open_db(path) for _ in range(8)))
    try:
        ids = await asyncio.gather(*(b.publish("s", {"n": i}) for i, b in enumerate(backends)))
        assert sorted(ids, key=int) == [str(i) for i in range(1, 9)]
    finally:
        for backend in backends:
            await backend.aclose()


@pytest.fixture
def write_lock(tmp_path: Path) -> Iterator[apsw.Connection]:
    """Another connection to test.db, holding its write lock until closed."""
    connection = apsw.Connection(str(tmp_path / "test.db"))
    yield connection
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


async def test_a_lock_held_past_busy_timeout_is_an_outage_naming_the_file(
    tmp_path: Path, write_lock: apsw.Connection
) -> None:
    backend = await open_db(tmp_path / "test.db", busy_timeout=0.2)
    try:
        write_lock.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError, match="locked by another connection") as err:
            await backend.publish("s", {"n": 1})
        assert 0.15 < time.monotonic() - started < 3
        assert str(tmp_path / "test.db") in str(err.value)
        assert await backend.peek("s", count=5) == []  # reads go on beside the writer
        write_lock.execute("ROLLBACK")
        assert await backend.publish("s", {"n": 2}) == "1"  # usable again
    finally:
        await backend.aclose()


async def test_a_processor_rides_out_a_locked_file(
    tmp_path: Path, write_lock: apsw.Connection
) -> None:
    """The file locked by another process past busy_timeout while acks are due: the
    engine backs off and retries, nothing is handled twice or lost."""
    backend = await open_db(tmp_path / "test.db", busy_timeout=0.1)
    handled: list[int] = []
    gate = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        await gate.wait()
        handled.append(payload["n"])

    await backend.publish_many("jobs", [{"n": i} for i in range(5)])
    processor = StreamProcessor(backend, "jobs", "g", "w", concurrency=5, claim_idle=30.0)
    processor.set_callback(handle)
    try:
        async with processor:
            await wait_until(lambda: processor.stats.in_flight == 5, timeout=10)
            write_lock.execute("BEGIN IMMEDIATE")
            gate.set()
            await wait_until(lambda: processor.stats.reconnects >= 1, timeout=10)
            write_lock.execute("ROLLBACK")
            await wait_until(lambda: processor.stats.acked == 5, timeout=15)
            assert processor.is_running
        assert sorted(handled) == list(range(5))
        assert (await backend.group_info("jobs", "g")).pending == 0
    finally:
        await backend.aclose()


# -- retention and size limits -------------------------------------------------------------


async def test_maxlen_trims_the_oldest_and_drops_their_pending_entries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await open_db(tmp_path / "t.db", maxlen=3)
    try:
        session = await backend.open_consumer("s", "g", "c")
        await backend.publish_many("s", [{"n": i} for i in range(3)])
        got = await session.read(count=2, block=None)  # 1 and 2 pending
        with caplog.at_level(logging.WARNING, logger="conveyor.sqlite"):
            ids = await backend.publish_many("s", [{"n": i} for i in range(3, 5)])
        assert ids == ["4", "5"]
        assert [m.data["n"] for m in await backend.peek("s", count=10)] == [2, 3, 4]
        info = await backend.group_info("s", "g")
        assert (info.length, info.pending, info.lag) == (3, 0, 3)
        assert "2 entries of stream 's' trimmed (maxlen/max_age) while pending" in caplog.text
        assert await session.redeliver(got) == []  # gone: never handed out again
        assert [m.id for m in await session.read(count=10, block=None)] == ["3", "4", "5"]
    finally:
        await backend.aclose()


async def test_max_age_trims_entries_older_than_it(tmp_path: Path) -> None:
    backend = await open_db(tmp_path / "t.db", max_age=0.2)
    try:
        await backend.publish_many("s", [{"n": 0}, {"n": 1}])
        await asyncio.sleep(0.3)
        await backend.publish("s", {"n": 2})
        assert [m.data for m in await backend.peek("s", count=10)] == [{"n": 2}]
        await backend.publish("s", {"n": 3})  # nothing old: nothing trimmed
        assert len(await backend.peek("s", count=10)) == 2
    finally:
        await backend.aclose()


async def test_the_configured_size_limit_is_refused_before_writing(tmp_path: Path) -> None:
    backend = await open_db(tmp_path / "t.db", max_message_bytes=1000)
    try:
        session = await backend.open_consumer("s", "g", "c")
        await backend.publish("s", {"text": "é" * 480})  # 960 + 11 bytes: fits
        with pytest.raises(PayloadTooLargeError, match="max_message_bytes") as caught:
            await backend.publish("s", {"text": "é" * 500})  # 1,011 bytes as UTF-8
        assert "1,011 bytes" in str(caught.value)
        with pytest.raises(PayloadTooLargeError):  # headers count too
            await backend.publish("s", {"text": "x" * 900}, headers={"h": "y" * 100})
        with pytest.raises(PayloadTooLargeError):  # nothing of the batch is written
            await backend.publish_many("s", [{"n": 1}, {"text": "x" * 2000}])
        assert len(await backend.peek("s", count=10)) == 1
        (message,) = await session.read(count=1, block=None)
        with pytest.raises(PayloadTooLargeError):
            await session.dead_letter(
                message, dead_letter_stream="s.dead", record={"blob": "x" * 2000}
            )
        assert (await backend.group_info("s", "g")).pending == 1  # still pending
    finally:
        await backend.aclose()


# -- foreign writers and wake-ups ------------------------------------------------------------


async def test_entries_and_deletions_by_other_connections(db: SqliteBackend) -> None:
    session = await db.open_consumer("s", "g", "c")
    raw = await asyncio.to_thread(publish_raw, db.file, "s", b"\xff\xfenot json")
    (message,) = await session.read(count=5, block=1.0)
    assert message.id == raw
    assert message.decode_error is not None
    assert message.raw == b"\xff\xfenot json"
    await asyncio.to_thread(delete_stream, db.file, "s")
    with pytest.raises(GroupNotFoundError, match="no longer exists"):
        await session.read(count=5, block=0.5)
    with pytest.raises(GroupNotFoundError):
        await db.group_info("s", "g")


@pytest.mark.parametrize(
    "wakeup",
    [
        pytest.param(
            "notify",
            marks=pytest.mark.skipif(not notify_available(), reason="inotify is Linux-only"),
        ),
        "poll",
    ],
)
async def test_a_publish_through_another_connection_wakes_a_blocked_read(
    tmp_path: Path, wakeup: str
) -> None:
    reader = await open_db(tmp_path / "w.db", wakeup=wakeup)
    writer = await open_db(tmp_path / "w.db")
    try:
        assert reader.notified == (wakeup == "notify")
        session = await reader.open_consumer("s", "g", "c")
        await session.read(count=1, block=0.3)  # idle long enough to poll slowly
        reading = asyncio.ensure_future(session.read(count=1, block=30.0))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        msg_id = await writer.publish("s", {"n": 1})
        got: list[Message] = await asyncio.wait_for(reading, 5)
        assert [m.id for m in got] == [msg_id]
        assert time.monotonic() - started < 0.5  # not the 30 s block, nor a 1 s recheck
    finally:
        await writer.aclose()
        await reader.aclose()
