"""What `wait_replicas` (Redis ``WAIT``) costs a publisher: a primary and one replica
started here on free ports, publishing with ``wait_replicas=0`` and ``=1`` in turns.

Rows: awaited one-by-one publishes (throughput, latency p50/p99) and `publish_many` in
batches of 100. Both servers run on this machine, so the replica's round trip is a
loopback one: a real replica across a network adds its network latency to every WAIT.

Usage: python benchmarks/replica_wait.py [--messages N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

import conveyor
from conveyor.testing.processes import LocalRedis, free_port

BATCH = 100


async def _replica_ready(url: str, timeout: float = 20.0) -> None:
    client = aioredis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await client.info("replication")
            if info.get("master_link_status") == "up":
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the replica never synced")
    finally:
        await client.aclose()


async def _one_by_one(url: str, wait: int, n: int) -> tuple[float, float, float]:
    backend = await conveyor.connect(f"{url}?wait_replicas={wait}")
    stream = f"bench-wait-{wait}-{time.time_ns()}"
    latencies = []
    try:
        started = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            await backend.publish(stream, {"n": i, "body": "x" * 100})
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    finally:
        await backend.aclose()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    return n / elapsed, statistics.median(latencies) * 1000, p99 * 1000


async def _many(url: str, wait: int, n: int) -> float:
    backend = await conveyor.connect(f"{url}?wait_replicas={wait}")
    stream = f"bench-wait-many-{wait}-{time.time_ns()}"
    try:
        started = time.perf_counter()
        for start in range(0, n, BATCH):
            await backend.publish_many(
                stream, [{"n": i, "body": "x" * 100} for i in range(start, start + BATCH)]
            )
        return n / (time.perf_counter() - started)
    finally:
        await backend.aclose()


async def measure(primary_url: str, replica_url: str, n: int, rounds: int) -> None:
    await _replica_ready(replica_url)
    rows: dict[str, list[tuple[float, ...]]] = {}
    for _ in range(rounds):  # interleaved: both settings see the same machine load
        for wait in (0, 1):
            rows.setdefault(f"publish, wait_replicas={wait}", []).append(
                await _one_by_one(primary_url, wait, n)
            )
            rows.setdefault(f"publish_many x{BATCH}, wait_replicas={wait}", []).append(
                (await _many(primary_url, wait, n * 10),)
            )
    out = sys.stdout
    out.write(f"| row (median of {rounds}) | msg/s | p50 ms | p99 ms |\n|---|---:|---:|---:|\n")
    for name, results in rows.items():
        cells = [statistics.median(column) for column in zip(*results, strict=True)]
        extra = f" {cells[1]:.3f} | {cells[2]:.3f} |" if len(cells) == 3 else " | |"
        out.write(f"| {name} | {cells[0]:,.0f} |{extra}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-wait-") as tmp:
        primary = LocalRedis(Path(tmp, "p"), free_port(), ["--save", "", "--appendonly", "no"])
        Path(tmp, "p").mkdir()
        Path(tmp, "r").mkdir()
        primary.start()
        try:
            replica_port = free_port()
            replica = LocalRedis(
                Path(tmp, "r"),
                replica_port,
                ["--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", str(primary.port)],
            )
            replica.start()
            try:
                asyncio.run(measure(primary.url, replica.url, args.messages, args.rounds))
            finally:
                replica.stop()
        finally:
            primary.stop()


if __name__ == "__main__":
    main()
