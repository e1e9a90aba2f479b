"""The pages, server side (Starlette's TestClient) on memory://, sqlite:// and Redis."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

import conveyor
from conveyor.discovery import StreamInfo
from conveyor.ui import UiSettings, create_app
from conveyor_memory import MemoryBackend, MemorySettings


def ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


def test_overview_shows_streams_groups_and_dead_letters(
    any_url: str, seed: Callable[..., list[str]]
) -> None:
    seed(any_url, "orders", [{"n": 1}, {"n": 2}])
    settings = UiSettings(any_url, streams=("orders", "empty"), refresh=1)
    with TestClient(create_app(settings)) as client:
        page = client.get("/")
        assert page.status_code == 200
        html = page.text
        assert 'data-stream="orders"' in html
        assert 'data-stream="empty"' in html
        orders = html[html.index('data-stream="orders"') : html.index('data-stream="empty"')]
        # the group was found in the dead letters; its numbers come from group_info
        assert 'data-group="billing"' in orders
        assert re.search(r"<dt>length</dt><dd>2</dd>", orders)
        assert re.search(r'class="dead-count has-dead"[^>]*>2<', orders)
        assert 'class="n pending">0<' in orders
        assert 'class="n lag">0<' in orders
        assert "worker-1" in orders  # the consumer
        assert "<svg" in orders  # the lag chart
        assert re.search(r"<dt>oldest entry</dt><dd>\d+ s</dd>", orders)
        empty = html[html.index('data-stream="empty"') :]
        assert "<dt>length</dt><dd>—</dd>" in empty  # no group, no length
        assert 'class="dead-count"' in empty
        assert ">0<" in empty
        # htmx asks for the refreshing part only
        partial = client.get("/", headers={"HX-Request": "true"})
        assert "<html" not in partial.text
        assert 'data-stream="orders"' in partial.text


def test_named_group_that_does_not_exist_yet(memory_url: str) -> None:
    settings = UiSettings(memory_url, groups=(("orders", "shipping"),))
    with TestClient(create_app(settings)) as client:
        html = client.get("/").text
    assert 'data-group="shipping"' in html
    assert "no such group (yet)" in html


def test_stream_page_shows_latest_entries_with_headers(any_url: str) -> None:
    async def publish() -> None:
        async with conveyor.connect(any_url) as backend:
            for n in range(30):
                await backend.publish("events", {"n": n, "name": "ünï"}, headers={"trace": f"t{n}"})

    asyncio.run(publish())
    with TestClient(create_app(UiSettings(any_url, peek_count=5))) as client:
        html = client.get("/stream", params={"s": "events"}).text
    entries = re.findall(r"&#34;n&#34;: (\d+)", html)
    assert entries == ["29", "28", "27", "26", "25"]  # newest first, peek_count of them
    assert "<th>trace</th><td>t29</td>" in html
    assert "ünï" in html


def test_dead_letters_page_and_detail(any_url: str, seed: Callable[..., list[str]]) -> None:
    seed(any_url, "orders", [{"n": 1, "sku": "A-1"}])
    with TestClient(create_app(UiSettings(any_url))) as client:
        html = client.get("/dead", params={"s": "orders"}).text
        (dead_id,) = ids_on(html)
        assert "ValueError" in html
        assert "cannot bill: 1" in html
        assert "1 dead letter(s)" in html
        detail = client.get("/dead/letter", params={"s": "orders", "id": dead_id}).text
        assert "Traceback (most recent call last)" in detail
        assert "&#34;sku&#34;: &#34;A-1&#34;" in detail  # the original payload, pretty
        assert "<dd>billing</dd>" in detail
        missing = client.get("/dead/letter", params={"s": "orders", "id": "nope"})
        assert missing.status_code == 404


def test_dead_letters_are_paged(memory_url: str, seed: Callable[..., list[str]]) -> None:
    seed(memory_url, "orders", [{"n": n} for n in range(5)])
    with TestClient(create_app(UiSettings(memory_url, page_size=2))) as client:
        seen: list[str] = []
        params: dict[str, Any] = {"s": "orders"}
        for _ in range(4):
            html = client.get("/dead", params=params).text
            seen += ids_on(html)
            found = re.search(r'after=([^"]+)">next page', html)
            if found is None:
                break
            params = {"s": "orders", "after": found.group(1)}
    assert len(seen) == 5
    assert len(set(seen)) == 5


def test_pages_without_a_stream_name_say_so(memory_url: str) -> None:
    with TestClient(create_app(UiSettings(memory_url))) as client:
        for path in ("/stream", "/dead", "/dead/letter"):
            response = client.get(path)
            assert response.status_code == 400
            assert "Name " in response.text


def test_overview_lists_discovered_streams_and_folds_dead_letters(
    any_url: str, seed: Callable[..., list[str]]
) -> None:
    seed(any_url, "orders", [{"n": 1}])  # orders, its group billing, orders.dead

    async def more() -> None:
        async with conveyor.connect(any_url) as backend:
            await backend.publish("events:bot", {"n": 1})
            await backend.create_group("events:bot", "audit")

    asyncio.run(more())
    with TestClient(create_app(UiSettings(any_url, streams=("named",)))) as client:
        html = client.get("/").text
        cards = re.findall(r'data-stream="([^"]+)"', html)
        assert cards == ["named", "events:bot", "orders"]  # named first; orders.dead folded
        orders = html[html.index('data-stream="orders"') :]
        assert 'data-group="billing"' in orders
        assert re.search(r'class="dead-count has-dead"[^>]*>1<', orders)
        events = html[html.index('data-stream="events:bot"') : html.index('data-stream="orders"')]
        assert 'data-group="audit"' in events
        assert re.search(r"<dt>length</dt><dd>1</dd>", events)
        assert "Listing streams failed" not in html
        # a stream page finds its groups without --group
        page = client.get("/stream", params={"s": "events:bot"}).text
        assert 'data-group="audit"' in page


def test_a_backend_that_cannot_list_shows_the_named_streams(memory_url: str) -> None:
    class Unlisted(MemoryBackend):
        async def _streams(self) -> list[StreamInfo]:
            raise NotImplementedError("no listing here")

    async def run() -> str:
        async with Unlisted(MemorySettings(memory_url.removeprefix("memory://"))) as backend:
            await backend.publish("hidden", {"n": 1})
            await backend.publish("orders", {"n": 1})
            app = create_app(UiSettings(memory_url, streams=("orders",)), backend=backend)
            with TestClient(app) as client:
                return str(client.get("/").text)

    html = asyncio.run(run())
    assert re.findall(r'data-stream="([^"]+)"', html) == ["orders"]
    assert "Listing streams failed" not in html
