"""Dead-letter tools (`conveyor.DeadLetters`) on every backend, through real dead letters
that a processor wrote."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import conveyor
from conveyor import Message
from conveyor.dlq import DEAD_LETTER_ID_HEADER, DeadLetters
from conveyor.errors import ConfigurationError
from conveyor.testing import run_until_idle

if TYPE_CHECKING:
    from tests.conftest import EngineEnv


async def _dead_letter_three(engine: EngineEnv) -> DeadLetters:
    """Three poison messages and one undecodable entry, dead-lettered by a processor."""

    async def handle(msg: Message) -> None:
        kind = msg.data["kind"]
        raise {"value": ValueError, "key": KeyError, "runtime": RuntimeError}[kind](kind)

    await engine.backend.publish(
        engine.stream, {"kind": "value", "n": 0}, headers={"traceparent": "t-0"}
    )
    await engine.backend.publish(engine.stream, {"kind": "key", "n": 1})
    await engine.backend.publish(engine.stream, {"kind": "value", "n": 2})
    await engine.publish_raw(engine.stream, b"\xff not json")
    processor = engine.processor(max_deliveries=1)
    processor.set_callback(handle)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, raise_errors=False, timeout=30)
    assert processor.stats.dead_lettered == 4
    return DeadLetters(engine.backend, engine.stream)


async def test_list_filter_page_and_show(engine: EngineEnv) -> None:
    box = await _dead_letter_three(engine)
    letters = await box.list()
    assert [letter.error_type for letter in letters] == [
        "ValueError",
        "KeyError",
        "ValueError",
        "DecodeError",
    ]
    assert [letter.original for letter in letters[:3]] == [
        {"kind": "value", "n": 0},
        {"kind": "key", "n": 1},
        {"kind": "value", "n": 2},
    ]
    assert letters[0].headers == {"traceparent": "t-0"}
    assert letters[0].stream == engine.stream
    assert letters[0].group == "billing"
    assert letters[0].delivery_count == 1
    assert letters[3].original is None
    assert [x.original for x in await box.list(error_type="ValueError")] == [
        {"kind": "value", "n": 0},
        {"kind": "value", "n": 2},
    ]
    first = await box.list(limit=2)
    rest = await box.list(after=first[-1].id, limit=10)
    assert [x.id for x in first + rest] == [x.id for x in letters]
    now = engine.clock.time()
    assert len(await box.list(older_than=3600, now=now)) == 0
    assert len(await box.list(newer_than=3600, now=now)) == 4
    shown = await box.get(letters[1].id)
    assert shown is not None
    assert shown.error == "'key'"
    assert await box.get("no-such-id") is None
    assert await box.count() == 4


async def test_requeue_sends_back_then_removes_and_purge_clears(engine: EngineEnv) -> None:
    box = await _dead_letter_three(engine)
    letters = await box.list()
    result = await box.requeue([letters[0].id, letters[3].id, "missing"])
    assert list(result.requeued) == [letters[0].id]
    assert "excerpt" in result.skipped[letters[3].id]
    assert result.skipped["missing"] == "no such dead letter"
    assert [x.id for x in await box.list()] == [x.id for x in letters[1:]]
    # the requeued message is handled again, with its headers and where it came from
    seen: list[Message] = []

    async def fixed(msg: Message) -> None:
        seen.append(msg)

    processor = engine.processor("fixer")
    processor.set_callback(fixed)
    async with processor:
        await run_until_idle(processor, clock=engine.clock, timeout=30)
    assert [m.data for m in seen] == [{"kind": "value", "n": 0}]
    assert seen[0].headers == {
        "traceparent": "t-0",
        DEAD_LETTER_ID_HEADER: letters[0].id,
    }
    assert await box.purge([letters[1].id]) == 1
    assert [x.id for x in await box.list()] == [letters[2].id, letters[3].id]
    assert await box.purge() == 2
    assert await box.list() == []


async def test_the_tools_need_a_conveyor_backend() -> None:
    with pytest.raises(ConfigurationError):
        DeadLetters(object(), "orders")
    async with conveyor.connect("memory://dlq-limits") as backend:
        with pytest.raises(ConfigurationError):
            await DeadLetters(backend, "orders").list(limit=0)


def test_a_crash_between_requeue_and_removal_duplicates_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """The requeue is published first and removed second: a process SIGKILLed between the
    two leaves the dead letter in place and the message requeued (a duplicate later)."""
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        import conveyor
        from conveyor.dlq import DeadLetters

        async def main():
            async with conveyor.connect({url!r}) as backend:
                session = await backend.open_consumer("orders", "g", "c")
                await backend.publish("orders", {{"n": 1}})
                (msg,) = await session.read(count=1, block=None)
                await session.dead_letter(
                    msg, dead_letter_stream="orders.dead",
                    record={{"original": msg.data, "stream": "orders", "error_type": "X"}},
                )
                box = DeadLetters(backend, "orders")

                async def die(ids):  # killed after publishing, before removing
                    os.kill(os.getpid(), signal.SIGKILL)

                box._remove = die
                await box.requeue()

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == -9, done.stderr.decode()

    async def check() -> tuple[int, list[dict[str, Any]]]:
        async with conveyor.connect(url) as backend:
            letters = await DeadLetters(backend, "orders").list()
            source = await backend.peek("orders", count=10)
            return len(letters), [m.data for m in source]

    letters, source = asyncio.run(check())
    assert letters == 1  # still there: nothing lost
    assert source == [{"n": 1}, {"n": 1}]  # the original and its requeued copy
    assert os.path.exists(tmp_path / "crash.db")
