"""Throwaway TLS certificates for tests that start their own TLS broker.

`make_certificates` writes a test CA and a server certificate signed by it, with the
extensions strict X.509 verification requires (Python 3.13 turns it on by default: a CA
without ``keyUsage`` is refused): the CA has ``basicConstraints=CA:TRUE`` and
``keyUsage=keyCertSign``; the server certificate has the hosts as subject alternative
names, ``extendedKeyUsage=serverAuth`` and an authority key identifier. It uses the
``openssl`` command, as the brokers' own test setups do.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "make_certificates"]


@dataclass(frozen=True)
class Certificates:
    """Files written by `make_certificates`."""

    ca: Path
    cert: Path
    key: Path


_CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign,cRLSign",
    "subjectKeyIdentifier=hash",
)


def make_certificates(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> Certificates:
    """Write ``ca.pem`` and ``server.pem``/``server.key`` (valid one day) into `directory`.

    Raises:
        FileNotFoundError: no ``openssl`` command.
        subprocess.CalledProcessError: openssl failed.
    """
    if shutil.which("openssl") is None:
        raise FileNotFoundError("openssl is not installed")

    def openssl(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60
        )

    ca_args = [a for ext in _CA_EXTENSIONS for a in ("-addext", ext)]
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=conveyor-test-ca", "-keyout", "ca.key", "-out", "ca.pem",
            *ca_args)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hosts[0]}",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    names = ",".join(f"{'IP' if _is_ip(h) else 'DNS'}:{h}" for h in hosts)
    (directory / "server.ext").write_text(
        f"subjectAltName={names}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "server.ext",
            "-out", "server.pem")  # fmt: skip
    return Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host
