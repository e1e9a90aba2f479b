"""``sqlite://`` specifics: latency across processes, the CPU of an idle consumer, and the
SQLite queues conveyor-sqlite is compared with.

* latency: this process runs a `StreamProcessor`; a child process
  (``python -m benchmarks.sqlite_runs --publish``) publishes at 200 msg/s, one awaited
  ``publish`` per message carrying ``time.time()``; the handler records the difference.
  Run once per wake-up mode (``notify``: inotify on the WAL; ``poll``).
* idle CPU: a child runs a `StreamProcessor` on an empty stream (the engine's default
  ``poll_interval`` of 1 s, so a blocked read every second); after a second to settle,
  its CPU time (user + system, psutil) over the window, as a share of one core.
* peers, doing the same work with an ack per message: litequeue (``put`` per message;
  ``pop`` + ``done`` per message) and persist-queue's ``SQLiteAckQueue`` (``put``;
  ``get`` + ``ack``), both in WAL mode as they configure themselves, each decoding the
  same ~256-byte JSON payload. They are synchronous libraries: called directly, as their
  users do, in a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from benchmarks.common import BenchResult, body, unique

import conveyor
from conveyor import StreamProcessor

__all__ = ["cross_process_latency", "idle_cpu", "litequeue_pair", "persist_queue_pair"]

_ROOT = Path(__file__).resolve().parent.parent


def _with(url: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def cross_process_latency(
    url: str, wakeup: str, *, rate: float = 200.0, seconds: float = 10.0
) -> BenchResult:
    """p50/p99 publish→handler latency with the publisher in another process."""
    stream = unique("latency")
    n = int(rate * seconds)
    latencies: list[float] = []
    done = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        latencies.append(time.time() - payload["sent"])
        if len(latencies) >= n:
            done.set()

    async with conveyor.connect(_with(url, wakeup=wakeup)) as backend:
        processor = StreamProcessor(
            backend, stream, "bench", "bench-1", batch_count=100, claim_idle=300.0
        )
        processor.set_callback(handler)
        async with processor:
            await asyncio.sleep(0.5)  # reading, and idle long enough to poll slowly
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.sqlite_runs",
                "--publish",
                url,
                stream,
                str(rate),
                str(n),
                cwd=_ROOT,
            )
            await child.wait()
            await asyncio.wait_for(done.wait(), 60)
        info = await backend.group_info(stream, "bench")
    q = statistics.quantiles(sorted(latencies), n=100, method="inclusive")
    return BenchResult(
        f"latency across processes [wakeup={wakeup}]",
        "sqlite",
        n,
        seconds,
        p50_ms=q[49] * 1000,
        p99_ms=q[98] * 1000,
        verified=child.returncode == 0 and len(latencies) == n and info.pending == 0,
        notes={"rate": rate, "wakeup": wakeup, "max_ms": round(max(latencies) * 1000, 2)},
    )


async def idle_cpu(url: str, wakeup: str, *, seconds: float = 10.0) -> BenchResult:
    """CPU share of one core used by a consumer process waiting on an empty stream."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.sqlite_runs",
        "--idle",
        _with(url, wakeup=wakeup),
        unique("idle"),
        cwd=_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        ready = await asyncio.wait_for(child.stdout.readline(), 30)
        await asyncio.sleep(1.0)
        watched = psutil.Process(child.pid)
        before, started = watched.cpu_times(), time.perf_counter()
        await asyncio.sleep(seconds)
        after, elapsed = watched.cpu_times(), time.perf_counter() - started
    finally:
        if child.returncode is None:
            child.terminate()
        await child.wait()
    used = (after.user - before.user) + (after.system - before.system)
    return BenchResult(
        f"idle consumer CPU [wakeup={wakeup}]",
        "sqlite",
        0,
        elapsed,
        verified=ready.strip() == b"ready",
        notes={"idle_cpu_percent": round(used / elapsed * 100, 3), "wakeup": wakeup},
    )


def _payloads(n: int) -> list[str]:
    return [body(i).decode() for i in range(n)]


def _consume_result(name: str, n: int, seconds: float, verified: bool, **notes: Any) -> BenchResult:
    return BenchResult(name, "sqlite", n, seconds, rate=n / seconds, verified=verified, notes=notes)


def _litequeue(directory: Path, n: int) -> list[BenchResult]:
    from litequeue import LiteQueue

    queue = LiteQueue(str(directory / "litequeue.db"))
    payloads = _payloads(n)
    started = time.perf_counter()
    for payload in payloads:
        queue.put(payload)
    put_seconds = time.perf_counter() - started
    handled = 0
    started = time.perf_counter()
    while True:
        message = queue.pop()
        if message is None:
            break
        json.loads(message.data)
        queue.done(message.message_id)
        handled += 1
    seconds = time.perf_counter() - started
    left = queue.qsize()
    queue.close()
    return [
        BenchResult(
            "litequeue publish (put) one by one",
            "sqlite",
            n,
            put_seconds,
            rate=n / put_seconds,
            verified=True,
        ),
        _consume_result("litequeue pop + done per message", n, seconds, handled == n and left == 0),
    ]


def _persist_queue(directory: Path, n: int) -> list[BenchResult]:
    from persistqueue import SQLiteAckQueue

    queue = SQLiteAckQueue(str(directory / "persistqueue"), multithreading=False)
    payloads = [json.loads(p) for p in _payloads(n)]
    started = time.perf_counter()
    for payload in payloads:
        queue.put(payload)
    put_seconds = time.perf_counter() - started
    handled = 0
    started = time.perf_counter()
    while handled < n:
        item = queue.get(block=False)
        queue.ack(item)
        handled += 1
    seconds = time.perf_counter() - started
    verified = handled == n and queue.qsize() == 0 and queue.unack_count() == 0
    return [
        BenchResult(
            "persist-queue publish (put) one by one",
            "sqlite",
            n,
            put_seconds,
            rate=n / put_seconds,
            verified=True,
        ),
        _consume_result("persist-queue SQLiteAckQueue get + ack per message", n, seconds, verified),
    ]


async def litequeue_pair(directory: Path, n: int) -> list[BenchResult]:
    """litequeue: `n` puts, then pop + done per message."""
    return await asyncio.to_thread(_litequeue, directory, n)


async def persist_queue_pair(directory: Path, n: int) -> list[BenchResult]:
    """persist-queue's SQLiteAckQueue: `n` puts, then get + ack per message."""
    return await asyncio.to_thread(_persist_queue, directory, n)


# -- the child processes ---------------------------------------------------------------------


async def _publish(url: str, stream: str, rate: float, n: int) -> None:
    async with conveyor.connect(url) as backend:
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for i in range(n):
            await backend.publish(stream, {"i": i, "sent": time.time()})
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


async def _idle(url: str, stream: str) -> None:
    async def handler(payload: dict[str, Any]) -> None:
        pass

    async with conveyor.connect(url) as backend:
        processor = StreamProcessor(backend, stream, "idle", "idle-1", claim_idle=60.0)
        processor.set_callback(handler)
        async with processor:
            print("ready", flush=True)
            await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publish", nargs=4, metavar=("URL", "STREAM", "RATE", "N"))
    parser.add_argument("--idle", nargs=2, metavar=("URL", "STREAM"))
    args = parser.parse_args()
    if args.publish:
        url, stream, rate, n = args.publish
        asyncio.run(_publish(url, stream, float(rate), int(n)))
    elif args.idle:
        asyncio.run(_idle(*args.idle))
    else:
        parser.error("--publish or --idle")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
