"""``rediss://`` against a local TLS-only redis-server with a password (the `tls_server`
fixture of conftest.py starts it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.errors import BackendError, BrokerUnavailableError
from conveyor_redis import open_backend

pytestmark = pytest.mark.slow

TlsServer = tuple[int, Path, str]  # the tls_server fixture of conftest.py: port, CA, password


@pytest.fixture(autouse=True)
async def _let_tls_shutdowns_finish() -> AsyncIterator[None]:
    """A closed TLS connection finishes its TLS shutdown (close_notify both ways) on later
    loop turns, after redis-py's ``wait_closed()`` returned (asyncio's design, see CPython
    issue #90476); collected before that, its socket warns "unclosed transport", which the
    per-test gc of tests/conftest.py turned into a rare teardown error on 3.13."""
    yield
    await asyncio.sleep(0.2)


async def test_rediss_round_trip_with_password(tls_server: TlsServer) -> None:
    port, ca, password = tls_server
    backend = await open_backend(
        f"rediss://:{password}@127.0.0.1:{port}/0", {"ssl_ca_certs": str(ca)}
    )
    try:
        assert password not in repr(backend)
        session = await backend.open_consumer("events:tls", "g", "c")
        sent = await backend.publish("events:tls", {"secure": True, "n": 1}, headers={"k": "v"})
        [message] = await session.read(count=10, block=0.5)
        assert (message.id, message.data) == (sent, {"secure": True, "n": 1})
        assert message.headers == {"k": "v"}
        await session.ack([message])
        assert (await backend.group_info("events:tls", "g")).pending == 0
    finally:
        await backend.aclose()


async def test_rediss_without_the_ca_fails_verification(tls_server: TlsServer) -> None:
    port, _, password = tls_server
    unverified = await open_backend(
        f"rediss://:{password}@127.0.0.1:{port}/0", {"socket_connect_timeout": "2"}
    )
    try:
        with pytest.raises(BrokerUnavailableError) as info:
            await unverified.publish("events:tls", {"n": 1})
        assert password not in str(info.value)
    finally:
        await unverified.aclose()
    relaxed = await open_backend(
        f"rediss://:{password}@127.0.0.1:{port}/0", {"ssl_cert_reqs": "none"}
    )
    try:
        assert await relaxed.publish("events:tls", {"n": 2})
    finally:
        await relaxed.aclose()


async def test_wrong_password_is_a_typed_error_without_the_password(
    tls_server: TlsServer,
) -> None:
    port, ca, _ = tls_server
    backend = await open_backend(
        f"rediss://:wrong-pw-123@127.0.0.1:{port}/0", {"ssl_ca_certs": str(ca)}
    )
    try:
        with pytest.raises(BackendError) as info:
            await backend.publish("events:tls", {"n": 1})
        assert not isinstance(info.value, BrokerUnavailableError)
        chain: BaseException | None = info.value
        while chain is not None:
            assert "wrong-pw-123" not in str(chain)
            chain = chain.__cause__
    finally:
        await backend.aclose()
