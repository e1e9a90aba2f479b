"""``conveyor demo`` and ``conveyor bench`` delete the streams they created unless --keep;
a stream the user named for the demo is deleted only when the demo created it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import conveyor
from conveyor.cli import main
from conveyor.options import split_options
from redis import Redis


def _streams(url: str) -> dict[str, int | None]:
    async def listing() -> dict[str, int | None]:
        async with conveyor.connect(url) as backend:
            infos = await backend.streams()  # type: ignore[attr-defined]
            return {info.name: info.length for info in infos}

    return asyncio.run(listing())


def _demo(url: str, *extra: str) -> Result:
    args = ["demo", "--url", url, "--count", "60", "--workers", "1", "--concurrency", "4"]
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tools.db'}"


def test_demo_deletes_its_streams(db: str) -> None:
    result = _demo(db)
    assert "deleted the demo's streams demo.orders." in result.output
    assert _streams(db) == {}


def test_demo_keep_leaves_its_streams(db: str) -> None:
    result = _demo(db, "--keep")
    assert "(--keep)" in result.output
    found = _streams(db)
    names = sorted(found)
    assert len(names) == 2
    assert names[0].startswith("demo.orders.")
    assert names[1] == f"{names[0]}.dead"
    assert found[names[0]] == 60
    assert found[names[1]] == 1


def test_demo_deletes_a_named_stream_only_if_it_created_it(db: str) -> None:
    _demo(db, "--stream", "fresh")
    assert _streams(db) == {}

    async def create_before() -> None:
        async with conveyor.connect(db) as backend:
            await backend.create_group("mine", "theirs")

    asyncio.run(create_before())
    result = _demo(db, "--stream", "mine")
    # the user's stream stays (with the demo's orders); the dead letters were new
    assert _streams(db) == {"mine": 60}
    assert "deleted the demo's streams mine.dead" in result.output


@pytest.fixture
def redis_prefixed(redis_url: str) -> Iterator[tuple[str, Redis]]:
    """The shared Redis under a key prefix of this test's own; its keys deleted after."""
    base, query = split_options(redis_url)
    prefix = f"conveyor-test-tools-{uuid.uuid4().hex[:8]}:"
    raw = Redis.from_url(base, decode_responses=True)
    options = "&".join(f"{k}={v}" for k, v in {**query, "key_prefix": prefix}.items())
    yield f"{base}?{options}", raw
    keys = list(raw.scan_iter(match=prefix + "*", count=1000))
    if keys:
        raw.delete(*keys)
    raw.close()


def test_demo_on_redis_deletes_its_keys_unless_keep(redis_prefixed: tuple[str, Redis]) -> None:
    url, raw = redis_prefixed
    prefix = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))["key_prefix"]
    stream = f"demo-{uuid.uuid4().hex[:8]}"
    _demo(url, "--stream", stream)
    assert list(raw.scan_iter(match=prefix + "*")) == []
    _demo(url, "--stream", stream, "--keep")
    assert sorted(raw.scan_iter(match=prefix + "*")) == [
        f"{prefix}{stream}",
        f"{prefix}{stream}.dead",
    ]


def _bench(url: str, *extra: str) -> None:
    args = ["bench", "--url", url, "-n", "200", "--latency-seconds", "0.2"]
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 0, result.output


def test_bench_deletes_its_streams_unless_keep(db: str) -> None:
    _bench(db)
    assert _streams(db) == {}
    _bench(db, "--keep")
    kept = sorted(_streams(db))
    assert len(kept) == 5  # two consume runs, two publish runs, one latency run
    assert all(name.startswith("bench.") for name in kept)
