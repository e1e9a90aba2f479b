"""``conveyor inspect`` shows each stream's length and its oldest entry's age."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import conveyor
from conveyor.base import BaseBackend
from conveyor.cli import main
from conveyor.cli.broker import age
from conveyor.discovery import StreamInfo, oldest_entry_at
from conveyor.message import Message
from conveyor.testing import FakeClock
from conveyor_memory import MemoryBackend


def test_age_reads_like_a_duration() -> None:
    assert age(None) == "—"
    assert age(100.0, now=112.34) == "12.3 s"
    assert age(0.0, now=90) == "1.5 min"
    assert age(0.0, now=7200) == "2.0 h"
    assert age(0.0, now=3 * 86400) == "3.0 d"
    assert age(10.0, now=5.0) == "0.0 s"  # a clock behind the broker's


async def test_oldest_entry_from_the_listing(memory: MemoryBackend, clock: FakeClock) -> None:
    assert await oldest_entry_at(memory, "s") is None  # no such stream
    await memory.create_group("s", "g")
    assert await oldest_entry_at(memory, "s") is None  # empty
    first = clock.time()
    await memory.publish("s", {"n": 1})
    await clock.advance(30)
    await memory.publish("s", {"n": 2})
    assert await oldest_entry_at(memory, "s") == first


class _RangeOnly:
    """A backend whose listing has no times (as Kafka's) or that lists nothing."""

    def __init__(self, listed: bool) -> None:
        self.listed = listed
        self.ranged: list[str] = []

    async def streams(self) -> list[StreamInfo]:
        if not self.listed:
            raise NotImplementedError("cannot list")
        return [StreamInfo("s", 2), StreamInfo("empty", 0)]

    async def range(self, stream: str, *, count: int, after: str | None = None) -> list[Message]:
        self.ranged.append(stream)
        if stream != "s":
            return []
        return [Message("1", "s", {}, 0, 1234.5)][:count]


@pytest.mark.parametrize("listed", [True, False])
async def test_oldest_entry_from_the_first_entry(listed: bool) -> None:
    backend: Any = _RangeOnly(listed)
    assert await oldest_entry_at(backend, "s") == 1234.5
    assert await oldest_entry_at(backend, "empty") is None
    # a listed empty stream needs no read; an unlisted one is read
    assert backend.ranged == (["s"] if listed else ["s", "empty"])


async def test_oldest_entry_unknown_without_listing_or_ranges() -> None:
    class Bare:
        pass

    assert await oldest_entry_at(Bare(), "s") is None


def test_inspect_shows_length_and_oldest_age(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'inspect.db'}"

    async def prepare() -> None:
        async with conveyor.connect(url) as backend:
            await backend.create_group("empty", "g")
            await backend.publish_many("jobs", [{"n": i} for i in range(4)])
            await backend.create_group("jobs", "g")

    asyncio.run(prepare())
    result = CliRunner().invoke(main, ["inspect", url, "jobs", "g"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "┃ length ┃ oldest ┃ pending ┃" in out
    assert re.search(r"jobs │ g │ 4 │ \d+\.\d s │ 0 │ 4", out), out
    empty = CliRunner().invoke(main, ["inspect", url, "empty", "g"])
    assert empty.exit_code == 0, empty.output
    assert "empty │ g │ 0 │ — │ 0 │ 0" in " ".join(empty.stdout.split())


def _rows(output: str) -> list[list[str]]:
    """The body rows of a rich table: cells, stripped (continuation lines included)."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_inspect_without_a_stream_lists_every_stream_and_group(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'overview.db'}"

    async def prepare() -> None:
        async with conveyor.connect(url) as backend:
            await backend.publish_many("jobs", [{"n": i} for i in range(3)])
            await backend.create_group("jobs", "billing")
            await backend.create_group("jobs", "audit")
            session = await backend.open_consumer("jobs", "billing", "w1")
            async with session:
                assert len(await session.read(count=1, block=None)) == 1  # never acked
            await backend.publish("lonely", {"n": 1})

    asyncio.run(prepare())
    result = CliRunner().invoke(main, ["inspect", url])
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert rows[0][:2] == ["jobs", "3"]
    assert rows[0][3:] == ["audit", "0", "3", "0"]
    assert rows[1] == ["", "", "", "billing", "1", "2", "1"]  # one read, not acked
    assert rows[2][:2] == ["lonely", "1"]
    assert rows[2][3] == "—"

    one = CliRunner().invoke(main, ["inspect", url, "jobs"])
    assert one.exit_code == 0, one.output
    assert "groups of jobs" in one.stdout
    assert [row[3] for row in _rows(one.stdout)] == ["audit", "billing"]


def _created(url: str) -> str:
    """`url`'s database, created empty (inspect does not create a missing file)."""

    async def create() -> None:
        async with conveyor.connect(url):
            pass

    asyncio.run(create())
    return url


def test_inspect_of_a_missing_stream_or_too_many_arguments_says_so(tmp_path: Path) -> None:
    url = _created(f"sqlite:///{tmp_path / 'missing.db'}")
    missing = CliRunner().invoke(main, ["inspect", url, "nope"])
    assert missing.exit_code == 2
    assert "no stream 'nope' on this broker" in missing.output
    extra = CliRunner().invoke(main, ["inspect", url, "a", "b", "c"])
    assert extra.exit_code == 2
    assert "expected [URL] [STREAM [GROUP]], got 4 argument(s)" in extra.output
    empty = CliRunner().invoke(main, ["inspect", url])
    assert empty.exit_code == 0
    assert "no streams" in empty.output


def test_inspect_without_a_stream_on_a_backend_that_cannot_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor_sqlite import SqliteBackend

    async def cannot(self: Any) -> Any:
        raise NotImplementedError

    monkeypatch.setattr(SqliteBackend, "_streams", cannot)  # as a backend without listing
    result = CliRunner().invoke(main, ["inspect", _created(f"sqlite:///{tmp_path / 'x.db'}")])
    assert result.exit_code == 2
    assert "cannot list its streams: give STREAM GROUP" in result.output
    assert "Traceback" not in result.output


def test_inspect_lists_redis_streams(redis_url: str) -> None:
    prefix = f"conveyor-inspect-{uuid.uuid4().hex[:8]}:"
    url = f"{redis_url}{'&' if '?' in redis_url else '?'}key_prefix={prefix}"

    async def prepare() -> None:
        async with conveyor.connect(url) as backend:
            await backend.publish_many("orders", [{"n": i} for i in range(2)])
            await backend.create_group("orders", "shop")

    async def drop() -> None:
        async with conveyor.connect(url) as backend:
            assert isinstance(backend, BaseBackend)
            await backend.delete_stream("orders")

    asyncio.run(prepare())
    try:
        result = CliRunner().invoke(main, ["inspect", url])
    finally:
        asyncio.run(drop())
    assert result.exit_code == 0, result.output
    (row,) = _rows(result.stdout)
    assert row[:2] == ["orders", "2"]
    assert row[3:6] == ["shop", "0", "2"]  # group, pending, lag
