"""Token, escaping, secrets, headers: what a page must never do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor.base import BaseBackend
from conveyor.errors import ConfigurationError
from conveyor.ui import UiSettings, create_app
from conveyor.ui.redaction import Scrubber
from conveyor.ui.security import COOKIE

TOKEN = "t0ken-for-tests"


def test_token_protects_every_page(memory_url: str) -> None:
    app = create_app(UiSettings(memory_url, streams=("orders",), token=TOKEN))
    with TestClient(app) as client:
        for path in ("/", "/stream?s=orders", "/dead?s=orders", "/dead/letter?s=o&id=1"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert 'name="token"' in response.text
            assert "data-stream" not in response.text
            assert "memory://" not in response.text  # not even the (redacted) URL
        assert client.post("/dead/act", data={"s": "orders"}).status_code == 401
        assert client.get("/static/htmx.min.js").status_code == 200
        wrong = client.get("/?token=nope")
        assert wrong.status_code == 401
        assert "Wrong token" in wrong.text


def test_token_in_the_query_once_sets_a_cookie_and_leaves_the_url(memory_url: str) -> None:
    app = create_app(UiSettings(memory_url, streams=("orders",), token=TOKEN))
    with TestClient(app) as client:
        response = client.get(f"/stream?s=orders&token={TOKEN}", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/stream?s=orders"
        assert TOKEN not in response.headers["set-cookie"]  # a value derived from it
        assert "httponly" in response.headers["set-cookie"].lower()
        assert client.get("/").status_code == 200  # the cookie is enough now
        assert TOKEN not in client.get("/").text


def test_login_form(memory_url: str) -> None:
    app = create_app(UiSettings(memory_url, token=TOKEN))
    with TestClient(app) as client:
        bad = client.post("/login", data={"token": "nope", "next": "/"})
        assert bad.status_code == 401
        assert "Wrong token" in bad.text
        evil = client.post(
            "/login", data={"token": TOKEN, "next": "//evil.test/x"}, follow_redirects=False
        )
        assert evil.status_code == 303
        assert evil.headers["location"] == "/"
        assert COOKIE in client.cookies
        assert client.get("/").status_code == 200


def test_a_script_payload_renders_as_text(memory_url: str, seed: Callable[..., list[str]]) -> None:
    attack = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    seed(memory_url, "orders", [{"n": attack}], error=attack)
    with TestClient(create_app(UiSettings(memory_url, streams=(attack,)))) as client:
        pages = [
            client.get("/").text,
            client.get("/stream", params={"s": "orders"}).text,
            client.get("/dead", params={"s": "orders"}).text,
            client.get("/stream", params={"s": attack}).text,
        ]
        dead_id = pages[2].split('<tr data-id="')[1].split('"')[0]
        pages.append(client.get("/dead/letter", params={"s": "orders", "id": dead_id}).text)
    for html in pages:
        assert "<script>alert" not in html
        assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[4]


def test_no_credential_of_the_url_in_any_response(
    memory_url: str, seed: Callable[..., list[str]]
) -> None:
    """The app shows the URL it was given, with its secrets hidden; the backend here is a
    memory one passed in, so the URL can carry made-up credentials."""
    url = "redis://alice:pa55-s3cret@redis.internal:6379/0?sentinel_password=sent-s3cret"
    seed(memory_url, "orders", [{"n": 1}], error="login pa55-s3cret refused")

    async def serve() -> list[str]:
        async with conveyor.connect(memory_url) as backend:
            assert isinstance(backend, BaseBackend)
            app = create_app(UiSettings(url, streams=("orders",)), backend=backend)
            with TestClient(app) as client:
                responses = [client.get(p) for p in ("/", "/stream?s=orders", "/dead?s=orders")]
                dead_id = responses[2].text.split('<tr data-id="')[1].split('"')[0]
                responses.append(client.get(f"/dead/letter?s=orders&id={dead_id}"))
                responses.append(client.get("/nope"))
            return [r.text + str(r.headers) for r in responses]

    texts = asyncio.run(serve())
    assert "redis://alice:***@redis.internal:6379/0?sentinel_password=***" in texts[0]
    for text in texts:
        assert "pa55-s3cret" not in text
        assert "sent-s3cret" not in text


def test_scrubber_hides_every_secret_of_a_url() -> None:
    scrub = Scrubber("nats://tok3n-abc@h:4222?nkey_seed=SUAB&name=x", token="ui-t")
    assert scrub("a tok3n-abc b SUAB c ui-t d name=x") == "a *** b *** c *** d name=x"
    assert Scrubber("redis://h:6379/0")("nothing to hide") == "nothing to hide"


def test_security_headers(memory_url: str) -> None:
    with TestClient(create_app(UiSettings(memory_url))) as client:
        headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"


def test_allowed_hosts_stop_dns_rebinding(memory_url: str) -> None:
    settings = UiSettings(memory_url, allowed_hosts=("127.0.0.1", "localhost"))
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"Host": "evil.test"}).status_code == 400


@pytest.mark.parametrize(
    ("field", "value"), [("refresh", 0), ("page_size", 0), ("token", ""), ("history", -1)]
)
def test_settings_are_checked(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field):
        UiSettings("memory://", **{field: value})  # type: ignore[arg-type]
