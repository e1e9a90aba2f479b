"""Fixtures of the UI tests: a backend URL per kind (memory, sqlite, Redis with a key
prefix of its own), a poison-message seeder, and headless Chromium for the browser tests.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright without downloading a
browser. Without it the browser tests are skipped on a laptop and FAIL under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

import conveyor
from conveyor.base import BaseBackend
from conveyor.options import split_options
from conveyor.testing import run_until_idle
from conveyor_memory import reset

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots of the browser tests (gitignored).
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "ui"

Seeder = Callable[..., Awaitable[list[str]]]


@pytest.fixture
def memory_url() -> Iterator[str]:
    name = f"ui-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}"
    reset(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ui.db'}"


@pytest.fixture
def redis_ui_url(redis_url: str) -> Iterator[str]:
    """The shared Redis with a key prefix of this test's own (its keys deleted after)."""
    prefix = f"conveyor-test-ui-{uuid.uuid4().hex[:8]}:"
    base, options = split_options(redis_url)
    query = "&".join(f"{k}={v}" for k, v in {**options, "key_prefix": prefix}.items())
    yield f"{base}?{query}"

    async def clean() -> None:
        client = Redis.from_url(base)
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(clean())


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_url(request: pytest.FixtureRequest) -> str:
    """A fresh URL of each kind in turn."""
    fixture = {"memory": "memory_url", "sqlite": "sqlite_url", "redis": "redis_ui_url"}
    url: str = request.getfixturevalue(fixture[request.param])
    return url


async def poison(
    backend: BaseBackend,
    stream: str,
    payloads: list[dict[str, Any]],
    *,
    group: str = "billing",
    error: str = "cannot bill",
) -> list[str]:
    """Publish `payloads` and run a processor (max_deliveries=1) whose handler fails on
    every one, so each becomes a dead letter; their ids in the source stream."""
    ids = await backend.publish_many(stream, payloads)

    async def fail(payload: dict[str, Any]) -> None:
        raise ValueError(f"{error}: {payload.get('n')}")

    processor = conveyor.StreamProcessor(backend, stream, group, "worker-1", max_deliveries=1)
    processor.set_callback(fail)
    async with processor:
        await run_until_idle(processor, raise_errors=False)
    return ids


@pytest.fixture
def seed() -> Callable[..., list[str]]:
    """``seed(url, stream, payloads, **kw)``: `poison` run in its own event loop."""

    def run(url: str, stream: str, payloads: list[dict[str, Any]], **kw: Any) -> list[str]:
        async def go() -> list[str]:
            async with conveyor.connect(url) as backend:
                assert isinstance(backend, BaseBackend)
                return await poison(backend, stream, payloads, **kw)

        return asyncio.run(go())

    return run


def chromium_or_fail() -> None:
    """Skip without Chromium, loudly; fail under CI=true (a green CI ran the browser)."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: apt-get install -y chromium (the browser tests need it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian Chromium through Playwright's async API (no browser download)."""
    chromium_or_fail()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
