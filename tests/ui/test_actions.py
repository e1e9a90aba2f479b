"""Requeue and purge through the UI (POST + CSRF), on memory://, sqlite:// and Redis."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from starlette.testclient import TestClient

import conveyor
from conveyor.dlq import DEAD_LETTER_ID_HEADER, DeadLetters
from conveyor.ui import UiSettings, create_app


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


async def dead_ids(url: str, stream: str) -> list[str]:
    async with conveyor.connect(url) as backend:
        return [letter.id for letter in await DeadLetters(backend, stream).all()]


def test_requeue_one_puts_it_back_with_its_header(
    any_url: str, seed: Callable[..., list[str]]
) -> None:
    seed(any_url, "orders", [{"n": 1}, {"n": 2}])
    with TestClient(create_app(UiSettings(any_url))) as client:
        html = client.get("/dead", params={"s": "orders"}).text
        first, second = ids_on(html)
        response = client.post(
            "/dead/act",
            data={"csrf": csrf_of(html), "s": "orders", "action": f"requeue:id={first}"},
            follow_redirects=False,
        )
        assert response.status_code == 303
        shown = client.get(response.headers["location"]).text
        assert "Requeued 1 dead letter(s)." in shown
        assert ids_on(shown) == [second]

    async def newest() -> conveyor.Message:
        async with conveyor.connect(any_url) as backend:
            return (await backend.peek("orders", count=1))[0]

    back = asyncio.run(newest())
    assert back.data == {"n": 1}
    assert back.headers[DEAD_LETTER_ID_HEADER] == first


def test_purge_a_selection_then_all(any_url: str, seed: Callable[..., list[str]]) -> None:
    seed(any_url, "orders", [{"n": n} for n in range(4)])
    with TestClient(create_app(UiSettings(any_url))) as client:
        html = client.get("/dead", params={"s": "orders"}).text
        ids = ids_on(html)
        token = csrf_of(html)
        response = client.post(
            "/dead/act",
            data={"csrf": token, "s": "orders", "action": "purge:selected", "ids": ids[:2]},
        )
        assert "Purged 2 dead letter(s)." in response.text
        assert asyncio.run(dead_ids(any_url, "orders")) == ids[2:]
        nothing = client.post(
            "/dead/act", data={"csrf": token, "s": "orders", "action": "purge:selected"}
        )
        assert "Nothing selected." in nothing.text
        everything = client.post(
            "/dead/act", data={"csrf": token, "s": "orders", "action": "purge:all"}
        )
        assert "Purged 2 dead letter(s)." in everything.text
    assert asyncio.run(dead_ids(any_url, "orders")) == []


def test_requeue_all(memory_url: str, seed: Callable[..., list[str]]) -> None:
    seed(memory_url, "orders", [{"n": n} for n in range(3)])
    with TestClient(create_app(UiSettings(memory_url))) as client:
        token = csrf_of(client.get("/dead", params={"s": "orders"}).text)
        response = client.post(
            "/dead/act", data={"csrf": token, "s": "orders", "action": "requeue:all"}
        )
    assert "Requeued 3 dead letter(s)." in response.text
    assert asyncio.run(dead_ids(memory_url, "orders")) == []


def test_actions_need_the_csrf_token_and_this_origin(
    memory_url: str, seed: Callable[..., list[str]]
) -> None:
    seed(memory_url, "orders", [{"n": 1}])
    with TestClient(create_app(UiSettings(memory_url))) as client:
        token = csrf_of(client.get("/dead", params={"s": "orders"}).text)
        form = {"s": "orders", "action": "purge:all"}
        assert client.post("/dead/act", data=form).status_code == 403
        assert client.post("/dead/act", data={**form, "csrf": "forged"}).status_code == 403
        foreign = client.post(
            "/dead/act", data={**form, "csrf": token}, headers={"Origin": "http://evil.test"}
        )
        assert foreign.status_code == 403
        assert "cross-origin" in foreign.text
        assert client.get("/dead/act").status_code == 405  # never on GET
        assert len(asyncio.run(dead_ids(memory_url, "orders"))) == 1
        by_header = client.post("/dead/act", data=form, headers={"X-CSRF-Token": token})
        assert by_header.status_code == 200
        assert "Purged 1" in by_header.text


def test_read_only_hides_and_refuses_actions(
    memory_url: str, seed: Callable[..., list[str]]
) -> None:
    seed(memory_url, "orders", [{"n": 1}])
    with TestClient(create_app(UiSettings(memory_url, read_only=True))) as client:
        html = client.get("/dead", params={"s": "orders"}).text
        (dead_id,) = ids_on(html)
        detail = client.get("/dead/letter", params={"s": "orders", "id": dead_id}).text
        for page in (html, detail):
            assert "read-only" in page
            assert "<button" not in page
            assert 'type="checkbox"' not in page
        # the server refuses them too, before looking at anything else
        refused = client.post("/dead/act", data={"s": "orders", "action": "purge:all", "csrf": "x"})
        assert refused.status_code == 403
        assert "read-only" in refused.text
    assert asyncio.run(dead_ids(memory_url, "orders")) == [dead_id]
