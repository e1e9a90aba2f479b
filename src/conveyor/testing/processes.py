"""Brokers and network faults that tests start themselves, on free 127.0.0.1 ports.

* `LocalRedis` and `LocalNats`: a ``redis-server`` / ``nats-server -js`` process with its
  own data directory, started, stopped, SIGKILLed and restarted by its PID — never a
  shared server.
* `TcpProxy`: a TCP forwarder in front of a broker whose connections a test can cut
  (every open one at once) and whose new connections it can refuse for a while.
* `SilentServer`: a port that accepts connections and never answers (a hung broker, or
  a URL pointing at a service that waits for its own protocol).
* `publish_steadily`: a publisher that keeps publishing through such faults, counting
  what the broker confirmed.

Kafka's launcher is `conveyor_kafka.testing.tansu_broker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from conveyor.errors import BackendClosedError, BrokerUnavailableError
from conveyor.protocol import StreamBackend

__all__ = [
    "LocalNats",
    "LocalRedis",
    "LocalServer",
    "SilentServer",
    "TcpProxy",
    "free_port",
    "nats_server",
    "publish_steadily",
]


def free_port(*, cluster_bus: bool = False) -> int:
    """A free 127.0.0.1 port (with `cluster_bus`: one whose bus port, +10000, is free too)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if not cluster_bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def _answers(port: int, probe: bytes | None, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            if probe is None:
                return True
            conn.sendall(probe)
            return conn.recv(64).startswith(expect)
    except OSError:
        return False


class LocalServer:
    """A server process a test owns. Subclasses set the command and the readiness probe."""

    name = "server"
    probe: bytes | None = None  # sent after connecting; None: a TCP connect is enough
    expect = b""

    def __init__(self, command: Sequence[str], port: int) -> None:
        self.command = list(command)
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start it; return once it answers.

        Raises:
            RuntimeError: it exited or did not answer within `timeout` seconds.
        """
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not _answers(self.port, self.probe, self.expect):
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} on port {self.port} exited at start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} on port {self.port} did not answer")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        """Stop it by its PID: SIGTERM (SIGKILL with `kill`, or when it lingers)."""
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """SIGKILL it (a crash) and start it again on the same port and data."""
        self.stop(kill=True)
        self.start()

    async def arestart(self) -> None:
        """`restart` off the event loop (the loop runs on meanwhile)."""
        await asyncio.to_thread(self.restart)


class LocalRedis(LocalServer):
    """``redis-server`` on 127.0.0.1:`port` with `directory` as its ``--dir``.

    Args:
        directory: Its data directory (AOF, RDB, cluster config).
        port: The port it listens on (``--port``, or ``--tls-port`` with `tls`).
        args: Further ``redis-server`` arguments.
        tls: Listen with TLS only (readiness is then a TCP connect, not a PING).

    Raises:
        FileNotFoundError: no ``redis-server`` on PATH.
    """

    name = "redis-server"

    def __init__(
        self, directory: Path, port: int, args: Sequence[str] = (), *, tls: bool = False
    ) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise FileNotFoundError("redis-server is not installed")
        listen = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
        command = [server, *listen, "--bind", "127.0.0.1", "--dir", str(directory), *args]
        super().__init__(command, port)
        self.directory, self.tls = directory, tls
        if not tls:
            self.probe, self.expect = b"PING\r\n", b"+PONG"

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"


def nats_server() -> str:
    """Path of a ``nats-server`` binary: ``$CONVEYOR_NATS_SERVER`` if set, else the first
    on PATH, else Debian's ``/usr/sbin/nats-server``.

    Raises:
        FileNotFoundError: none found (or ``$CONVEYOR_NATS_SERVER`` names no file).
    """
    chosen = os.environ.get("CONVEYOR_NATS_SERVER")
    if chosen:
        if not Path(chosen).is_file():
            raise FileNotFoundError(f"CONVEYOR_NATS_SERVER={chosen}: no such file")
        return chosen
    found = shutil.which("nats-server")
    if found is None and Path("/usr/sbin/nats-server").exists():
        found = "/usr/sbin/nats-server"
    if found is None:
        raise FileNotFoundError("no nats-server binary")
    return found


class LocalNats(LocalServer):
    """``nats-server -js`` on 127.0.0.1:`port` with `store` as its JetStream directory.

    Args:
        store: JetStream store directory (``-sd``).
        port: Client port.
        args: Further ``nats-server`` arguments (cluster routes, TLS...).
        scheme: URL scheme of `url` (``tls`` for a TLS server).
        binary: The ``nats-server`` to run (default: `nats_server()`).
    """

    name = "nats-server"

    def __init__(
        self,
        store: Path,
        port: int,
        args: Sequence[str] = (),
        *,
        scheme: str = "nats",
        binary: str | None = None,
    ) -> None:
        command = [binary or nats_server(), "-js", "-sd", str(store)]
        super().__init__([*command, "-a", "127.0.0.1", "-p", str(port), *args], port)
        self.store = store
        self.url = f"{scheme}://127.0.0.1:{port}"


class SilentServer:
    """Listens on a free 127.0.0.1 port, accepts every connection and holds it open
    without ever writing a byte, until the ``with`` block ends. Runs in a thread, so
    tests that drive a subprocess can use it as well as async tests.

    Attributes:
        port: The port it listens on.
        accepted: How many connections it accepted so far.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:  # (socket.timeout is TimeoutError)
                continue
            self._held.append(conn)
            self.accepted += 1


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `cut()` drops every open connection at
    once and `refuse(seconds)` stops listening for a while (a broker that is unreachable).
    Use it with ``async with``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._reopen: asyncio.Future[None] | None = None

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            await asyncio.gather(self._reopen, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        await self.cut()
        if self._server is not None:
            await self._server.wait_closed()

    def url(self, make: Callable[[int], str]) -> str:
        """`make(port)`: the broker URL pointing at the proxy."""
        return make(self.port)

    async def cut(self) -> None:
        """Drop every open connection now (both sides see a reset)."""
        self.cuts += 1
        for writer in list(self._writers):
            _drop(writer)
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.wait(list(self._pipes))

    async def refuse(self, seconds: float) -> None:
        """Stop listening for `seconds` (new connections are refused, as by a host that is
        down), then listen again on the same port; returns at once."""
        server = self._server
        if server is None:
            return
        server.close()
        await server.wait_closed()
        self._reopen = asyncio.ensure_future(self._listen_after(seconds))

    async def _listen_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _drop(writer)
            return
        self._writers |= {writer, up_writer}
        pipes = {
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        }
        self._pipes |= pipes
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.wait(pipes)
            self._pipes -= pipes
            for end in (writer, up_writer):
                self._writers.discard(end)
                _drop(end)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


def _drop(writer: asyncio.StreamWriter) -> None:
    """Reset the connection (no FIN: the peer sees it die) and release the writer."""
    writer.transport.abort()
    writer.close()


async def publish_steadily(
    backend: StreamBackend,
    stream: str,
    n: int,
    confirmed: set[int],
    *,
    rate: float = 400.0,
    retry_pause: float = 0.1,
    give_up_after: float = 60.0,
) -> None:
    """Publish ``{"n": i}`` for i < n at about `rate` per second, adding each i to
    `confirmed` once the broker confirmed it. A publish that fails while the broker is
    unavailable (or the connection closed) is retried every `retry_pause` seconds — it
    may have been stored: a duplicate, never a loss — for at most `give_up_after`
    seconds, then its error is raised."""
    for i in range(n):
        deadline = time.monotonic() + give_up_after
        while True:
            try:
                await backend.publish(stream, {"n": i})
                confirmed.add(i)
                break
            except (BrokerUnavailableError, BackendClosedError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(retry_pause)
        await asyncio.sleep(1 / rate)
