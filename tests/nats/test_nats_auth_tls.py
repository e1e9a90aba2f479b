"""Credentials and TLS against private nats-server processes (user/password, token, TLS)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conveyor.errors import BrokerUnavailableError, ConfigurationError
from conveyor.testing.certs import make_certificates
from conveyor.testing.servers import unavailable
from conveyor_nats import NatsBackend, open_backend

StartNats = Callable[..., Any]  # the start_nats fixture of conftest.py

_FAST = {"connect_timeout": "0.5", "reconnect_wait": "0.2"}


async def _round_trip(backend: NatsBackend) -> None:
    try:
        async with backend.open_consumer("auth:check", "g", "c") as session:
            msg_id = await backend.publish("auth:check", {"ok": True})
            got = await session.read(count=1, block=2.0)
            assert [(m.id, m.data) for m in got] == [(msg_id, {"ok": True})]
            await session.ack(got)
    finally:
        await backend.aclose()


async def test_user_and_password_from_the_url(start_nats: StartNats) -> None:
    server = start_nats("--user", "alice", "--pass", "s3cret/+")
    host = server.url.split("://", 1)[1]
    await _round_trip(await open_backend(f"nats://alice:{quote('s3cret/+', safe='')}@{host}", {}))
    with pytest.raises(BrokerUnavailableError) as info:
        await open_backend(f"nats://alice:wrong-pw@{host}", _FAST)
    assert "wrong-pw" not in str(info.value)
    assert "Authorization" in str(info.value)  # the server's reason is passed on


async def test_token_from_the_url(start_nats: StartNats) -> None:
    server = start_nats("--auth", "tok3n-value")
    host = server.url.split("://", 1)[1]
    await _round_trip(await open_backend(f"nats://tok3n-value@{host}", {}))
    with pytest.raises(BrokerUnavailableError) as info:
        await open_backend(f"nats://other-token@{host}", _FAST)
    assert "other-token" not in str(info.value)


async def test_tls_url_with_a_private_ca(start_nats: StartNats, tmp_path: Path) -> None:
    try:
        certs = make_certificates(tmp_path)
    except (OSError, subprocess.CalledProcessError) as exc:
        unavailable(f"openssl could not make test certificates: {exc}")
    ca, cert, key = certs.ca, certs.cert, certs.key
    server = start_nats("--tls", "--tlscert", str(cert), "--tlskey", str(key), scheme="tls")
    assert server.url.startswith("tls://")
    await _round_trip(await open_backend(server.url, {"tls_ca": str(ca)}))
    with pytest.raises(BrokerUnavailableError):  # the system CAs do not know our CA
        await open_backend(server.url, _FAST)
    with pytest.raises(ConfigurationError, match="TLS"):
        await open_backend(server.url, {"tls_ca": str(tmp_path / "missing.pem")})
