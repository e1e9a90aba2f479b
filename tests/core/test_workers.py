"""``conveyor run --workers N`` as an operator runs it, on sqlite:// (a file, no server):
children with distinct consumer names share the work, a SIGKILLed child is restarted and
loses nothing, SIGTERM stops them all gracefully (exit 0, unfinished messages left
pending), a child crashing at start makes the supervisor give up, ``--reload`` restarts
the workers on a code change, and no worker outlives its supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import conveyor
from conveyor.naming import default_consumer_name

APP = """
import asyncio
import os

import conveyor

app = conveyor.App("shop")


@app.handler("orders", shutdown_timeout=0.5, claim_idle=60)
async def handle(payload: dict) -> None:
    with open("handled.txt", "a") as out:
        out.write(f"start {os.getpid()} {payload['n']}\\n")
    await asyncio.sleep(payload.get("sleep", 0.01))
    with open("handled.txt", "a") as out:
        out.write(f"done {os.getpid()} {payload['n']}\\n")
"""

CRASHING = """
import os
import conveyor

if os.environ.get("CONVEYOR_SUPERVISOR_PID"):  # only in the children
    raise SystemExit(3)

app = conveyor.App("crashing")


@app.handler("orders")
async def handle(payload: dict) -> None:
    pass
"""


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "shop.py").write_text(textwrap.dedent(APP))
    return tmp_path


def _start(directory: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env |= {"CONVEYOR_URL": "sqlite:///shop.db", "PYTHONPATH": str(directory)}
    # appending (O_APPEND): the supervisor and its workers write lines to it at once
    with open(directory / "supervisor.log", "a") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "--log-format", "text", "run", *args],
            cwd=directory,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes to kill (with their children) if a test fails half-way."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()


def _wait(what: str, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _children(proc: subprocess.Popen[str]) -> list[int]:
    try:
        return sorted(c.pid for c in psutil.Process(proc.pid).children())
    except psutil.NoSuchProcess:
        return []


def _log(directory: Path) -> str:
    return (directory / "supervisor.log").read_text()


def _handled(directory: Path) -> list[tuple[str, int, int]]:
    path = directory / "handled.txt"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        what, pid, n = line.split()
        rows.append((what, int(pid), int(n)))
    return rows


async def _publish(directory: Path, first: int, count: int, **extra: float) -> None:
    async with conveyor.connect(f"sqlite:///{directory / 'shop.db'}") as backend:
        await backend.publish_many(
            "orders", [{"n": n, **extra} for n in range(first, first + count)]
        )


async def _group(directory: Path) -> conveyor.GroupInfo:
    async with conveyor.connect(f"sqlite:///{directory / 'shop.db'}") as backend:
        return await backend.group_info("orders", "shop")


def test_workers_share_restart_and_stop_gracefully(
    shop: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    supervisor = _start(shop, "shop:app", "--workers", "2")
    stopper.append(supervisor)
    _wait("two workers", lambda: _log(shop).count("started orders/shop as") == 2)
    first_pids = _children(supervisor)
    assert len(first_pids) == 2

    asyncio.run(_publish(shop, 0, 200))
    _wait(
        "200 handled", lambda: {n for w, _, n in _handled(shop) if w == "done"} >= set(range(200))
    )
    by_pid = {pid for what, pid, _ in _handled(shop) if what == "done"}
    assert by_pid == set(first_pids)  # both children did some of the work
    names = sorted(c.name for c in asyncio.run(_group(shop)).consumers)
    assert names == [default_consumer_name("shop", 0), default_consumer_name("shop", 1)]

    os.kill(first_pids[0], signal.SIGKILL)

    def restarted() -> bool:  # one snapshot: two could see the zombie, then its reaping
        now = _children(supervisor)
        return len(now) == 2 and first_pids[0] not in now

    _wait("the killed worker restarted", restarted)
    assert "was killed by SIGKILL" in _log(shop)
    _wait("the restarted worker running", lambda: _log(shop).count("started orders/shop as") == 3)
    asyncio.run(_publish(shop, 200, 100))
    _wait(
        "300 handled", lambda: {n for w, _, n in _handled(shop) if w == "done"} >= set(range(300))
    )

    asyncio.run(_publish(shop, 1000, 1, sleep=60))  # still running when the stop comes
    _wait("the slow one started", lambda: any(n == 1000 for _, _, n in _handled(shop)))
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0, _log(shop)
    assert _log(shop).count("stopped orders/shop as") == 2
    assert _children(supervisor) == []
    info = asyncio.run(_group(shop))
    assert info.pending == 1  # the unfinished one: left pending, not acknowledged
    assert not any(w == "done" and n == 1000 for w, _, n in _handled(shop))
    assert {n for w, _, n in _handled(shop) if w == "done"} == set(range(300))


def test_a_child_crashing_at_start_makes_the_supervisor_give_up(
    tmp_path: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "crashing.py").write_text(textwrap.dedent(CRASHING))
    supervisor = _start(tmp_path, "crashing:app", "--workers", "1")
    stopper.append(supervisor)
    assert supervisor.wait(timeout=50) == 1
    log = _log(tmp_path)
    assert log.count("worker 0 started") == 5
    assert "5 crashes in a row, each within 10 s of starting; giving up" in log
    assert "Traceback" not in log


def test_a_metrics_port_in_use_makes_the_supervisor_give_up_at_once(
    shop: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    """Worker 1 serves metrics on PORT+1, which is taken: it fails its first start with
    one line and status 2, and the supervisor gives up at once (no restarts, exit 2)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] - 1
        started = time.monotonic()
        supervisor = _start(
            shop,
            "shop:app",
            "--workers",
            "2",
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
        )
        stopper.append(supervisor)
        assert supervisor.wait(timeout=50) == 2
    assert time.monotonic() - started < 20
    log = _log(shop)
    assert f"error: cannot serve metrics on 127.0.0.1:{port + 1}: port in use" in log
    assert "at its first start (see its error above); giving up" in log
    assert log.count("worker 1 started") == 1
    assert "restarting" not in log
    assert "Traceback" not in log


def test_reload_restarts_the_workers_on_a_code_change(
    shop: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    supervisor = _start(shop, "shop:app", "--reload")
    stopper.append(supervisor)
    _wait("the worker", lambda: "started orders/shop as" in _log(shop))
    (before,) = _children(supervisor)
    changed = textwrap.dedent(APP).replace('"orders"', '"orders2"')
    for attempt in range(30):  # the watcher may start after the worker: save again
        (shop / "shop.py").write_text(f"{changed}\n# save {attempt}\n")
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline and "changed: shop.py" not in _log(shop):
            time.sleep(0.05)
        if "changed: shop.py" in _log(shop):
            break
    _wait("a new worker", lambda: "started orders2/shop as" in _log(shop))
    assert "changed: shop.py" in _log(shop)
    (after,) = _children(supervisor)
    assert after != before
    supervisor.send_signal(signal.SIGINT)
    assert supervisor.wait(timeout=30) == 0, _log(shop)


def test_no_worker_outlives_its_supervisor(
    shop: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    supervisor = _start(shop, "shop:app", "--workers", "2")
    stopper.append(supervisor)
    _wait("two workers", lambda: _log(shop).count("started orders/shop as") == 2)
    children = [psutil.Process(pid) for pid in _children(supervisor)]
    supervisor.kill()
    supervisor.wait()
    _, alive = psutil.wait_procs(children, timeout=15)
    assert alive == []
    log = _log(shop)
    assert log.count("is gone: stopping") == 2
    assert log.count("stopped orders/shop as") == 2  # each stopped gracefully by itself


PATIENT = """
import asyncio

import conveyor

app = conveyor.App("shop")


@app.handler("orders", shutdown_timeout=600)
async def handle(payload: dict) -> None:
    with open("handled.txt", "a") as out:
        out.write(f"start 0 {payload['n']}\\n")
    await asyncio.sleep(3600)
"""


def test_a_second_sigint_stops_the_workers_at_once(
    tmp_path: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    """Ctrl-C twice under --workers: the supervisor forwards both; the worker, waiting for
    a handler with 600 s of shutdown_timeout, stops at once; the supervisor exits 130
    (not 1 with 'exited with status 130' per worker); the message stays pending."""
    (tmp_path / "shop.py").write_text(textwrap.dedent(PATIENT))
    asyncio.run(_publish(tmp_path, 0, 1))
    supervisor = _start(tmp_path, "shop:app", "--workers", "1")
    stopper.append(supervisor)
    _wait("the handler running", lambda: bool(_handled(tmp_path)))
    supervisor.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        supervisor.wait(timeout=1.5)  # graceful: the worker waits for its handler
    supervisor.send_signal(signal.SIGINT)
    assert supervisor.wait(timeout=30) == 128 + signal.SIGINT, _log(tmp_path)
    log = _log(tmp_path)
    assert "SIGINT again: stopping now" in log
    assert "while stopping" not in log
    assert asyncio.run(_group(tmp_path)).pending == 1
