"""The UI in headless Chromium (Debian's, driven by Playwright): a dead letter appears,
is requeued with a click and handled; read-only shows no action; a ``<script>`` payload
stays text; the pages fit 1280 px and 400 px. Screenshots go to test-output/ui/.

The server runs in the test's own event loop (uvicorn as a task), so a memory:// broker
is shared between it and the test's processor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, Page, ViewportSize, expect
from starlette.applications import Starlette

import conveyor
from conveyor.base import BaseBackend
from conveyor.testing.processes import free_port
from conveyor.ui import UiSettings, create_app

from .conftest import OUTPUT, poison

pytestmark = pytest.mark.browser

WIDE: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 400, "height": 860}


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free 127.0.0.1 port, in this event loop."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # raises what stopped it
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def shot(page: Page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


async def open_backend(url: str) -> BaseBackend:
    backend = await conveyor.connect(url)
    assert isinstance(backend, BaseBackend)
    return backend


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_dead_letter_appears_and_a_click_requeues_it(
    kind: str, request: pytest.FixtureRequest, browser: Browser
) -> None:
    url: str = request.getfixturevalue("memory_url" if kind == "memory" else "redis_ui_url")
    backend = await open_backend(url)
    handled: list[dict[str, Any]] = []
    fixed = asyncio.Event()

    async def handle(payload: dict[str, Any]) -> None:
        if payload.get("sku") is None and not fixed.is_set():
            raise ValueError(f"order {payload['order_id']} has no sku")
        await asyncio.sleep(0.004)
        handled.append(payload)

    processor = conveyor.StreamProcessor(
        backend, "orders", "billing", "worker-1", max_deliveries=1, concurrency=1
    )
    processor.set_callback(handle)
    settings = UiSettings(
        url, streams=("orders",), groups=(("orders", "billing"),), refresh=0.5,
        sample_interval=0.5,
    )  # fmt: skip
    try:
        async with serving(create_app(settings, backend=backend)) as base, processor:
            page = await browser.new_page(viewport=WIDE)
            await page.goto(base + "/")
            dead = page.locator('[data-stream="orders"] .dead-count')
            await expect(dead).to_have_text("0")
            await backend.publish_many(
                "orders", [{"order_id": n, "sku": f"A-{n}"} for n in range(400)]
            )
            await backend.publish("orders", {"order_id": 400, "note": "no sku"})
            await expect(dead).to_have_text("1", timeout=15_000)  # refreshed by htmx
            await wait_for(lambda: len(handled) == 400)
            await page.wait_for_timeout(1200)  # a few more samples for the chart
            await shot(page, f"overview-{kind}")

            await dead.click()
            rows = page.locator("tr[data-id]")
            await expect(rows).to_have_count(1)
            await expect(rows).to_contain_text("order 400 has no sku")
            await shot(page, f"dead-letters-{kind}")
            await rows.get_by_role("link", name="ValueError").click()
            await expect(page.locator("pre.traceback")).to_contain_text("has no sku")
            await expect(page.locator("pre.json")).to_contain_text('"note": "no sku"')
            await shot(page, f"dead-letter-{kind}")

            fixed.set()  # the bug is fixed: requeue it
            await page.get_by_role("button", name="Requeue").click()
            await expect(page.locator(".flash.ok")).to_have_text("Requeued 1 dead letter(s).")
            await expect(page.locator("tr[data-id]")).to_have_count(0)
            await wait_for(lambda: any(p.get("order_id") == 400 for p in handled))
            await page.goto(base + "/")
            await expect(dead).to_have_text("0")
            await page.close()
    finally:
        await backend.aclose()


async def test_read_only_shows_no_action(memory_url: str, browser: Browser) -> None:
    backend = await open_backend(memory_url)
    try:
        await poison(backend, "orders", [{"order_id": 1}])
        settings = UiSettings(memory_url, streams=("orders",), read_only=True)
        app = create_app(settings, backend=backend)
        async with serving(app) as base:
            page = await browser.new_page(viewport=WIDE)
            await page.goto(base + "/dead?s=orders")
            await expect(page.locator("tr[data-id]")).to_have_count(1)
            await expect(page.locator(".badge.ro")).to_have_text("read-only")
            await expect(page.locator("button")).to_have_count(0)
            await expect(page.locator("input[type=checkbox]")).to_have_count(0)
            await shot(page, "dead-letters-read-only")
            await page.locator("tr[data-id] a").click()
            await expect(page.locator("pre.traceback")).to_be_visible()
            await expect(page.locator("button")).to_have_count(0)
            await page.close()
    finally:
        await backend.aclose()


async def test_a_script_payload_stays_inert(memory_url: str, browser: Browser) -> None:
    attack = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    backend = await open_backend(memory_url)
    try:
        await poison(backend, "orders", [{"order_id": 1, "comment": attack}], error=attack)
        app = create_app(UiSettings(memory_url, streams=("orders",), refresh=0.5), backend=backend)
        async with serving(app) as base:
            page = await browser.new_page(viewport=WIDE)
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))
            await page.goto(base + "/stream?s=orders")
            await expect(page.locator("pre.json").first).to_contain_text(attack)
            await page.wait_for_timeout(1200)  # two htmx refreshes swap the same text in
            await expect(page.locator("pre.json").first).to_contain_text(attack)
            await shot(page, "stream-script-payload")
            await page.goto(base + "/dead?s=orders")
            await expect(page.locator("td.error")).to_contain_text("<script>alert(1)</script>")
            await page.locator("tr[data-id] a").click()
            await expect(page.locator("p.error.big")).to_contain_text(attack)
            await page.wait_for_timeout(300)
            assert dialogs == []
            assert await page.locator("img[src=x]").count() == 0
            await page.close()
    finally:
        await backend.aclose()


async def test_pages_fit_a_narrow_window(memory_url: str, browser: Browser) -> None:
    backend = await open_backend(memory_url)
    try:
        await backend.publish_many(
            "orders", [{"order_id": n, "sku": f"A-{n}", "lines": [1, 2]} for n in range(3)]
        )
        await poison(backend, "orders", [{"order_id": 9}])
        settings = UiSettings(memory_url, streams=("orders",), groups=(("orders", "billing"),))
        async with serving(create_app(settings, backend=backend)) as base:
            page = await browser.new_page(viewport=NARROW)
            for path, name in (
                ("/", "overview-narrow"),
                ("/stream?s=orders", "stream-narrow"),
                ("/dead?s=orders", "dead-letters-narrow"),
            ):
                await page.goto(base + path)
                await expect(page.locator("main h1")).to_be_visible()
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= NARROW["width"], f"{path} is {width} px wide"
                await shot(page, name)
            await page.set_viewport_size(WIDE)
            await page.goto(base + "/stream?s=orders")
            await shot(page, "stream-memory")
            await page.close()
    finally:
        await backend.aclose()
