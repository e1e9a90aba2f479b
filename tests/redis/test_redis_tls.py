"""``rediss://`` against a local TLS-only redis-server with a password, started here."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import BackendError, BrokerUnavailableError
from conveyor.testing.servers import unavailable
from conveyor_redis import open_backend

pytestmark = pytest.mark.slow

PASSWORD = "tls-s3cret-pw"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[int, Path]]:
    """A redis-server with only a TLS port and ``requirepass``; yields (port, CA file)."""
    server = shutil.which("redis-server")
    if server is None or shutil.which("openssl") is None:
        unavailable("redis-server/openssl not installed: cannot start a TLS Redis")
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-tls-"))
    try:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                 "-subj", "/CN=conveyor-test-ca", "-keyout", "ca.key", "-out", "ca.pem",
                 cwd=workdir)  # fmt: skip
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                 "-keyout", "server.key", "-out", "server.csr", cwd=workdir)  # fmt: skip
        (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "1", "-extfile", "san.ext",
                 "-out", "server.pem", cwd=workdir)  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        unavailable(f"cannot make test certificates with openssl: {exc}")
    port = _free_port()
    args = [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    args += ["--tls-cert-file", str(workdir / "server.pem")]
    args += ["--tls-key-file", str(workdir / "server.key")]
    args += ["--tls-ca-cert-file", str(workdir / "ca.pem"), "--tls-auth-clients", "no"]
    args += ["--requirepass", PASSWORD, "--save", "", "--appendonly", "no"]
    args += ["--dir", str(workdir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    unavailable("this redis-server did not start with TLS")
                time.sleep(0.05)
        yield port, workdir / "ca.pem"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


async def test_rediss_round_trip_with_password(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    backend = await open_backend(
        f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", {"ssl_ca_certs": str(ca)}
    )
    try:
        assert PASSWORD not in repr(backend)
        await backend.ensure_group("events:tls", "g")
        sent = await backend.publish("events:tls", {"secure": True, "n": 1})
        [message] = await backend.read("events:tls", "g", "c", count=10, block=0.5)
        assert (message.id, message.data) == (sent, {"secure": True, "n": 1})
        await backend.ack("events:tls", "g", [message])
        assert (await backend.group_info("events:tls", "g")).pending == 0
    finally:
        await backend.aclose()


async def test_rediss_without_the_ca_fails_verification(tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    unverified = await open_backend(
        f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", {"socket_connect_timeout": "2"}
    )
    try:
        with pytest.raises(BrokerUnavailableError) as info:
            await unverified.publish("events:tls", {"n": 1})
        assert PASSWORD not in str(info.value)
    finally:
        await unverified.aclose()
    relaxed = await open_backend(
        f"rediss://:{PASSWORD}@127.0.0.1:{port}/0", {"ssl_cert_reqs": "none"}
    )
    try:
        assert await relaxed.publish("events:tls", {"n": 2})
    finally:
        await relaxed.aclose()


async def test_wrong_password_is_a_typed_error_without_the_password(
    tls_server: tuple[int, Path],
) -> None:
    port, ca = tls_server
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
