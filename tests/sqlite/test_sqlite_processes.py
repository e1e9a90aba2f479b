"""Several processes on one database file: the README's two-terminal flow, a worker killed
(``kill -9``) in the middle of a batch, a publisher killed during ``publish_many``."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TypeVar

import apsw
import pytest

import conveyor
from conveyor.testing.conformance import read_and_ack

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
EXAMPLE = ROOT / "docs" / "examples" / "billing.py"


class Output:
    """The lines a child process prints, collected by a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {text!r} in the output:\n{''.join(self.lines)}")
            try:
                self.lines.append(self._queue.get(timeout=left))
            except queue.Empty:
                continue

    def rest(self) -> str:
        """Everything printed, once the process ended."""
        self._thread.join(10)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return "".join(self.lines)

    def close(self) -> None:
        """Kill the process if it still runs; release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._thread.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env.pop("CONVEYOR_URL", None)
    return env


def _spawn(args: list[str], cwd: Path) -> Output:
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Output(process)


def readme_first_app() -> str:
    """The python block of the README's "A first app" section."""
    section = (ROOT / "README.md").read_text().split("## A first app", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_flow_a_worker_and_a_publisher_in_two_processes(tmp_path: Path) -> None:
    code = readme_first_app()
    assert code in EXAMPLE.read_text()  # the README shows the example the docs include
    (tmp_path / "billing.py").write_text(code)
    worker = _spawn(["-m", "conveyor", "run", "billing:app"], tmp_path)
    try:
        worker.wait_for("started orders/billing")
        published = subprocess.run(
            [
                sys.executable,
                "-m",
                "conveyor",
                "publish",
                "orders",
                '{"type": "order.paid", "order_id": 7}',
            ],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert published.returncode == 0, published.stderr
        assert published.stdout.strip() == "1"
        assert "using sqlite:///conveyor.db" in published.stderr
        worker.wait_for("charging order 7")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(20) == 0, worker.rest()
        output = worker.rest()
    finally:
        worker.close()
    assert "using sqlite:///conveyor.db" in output
    assert "stopped orders/billing" in output
    assert (tmp_path / "conveyor.db").exists()


WORKER = """
import asyncio, os, signal, sys
import conveyor

url, name, out, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

async def main():
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    async with conveyor.connect(url) as backend:
        async def handle(payload):
            await asyncio.sleep(delay)
            os.write(fd, b"%d\\n" % payload["n"])

        processor = conveyor.StreamProcessor(
            backend, "jobs", "workers", name, batch_count=20, claim_idle=1.0
        )
        processor.set_callback(handle)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with processor:
            print("ready", flush=True)
            await stop.wait()

asyncio.run(main())
"""


def _handled(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _integrity(file: Path) -> str:
    connection = apsw.Connection(str(file))
    try:
        return str(connection.execute("PRAGMA integrity_check").get)
    finally:
        connection.close()


async def _group_info(url: str, stream: str, group: str) -> conveyor.GroupInfo:
    async with conveyor.connect(url) as backend:
        return await backend.group_info(stream, group)


def run(coroutine: Coroutine[None, None, T]) -> T:
    return asyncio.run(coroutine)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(tmp_path: Path) -> None:
    """Two workers in two processes share a group; one is ``kill -9``'d with a batch
    half handled; the other takes its messages after ``claim_idle``."""
    file = tmp_path / "jobs.db"
    url = f"sqlite:///{file}"
    (tmp_path / "worker.py").write_text(WORKER)

    async def prepare() -> None:
        async with conveyor.connect(url) as backend:
            await backend.create_group("jobs", "workers")
            await backend.publish_many("jobs", [{"n": i} for i in range(200)])

    run(prepare())
    doomed_out, survivor_out = tmp_path / "doomed.txt", tmp_path / "survivor.txt"
    doomed = _spawn(["worker.py", url, "doomed", str(doomed_out), "0.01"], tmp_path)
    survivor = _spawn(["worker.py", url, "survivor", str(survivor_out), "0.01"], tmp_path)
    try:
        doomed.wait_for("ready")
        survivor.wait_for("ready")
        deadline = time.monotonic() + 30
        while len(_handled(doomed_out)) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        doomed.process.kill()  # SIGKILL: no cleanup, a batch in flight
        doomed.process.wait(10)
        info = run(_group_info(url, "jobs", "workers"))
        assert any(c.name == "doomed" and c.pending for c in info.consumers), info
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if set(_handled(doomed_out)) | set(_handled(survivor_out)) == set(range(200)):
                info = run(_group_info(url, "jobs", "workers"))
                if info.pending == 0:
                    break
            time.sleep(0.05)
        survivor.process.send_signal(signal.SIGTERM)
        assert survivor.process.wait(20) == 0, survivor.rest()
    finally:
        doomed.close()
        survivor.close()
    info = run(_group_info(url, "jobs", "workers"))
    assert (info.pending, info.lag) == (0, 0)
    doomed_seen, survivor_seen = _handled(doomed_out), _handled(survivor_out)
    assert set(doomed_seen) | set(survivor_seen) == set(range(200))
    assert len(survivor_seen) == len(set(survivor_seen))
    # at least once: only what the killed worker handled but never acked comes twice
    assert len(set(doomed_seen) & set(survivor_seen)) <= 20
    assert _integrity(file) == "ok"


PUBLISHER = """
import asyncio, os, sys
import conveyor

url, out = sys.argv[1], sys.argv[2]

async def main():
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    async with conveyor.connect(url) as backend:
        n = 0
        print("publishing", flush=True)
        while True:
            ids = await backend.publish_many("events", [{"n": n + i} for i in range(500)])
            n += 500
            os.write(fd, (" ".join(ids) + "\\n").encode())

asyncio.run(main())
"""


def test_a_publisher_killed_during_publish_many_loses_nothing_it_confirmed(
    tmp_path: Path,
) -> None:
    file = tmp_path / "events.db"
    url = f"sqlite:///{file}"
    (tmp_path / "publisher.py").write_text(PUBLISHER)
    publisher = _spawn(["publisher.py", url, str(tmp_path / "ids.txt")], tmp_path)
    try:
        publisher.wait_for("publishing")
        deadline = time.monotonic() + 30
        while len(_handled(tmp_path / "ids.txt")) < 5000 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.0137)
        publisher.process.send_signal(signal.SIGKILL)
        publisher.process.wait(10)
    finally:
        publisher.close()
    confirmed = {str(i) for i in _handled(tmp_path / "ids.txt")}
    assert len(confirmed) >= 5000
    assert _integrity(file) == "ok"

    async def stored() -> tuple[int | None, list[conveyor.Message]]:
        async with conveyor.connect(url) as backend:
            await backend.create_group("events", "check")
            length = (await backend.group_info("events", "check")).length
            got = await read_and_ack(
                backend, "events", "check", expect=length or 0, timeout=30, settle=0.1
            )
        return length, got

    length, messages = run(stored())
    assert length is not None
    assert length % 500 == 0  # each publish_many is all or nothing
    ids = {m.id for m in messages}
    assert confirmed <= ids
    assert len(ids) == length
    assert sorted(m.data["n"] for m in messages) == list(range(length))
