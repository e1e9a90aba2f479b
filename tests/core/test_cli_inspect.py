"""``conveyor inspect`` shows each stream's length and its oldest entry's age."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import conveyor
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
