"""``conveyor run`` as an operator runs it: ``--metrics-port`` serves ``/metrics``,
``--log-format json`` writes one JSON object per line, and stderr to a file gets plain
single-line text with the failing handler's traceback (a worker on Redis, in a
subprocess, fed by this test)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conveyor
from conveyor.options import split_options
from conveyor.testing import dead_letters

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

APP = """
import logging

import conveyor

app = conveyor.App("shop")
log = logging.getLogger("shop")


@app.handler("orders", max_deliveries=2, retry_delay=0.05)
async def charge(payload: dict) -> None:
    if payload["n"] == 2:
        raise ValueError("card declined")
    log.info("charged %s", payload["n"])
"""


@pytest.fixture
def url(redis_url: str) -> Iterator[str]:
    """The Redis server under test, under a key prefix of this test (deleted after it)."""
    from redis import Redis

    base, query = split_options(redis_url)
    prefix = f"conveyor-cli-{uuid.uuid4().hex[:8]}:"
    query["key_prefix"] = prefix
    yield base + "?" + "&".join(f"{k}={v}" for k, v in query.items())
    with Redis.from_url(base) as client:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "shop.py").write_text(textwrap.dedent(APP))
    return tmp_path


def worker(app_dir: Path, url: str, *args: str, stderr: IO[str] | int) -> subprocess.Popen[str]:
    env = {**os.environ, "CONVEYOR_URL": url, "PYTHONPATH": str(app_dir)}
    env.pop("CONVEYOR_LOG_FORMAT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args],
        cwd=app_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_until(proc: subprocess.Popen[str], pattern: str, seen: list[str]) -> re.Match[str]:
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    pytest.fail(f"no {pattern!r} in:\n" + "".join(seen))


async def feed_and_wait(url: str) -> None:
    """Publish orders 1-3 (2 fails: dead-lettered at its 2nd delivery); wait for it."""
    async with conveyor.connect(url) as backend:
        await backend.publish("orders", {"n": 1})
        await backend.publish("orders", {"n": 2}, headers={"traceparent": TRACEPARENT})
        await backend.publish("orders", {"n": 3})
        deadline = time.monotonic() + 30
        while not await dead_letters(backend, "orders"):
            assert time.monotonic() < deadline, "nothing was dead-lettered"
            await asyncio.sleep(0.05)
        while (await backend.group_info("orders", "shop")).pending:
            assert time.monotonic() < deadline, "still pending"
            await asyncio.sleep(0.05)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("stream") == "orders" and "le" not in sample.labels:
                out[sample.name + str(sample.labels.get("outcome", ""))] = sample.value
    return out


async def test_json_logs_and_metrics_of_a_running_worker(
    app_dir: Path, url: str, stopper: list[subprocess.Popen[str]]
) -> None:
    args = ["--log-format", "json", "run", "shop:app", "--metrics-port", "0"]
    proc = worker(app_dir, url, *args, "--metrics-host", "127.0.0.1", stderr=subprocess.PIPE)
    stopper.append(proc)
    seen: list[str] = []
    found = await asyncio.to_thread(
        read_until, proc, r"serving metrics on http://127\.0\.0\.1:(\d+)/metrics", seen
    )
    await asyncio.to_thread(read_until, proc, r"started orders/shop", seen)
    await feed_and_wait(url)
    metrics = await asyncio.to_thread(scrape, int(found.group(1)))
    proc.send_signal(signal.SIGTERM)
    _, rest = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0, "".join(seen) + rest
    assert metrics["conveyor_messages_handled_total"] == 2
    assert metrics["conveyor_messages_failed_total"] == 2
    assert metrics["conveyor_messages_retried_total"] == 1
    assert metrics["conveyor_messages_dead_lettered_total"] == 1
    assert metrics["conveyor_handler_duration_seconds_countsuccess"] == 2
    assert metrics["conveyor_handler_duration_seconds_countdead_letter"] == 1
    assert metrics["conveyor_group_pending"] == 0

    output = "".join(seen) + rest
    lines = [json.loads(line) for line in output.splitlines()]  # one JSON object a line
    charged = [r for r in lines if r["message"].startswith("charged")]
    assert sorted(r["message"] for r in charged) == ["charged 1", "charged 3"]
    assert {(r["logger"], r["stream"], r["group"]) for r in charged} == {("shop", "orders", "shop")}
    assert all(r["message_id"] and r["consumer"] for r in charged)
    failed = [r for r in lines if r["message"].startswith("handler failed")]
    assert [(r["level"], r["delivery_count"]) for r in failed] == [("WARNING", 1), ("ERROR", 2)]
    assert "exception" not in failed[0]
    assert failed[1]["exc_type"] == "ValueError"
    assert failed[1]["exception"].rstrip().endswith("ValueError: card declined")
    assert {r["trace_id"] for r in failed} == {TRACEPARENT.split("-")[1]}


async def test_stderr_to_a_file_gets_single_line_text(
    app_dir: Path, url: str, tmp_path: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    log_file = tmp_path / "worker.log"
    with log_file.open("w") as stderr:
        proc = worker(app_dir, url, "run", "shop:app", stderr=stderr)
        stopper.append(proc)
        deadline = time.monotonic() + 30
        while "started orders/shop" not in log_file.read_text():
            assert time.monotonic() < deadline, log_file.read_text()
            await asyncio.sleep(0.05)
        await feed_and_wait(url)
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
    assert proc.returncode == 0
    text = log_file.read_text()
    assert "─" not in text  # no Rich rules or boxes
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) ")
    records = [line for line in text.splitlines() if stamp.match(line)]
    others = [line for line in text.splitlines() if not stamp.match(line)]
    # every line is a record, but the one traceback (of the last failure)
    assert others[0] == "Traceback (most recent call last):"
    assert others[-1] == "ValueError: card declined"
    assert all(line.startswith(("  ", "Traceback", "ValueError")) for line in others)
    every = text.splitlines()
    last = every[every.index("Traceback (most recent call last):") - 1]
    assert "the last" in last
    assert " ERROR conveyor.processor: handler failed for orders " in last
    assert "[stream=orders group=shop consumer=" in last
    assert "delivery_count=2 trace_id=4bf92f3577b34da6a3ce929d0e0e4736]" in last
    assert any("INFO shop: charged 1 [stream=orders group=shop" in r for r in records)
