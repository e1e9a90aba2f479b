"""A stop (SIGINT/SIGTERM, or `App.run`'s `stop` event) while the app is still connecting
or starting ends the start at once: the pending connect or start is cancelled, what
started is stopped, `run` returns normally and ``conveyor run`` exits 0.

The brokers here are ports that never answer (`SilentServer`) or refuse connections: a
start against them would retry for many seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.app import App
from conveyor.base import ConsumerOptions
from conveyor.protocol import ConsumerSession
from conveyor.testing import wait_until
from conveyor.testing.processes import SilentServer, free_port
from conveyor_memory import MemoryBackend

#: Seconds between the start and the stop: the start is then retrying or waiting.
STOP_AFTER = 1.0
#: How long the stop may take (the brokers here would keep a start going for 20 s+).
PROMPT = 2.0


def _urls(silent: int, refused: int) -> dict[str, str]:
    return {
        "redis-silent": f"redis://127.0.0.1:{silent}/0",  # start waits on the handshake
        "redis-refused": f"redis://127.0.0.1:{refused}/0",  # start retries with backoff
        "kafka-silent": f"kafka://127.0.0.1:{silent}",  # connect waits on the bootstrap
    }


def _app() -> App:
    app = App("billing")

    @app.handler("orders")
    async def charge(payload: dict[str, Any]) -> None:
        return None

    return app


@pytest.mark.parametrize("kind", ["redis-silent", "redis-refused", "kafka-silent"])
async def test_a_stop_while_starting_ends_app_run_at_once(kind: str) -> None:
    with SilentServer() as silent:
        url = _urls(silent.port, free_port())[kind]
        stop = asyncio.Event()
        running = asyncio.ensure_future(_app().run(url, stop=stop))
        await asyncio.sleep(STOP_AFTER)
        assert not running.done()  # still connecting or starting
        if kind.endswith("silent"):
            assert silent.accepted >= 1  # it did reach the port
        stopped = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, PROMPT)  # returns normally
        assert time.monotonic() - stopped < PROMPT


async def test_a_stop_set_before_run_connects_to_nothing() -> None:
    with SilentServer() as silent:
        stop = asyncio.Event()
        stop.set()
        await asyncio.wait_for(_app().run(f"kafka://127.0.0.1:{silent.port}", stop=stop), 1)
        assert silent.accepted == 0


class _HangingOpens(MemoryBackend):
    """memory://, but opening a consumer on stream ``hangs`` never finishes."""

    async def _open_consumer(
        self, stream: str, group: str, consumer: str, options: ConsumerOptions
    ) -> Any:
        if stream == "hangs":
            await asyncio.Event().wait()
        session: ConsumerSession = await super()._open_consumer(stream, group, consumer, options)
        return session


async def test_processors_started_before_the_stop_are_stopped_gracefully() -> None:
    backend = _HangingOpens()
    app = App("shop")
    handled: list[int] = []

    @app.handler("orders")
    async def orders(payload: dict[str, Any]) -> None:
        handled.append(payload["n"])

    @app.handler("hangs")
    async def never(payload: dict[str, Any]) -> None:
        return None

    await backend.publish("orders", {"n": 1})
    stop = asyncio.Event()
    running = asyncio.ensure_future(app.run(backend, consumer="w1", stop=stop))
    await wait_until(lambda: handled == [1])  # the first processor runs...
    assert not running.done()  # ...the second is still opening
    stop.set()
    await asyncio.wait_for(running, PROMPT)
    info = await backend.group_info("orders", "shop")
    assert info.pending == 0  # the handled message was acknowledged on the way out
    assert not backend.closed  # a backend passed in stays open
    await backend.aclose()


# -- conveyor run, as a user runs it -------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis-silent", "redis-refused", "kafka-silent"])
def test_cli_run_stops_at_once_on_sigint_while_starting(tmp_path: Path, kind: str) -> None:
    (tmp_path / "billing.py").write_text(
        textwrap.dedent("""
        from conveyor.app import App

        app = App("billing")

        @app.handler("orders")
        async def charge(payload):
            print("charging", payload, flush=True)
    """)
    )
    with SilentServer() as silent:
        url = _urls(silent.port, free_port())[kind]
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        env.pop("CONVEYOR_URL", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "run", "billing:app", "--url", url],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # logged once the signal handlers are in place
            assert "running billing:app" in first, first
            time.sleep(STOP_AFTER)
            assert proc.poll() is None  # still starting
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=10)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = first + rest
    assert proc.returncode == 0, out
    assert took < PROMPT + 1, out  # the interpreter's exit included
    assert "stopped before the app had started" in out
    assert "Traceback" not in out
    assert not [line for line in out.splitlines() if line.startswith("error:")], out
