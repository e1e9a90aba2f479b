"""Credentials and TLS against private nats-server processes (user/password, token, TLS)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conveyor.errors import BrokerUnavailableError, ConfigurationError
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


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl)."""
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem")
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "1",
        "-subj",
        "/CN=conveyor-test-ca",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "1",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


async def test_tls_url_with_a_private_ca(start_nats: StartNats, tmp_path: Path) -> None:
    try:
        ca, cert, key = _certificates(tmp_path)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openssl could not make test certificates")
    server = start_nats("--tls", "--tlscert", str(cert), "--tlskey", str(key), scheme="tls")
    assert server.url.startswith("tls://")
    await _round_trip(await open_backend(server.url, {"tls_ca": str(ca)}))
    with pytest.raises(BrokerUnavailableError):  # the system CAs do not know our CA
        await open_backend(server.url, _FAST)
    with pytest.raises(ConfigurationError, match="TLS"):
        await open_backend(server.url, {"tls_ca": str(tmp_path / "missing.pem")})
